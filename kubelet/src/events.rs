//! Events about pods and the node, written as core/v1 Events the way upstream's kubelet
//! records them (source component `kubelet`, the node as host), with repeats folded into
//! one Event whose count goes up.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

#[derive(Clone)]
pub struct Recorder {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    node: String,
    /// Recent events by what makes them the same, to count repeats instead of adding more.
    seen: Mutex<HashMap<String, (String, String, i32)>>,
}

/// Upstream's reference to one container of a pod (`spec.containers{name}`, or the init or
/// ephemeral container list it is in).
pub fn container_ref(pod: &Pod, container: &str) -> ObjectReference {
    let mut r = pod_ref(pod);
    let spec = pod.spec.as_ref();
    let field = if spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == container))
    {
        "initContainers"
    } else if spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == container))
    {
        "ephemeralContainers"
    } else {
        "containers"
    };
    r.field_path = Some(format!("spec.{field}{{{container}}}"));
    r
}

pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

impl Recorder {
    pub fn new(client: kube::Client, node: &str) -> Recorder {
        Recorder {
            inner: std::sync::Arc::new(Inner {
                client,
                node: node.to_string(),
                seen: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records an event in the background: the write never holds up the work it reports on,
    /// and a failure is only logged, as upstream's recorder does.
    pub async fn record(&self, object: &ObjectReference, kind: Kind, reason: &str, message: &str) {
        let inner = self.inner.clone();
        let (object, reason, message) = (object.clone(), reason.to_string(), message.to_string());
        tokio::spawn(async move {
            if let Err(e) = inner.try_record(&object, kind, &reason, &message).await {
                tracing::debug!(reason, error = %e, "recording event");
            }
        });
    }
}

impl Inner {
    async fn try_record(
        &self,
        object: &ObjectReference,
        kind: Kind,
        reason: &str,
        message: &str,
    ) -> kube::Result<()> {
        let ns = object.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let key = format!(
            "{}/{}/{}/{reason}/{message}",
            object.uid.as_deref().unwrap_or(""),
            object.field_path.as_deref().unwrap_or(""),
            object.name.as_deref().unwrap_or(""),
        );
        let repeat = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some((ns, name, count)) = repeat {
            let patched = Api::<Event>::namespaced(self.client.clone(), &ns)
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "count": count + 1, "lastTimestamp": now })),
                )
                .await;
            if patched.is_ok() {
                self.remember(key, ns, name, count + 1);
                return Ok(());
            }
        }
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or("event"),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(
                if kind == Kind::Warning {
                    "Warning"
                } else {
                    "Normal"
                }
                .into(),
            ),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        api.create(&PostParams::default(), &ev).await?;
        self.remember(key, ns, name, 1);
        Ok(())
    }

    fn remember(&self, key: String, ns: String, name: String, count: i32) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // A bounded memory: past this many distinct events, start afresh.
        if seen.len() > 4096 {
            seen.clear();
        }
        seen.insert(key, (ns, name, count));
    }
}
