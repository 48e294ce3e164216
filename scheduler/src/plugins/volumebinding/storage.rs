//! Storage rules the volume plugins share, as upstream's `component-helpers/storage`
//! defines them: which class a claim or volume belongs to, which claim a pod volume names,
//! whether a PV's node affinity admits a node, and the apiserver's not-found wording.

use std::collections::BTreeMap;

use ferrokube_common::quantity::Quantity;
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, Pod, TopologySelectorTerm, Volume,
};

use crate::plugins::helpers::node_selector_matches;

/// Set on a PVC once the PV controller finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a PV the scheduler or the PV controller (not the user) bound to its claim.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Asks the provisioner to create the claim's volume for this node.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The pre-`storageClassName` way to name a class; it still wins when present.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// A provisioner name that says the class cannot provision dynamically.
pub const NOT_SUPPORTED_PROVISIONER: &str = "kubernetes.io/no-provisioner";
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
pub const READ_WRITE_ONCE_POD: &str = "ReadWriteOncePod";

/// The apiserver's (and listers') message for a missing object, e.g.
/// `persistentvolumeclaim "data" not found`.
pub fn not_found(resource: &str, name: &str) -> String {
    format!("{resource} {name:?} not found")
}

pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The class a claim asks for (upstream's `GetPersistentVolumeClaimClass`).
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    if let Some(class) = annotation(&pvc.metadata, ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The class a volume belongs to (upstream's `GetPersistentVolumeClass`).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    if let Some(class) = annotation(&pv.metadata, ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The claim a pod volume uses, and whether it is a generic ephemeral volume's (whose
/// claim is named `<pod>-<volume>` and must be owned by the pod).
pub fn claim_of(pod: &Pod, vol: &Volume) -> Option<(String, bool)> {
    if let Some(c) = &vol.persistent_volume_claim {
        return Some((c.claim_name.clone(), false));
    }
    if vol.ephemeral.is_some() {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        return Some((format!("{pod_name}-{}", vol.name), true));
    }
    None
}

pub fn pod_volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
}

/// An ephemeral volume's claim must be controlled by the pod, or it belongs to someone
/// else who happened to pick the same name (upstream's `ephemeral.VolumeIsForPod`).
pub fn volume_is_for_pod(pod: &Pod, pvc: &PersistentVolumeClaim) -> Result<(), String> {
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let same_ns = pod.metadata.namespace == pvc.metadata.namespace;
    let owned = pvc
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == pod_uid);
    if same_ns && owned {
        return Ok(());
    }
    Err(format!(
        "PVC {}/{} was not created for pod {}/{} (pod is not owner)",
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        pvc.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    ))
}

/// Bound as far as the scheduler is concerned: the PV controller finished the binding.
pub fn is_fully_bound(pvc: &PersistentVolumeClaim) -> bool {
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    !volume.is_empty() && annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_some()
}

pub fn volume_name(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// The storage a claim requests; an absent or unparsable request counts as zero, like the
/// zero Quantity upstream reads from a missing map entry.
pub fn requested_storage(pvc: &PersistentVolumeClaim) -> Quantity {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or_default()
}

pub fn capacity(pv: &PersistentVolume) -> Quantity {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or_default()
}

/// Whether the PV's required node affinity admits a node with these labels (upstream's
/// `CheckNodeAffinity`). Upstream matches against a node built from the labels alone, so
/// `matchFields` on `metadata.name` sees an empty name; we keep that.
pub fn node_affinity_matches(pv: &PersistentVolume, labels: &BTreeMap<String, String>) -> bool {
    match pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        None => true,
        Some(sel) => node_selector_matches(sel, labels, ""),
    }
}

/// A StorageClass's `allowedTopologies` against node labels (upstream's
/// `MatchTopologySelectorTerms`): no terms match every node, an empty term none.
pub fn topology_matches(terms: &[TopologySelectorTerm], labels: &BTreeMap<String, String>) -> bool {
    if terms.is_empty() {
        return true;
    }
    terms.iter().any(|term| {
        let exprs = term.match_label_expressions.as_deref().unwrap_or_default();
        !exprs.is_empty()
            && exprs
                .iter()
                .all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classes_prefer_the_beta_annotation() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "c", "annotations": {ANN_BETA_STORAGE_CLASS: "old"}},
            "spec": {"storageClassName": "new"}}))
        .unwrap();
        assert_eq!(claim_class(&pvc), "old");
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "v"}, "spec": {"storageClassName": "fast"}}))
        .unwrap();
        assert_eq!(volume_class(&pv), "fast");
    }

    #[test]
    fn allowed_topologies() {
        let labels: BTreeMap<String, String> = [("zone".to_string(), "a".to_string())]
            .into_iter()
            .collect();
        let terms: Vec<TopologySelectorTerm> = serde_json::from_value(json!([
            {"matchLabelExpressions": [{"key": "zone", "values": ["b", "a"]}]}]))
        .unwrap();
        assert!(topology_matches(&terms, &labels));
        let terms: Vec<TopologySelectorTerm> = serde_json::from_value(json!([
            {"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]}, {}]))
        .unwrap();
        assert!(!topology_matches(&terms, &labels));
        assert!(topology_matches(&[], &labels));
    }

    #[test]
    fn ephemeral_claims_must_be_owned_by_the_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [], "volumes": [{"name": "scratch", "ephemeral": {}}]}}))
        .unwrap();
        let (name, ephemeral) = claim_of(&pod, &pod_volumes(&pod)[0]).unwrap();
        assert_eq!((name.as_str(), ephemeral), ("p-scratch", true));
        let mut pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "p-scratch", "namespace": "ns", "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u1", "controller": true}]}}))
        .unwrap();
        assert!(volume_is_for_pod(&pod, &pvc).is_ok());
        pvc.metadata.owner_references = None;
        assert_eq!(
            volume_is_for_pod(&pod, &pvc).unwrap_err(),
            "PVC ns/p-scratch was not created for pod ns/p (pod is not owner)"
        );
    }
}
