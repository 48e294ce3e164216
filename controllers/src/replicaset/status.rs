//! The status a replica owner reports: counts over its claimed active pods and the
//! ReplicaFailure condition, written only when something changed.

use ferrokube_common::labels::Selector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

use super::owner::{template_label_set, ReplicaOwner};
use super::podutil::{is_available, is_ready};

/// A failure to create or delete pods, reported as ReplicaFailure.
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

fn count(v: &Value, field: &str) -> i64 {
    v.get(field).and_then(Value::as_i64).unwrap_or(0)
}

/// Upstream leaves zero counts out of the object; a merge-patch null does the same.
fn or_null(n: usize) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(n)
    }
}

/// The conditions after this sync: ReplicaFailure set while creation or deletion fails and
/// dropped once it works again; other conditions untouched.
fn conditions(old: &Value, failure: Option<&Failure>, now: Timestamp) -> Vec<Value> {
    let mut conds: Vec<Value> = old
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = conds.iter().position(|c| c["type"] == "ReplicaFailure");
    match (failure, existing) {
        (Some(f), None) => conds.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "lastTransitionTime": now.to_string(),
            "reason": f.reason,
            "message": f.message,
        })),
        (None, Some(i)) => {
            conds.remove(i);
        }
        _ => {}
    }
    conds
}

/// Patches the owner's status from `pods` (its claimed active pods) when it differs.
pub async fn update<O: ReplicaOwner>(
    api: &Api<O>,
    owner: &O,
    pods: &[Pod],
    failure: Option<&Failure>,
    now: Timestamp,
) -> kube::Result<()> {
    let full = Selector::from_set(template_label_set(owner).iter());
    let empty = Default::default();
    let labels = |p: &Pod| p.metadata.labels.as_ref().unwrap_or(&empty).clone();
    let fully = pods.iter().filter(|p| full.matches(&labels(p))).count();
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let available = pods
        .iter()
        .filter(|p| is_available(p, owner.min_ready_seconds(), now))
        .count();
    let old = owner.status_json();
    let generation = owner.meta().generation.unwrap_or(0);
    let conds = conditions(&old, failure, now);
    let old_conds = old
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let unchanged = count(&old, "replicas") == pods.len() as i64
        && count(&old, "fullyLabeledReplicas") == fully as i64
        && count(&old, "readyReplicas") == ready as i64
        && count(&old, "availableReplicas") == available as i64
        && count(&old, "observedGeneration") == generation
        && old_conds == conds;
    if unchanged {
        return Ok(());
    }
    let patch = json!({"status": {
        "replicas": pods.len(),
        "fullyLabeledReplicas": or_null(fully),
        "readyReplicas": or_null(ready),
        "availableReplicas": or_null(available),
        "observedGeneration": generation,
        "conditions": if conds.is_empty() { Value::Null } else { json!(conds) },
    }});
    let name = owner.meta().name.clone().unwrap_or_default();
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}
