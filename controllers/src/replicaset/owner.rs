//! What the replica manager needs from the kind it runs for: ReplicaSet and
//! ReplicationController differ only in how they spell their selector and where their
//! fields sit, so both are read through this trait.

use std::collections::BTreeMap;
use std::fmt::Debug;

use ferrokube_common::labels::Selector;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Upstream's event source component.
    const COMPONENT: &'static str;
    /// The name used for metrics and logs.
    const CONTROLLER: &'static str;

    /// The selector, or None when it is missing or cannot be parsed (such an owner is left
    /// alone rather than allowed to match everything).
    fn selector(&self) -> Option<Selector>;
    fn replicas(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    fn status_json(&self) -> serde_json::Value;
}

fn template_labels(t: Option<&PodTemplateSpec>) -> BTreeMap<String, String> {
    t.and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

/// The labels a fully labelled pod carries: its owner's template labels.
pub fn template_label_set<O: ReplicaOwner>(owner: &O) -> BTreeMap<String, String> {
    template_labels(owner.template())
}

impl ReplicaOwner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    const CONTROLLER: &'static str = "replicaset";

    fn selector(&self) -> Option<Selector> {
        let sel = self.spec.as_ref()?.selector.clone();
        let json = serde_json::to_value(sel).ok()?;
        let s = Selector::from_label_selector(&json).ok()?;
        // An empty selector would claim every pod of the namespace; upstream refuses it.
        if s.is_empty() {
            return None;
        }
        Some(s)
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

impl ReplicaOwner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    const CONTROLLER: &'static str = "replicationcontroller";

    fn selector(&self) -> Option<Selector> {
        // An RC without a selector selects by its template's labels, as upstream defaults it.
        let sel = match self.spec.as_ref()?.selector.clone() {
            Some(s) if !s.is_empty() => s,
            _ => template_labels(self.template()),
        };
        if sel.is_empty() {
            return None;
        }
        Some(Selector::from_set(sel.iter()))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}
