//! VolumeZone: a bound PV labelled with zones or regions (the GA `topology.kubernetes.io`
//! labels or the legacy `failure-domain.beta` ones) can only be used from nodes in one of
//! them. Nodes without any topology label are accepted (single-zone clusters).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolume;

use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::*;
use crate::plugins::volumebinding::storage::{
    claim_class, not_found, pod_volumes, volume_name, WAIT_FOR_FIRST_CONSUMER,
};
use crate::plugins::{PluginContext, Registered};

pub const NAME: &str = "VolumeZone";

pub const REASON_CONFLICT: &str = "node(s) had no available volume zone";

const BETA_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
const BETA_REGION: &str = "failure-domain.beta.kubernetes.io/region";
const ZONE: &str = "topology.kubernetes.io/zone";
const REGION: &str = "topology.kubernetes.io/region";
const TOPOLOGY_LABELS: [&str; 4] = [BETA_ZONE, BETA_REGION, ZONE, REGION];

/// A PV's zones (or regions) under one label.
#[derive(Clone, Debug, PartialEq)]
struct PvTopology {
    key: &'static str,
    values: BTreeSet<String>,
}

#[derive(Clone)]
struct State {
    topologies: Arc<Vec<PvTopology>>,
}

fn ga_label(key: &'static str) -> &'static str {
    match key {
        BETA_ZONE => ZONE,
        BETA_REGION => REGION,
        other => other,
    }
}

/// A multi-zone label value lists its zones separated by `__`; a malformed one (an empty
/// zone) is ignored, as upstream does.
fn zones(value: &str) -> Option<BTreeSet<String>> {
    value
        .split("__")
        .map(|z| {
            let z = z.trim();
            (!z.is_empty()).then(|| z.to_string())
        })
        .collect()
}

fn pv_topologies(pv: &PersistentVolume) -> Vec<PvTopology> {
    let Some(labels) = pv.metadata.labels.as_ref() else {
        return Vec::new();
    };
    TOPOLOGY_LABELS
        .iter()
        .filter_map(|key| {
            let values = zones(labels.get(*key)?)?;
            Some(PvTopology { key, values })
        })
        .collect()
}

pub struct VolumeZone;

impl Plugin for VolumeZone {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            // A WaitForFirstConsumer class lets unbound claims through.
            ClusterEvent::new(EventResource::StorageClass, ActionType::ADD),
            ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
            ),
            ClusterEvent::new(
                EventResource::PersistentVolumeClaim,
                ActionType::ADD | ActionType::UPDATE,
            ),
            ClusterEvent::new(
                EventResource::PersistentVolume,
                ActionType::ADD | ActionType::UPDATE,
            ),
        ]
    }
}

/// The topologies of the PVs the pod's claims are bound to. Unbound claims of
/// WaitForFirstConsumer classes are VolumeBinding's business and skipped.
fn pod_topologies(pod: &PodInfo, cluster: &Cluster) -> Result<Vec<PvTopology>, Status> {
    let mut out = Vec::new();
    for claim in pod_volumes(&pod.pod)
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
    {
        let name = &claim.claim_name;
        if name.is_empty() {
            return Err(Status::unresolvable("PersistentVolumeClaim had no name"));
        }
        let Some(pvc) = cluster.pvcs.get(&format!("{}/{name}", pod.namespace())) else {
            return Err(Status::unresolvable(not_found(
                "persistentvolumeclaim",
                name,
            )));
        };
        let pv_name = volume_name(pvc);
        if pv_name.is_empty() {
            let class_name = claim_class(pvc);
            if class_name.is_empty() {
                return Err(Status::unresolvable(
                    "PersistentVolumeClaim had no pv name and storageClass name",
                ));
            }
            let Some(class) = cluster.storage_classes.get(class_name) else {
                return Err(Status::unresolvable(not_found(
                    "storageclass.storage.k8s.io",
                    class_name,
                )));
            };
            match class.volume_binding_mode.as_deref() {
                None => {
                    return Err(Status::unresolvable(format!(
                        "VolumeBindingMode not set for StorageClass {class_name:?}"
                    )))
                }
                Some(WAIT_FOR_FIRST_CONSUMER) => continue,
                Some(_) => return Err(Status::unresolvable("PersistentVolume had no name")),
            }
        }
        let Some(pv) = cluster.pvs.get(pv_name) else {
            return Err(Status::unresolvable(not_found("persistentvolume", pv_name)));
        };
        out.extend(pv_topologies(pv));
    }
    Ok(out)
}

impl PreFilterPlugin for VolumeZone {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
    ) -> (Status, NodeNames) {
        match pod_topologies(pod, cluster) {
            Err(status) => (status, None),
            Ok(t) if t.is_empty() => (Status::skip(), None),
            Ok(t) => {
                state.write(
                    NAME,
                    State {
                        topologies: Arc::new(t),
                    },
                );
                (Status::success(), None)
            }
        }
    }
}

impl FilterPlugin for VolumeZone {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod_volumes(&pod.pod).is_empty() {
            return Status::success();
        }
        let Some(st) = state.read::<State>(NAME) else {
            return Status::error(format!(
                "reading \"PreFilter{NAME}\" from cycleState: not found"
            ));
        };
        let labels = node.labels();
        if !TOPOLOGY_LABELS.iter().any(|k| labels.contains_key(*k)) {
            return Status::success();
        }
        for t in st.topologies.iter() {
            // A PV with a legacy label still matches a node that only has the GA one.
            let value = labels.get(t.key).or_else(|| labels.get(ga_label(t.key)));
            if !value.is_some_and(|v| t.values.contains(v)) {
                return Status::unresolvable(REASON_CONFLICT);
            }
        }
        Status::success()
    }
}

pub fn register(_args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    let plugin = Arc::new(VolumeZone);
    Ok(Registered {
        pre_filter: Some(plugin.clone()),
        filter: Some(plugin.clone()),
        events: plugin.events(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::pod_info;
    use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
    use k8s_openapi::api::storage::v1::StorageClass;
    use serde_json::{json, Value};

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        let nodes = [
            ("zone-a", json!({ZONE: "a", REGION: "r1"})),
            ("zone-b", json!({ZONE: "b", REGION: "r1"})),
            ("legacy-a", json!({BETA_ZONE: "a"})),
            ("unlabelled", json!({})),
        ];
        for (name, labels) in nodes {
            let node: Node =
                serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                    .unwrap();
            c.upsert_node(Arc::new(node));
        }
        c
    }

    fn add_bound(c: &mut Cluster, claim: &str, pv: &str, labels: Value) {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": claim, "namespace": "ns"}, "spec": {"volumeName": pv}}))
        .unwrap();
        c.pvcs.insert(format!("ns/{claim}"), Arc::new(pvc));
        let pv: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": pv, "labels": labels}})).unwrap();
        c.pvs
            .insert(pv.metadata.name.clone().unwrap(), Arc::new(pv));
    }

    fn pod(claims: &[&str]) -> Arc<PodInfo> {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        pod_info(
            serde_json::from_value::<Pod>(json!({
                "metadata": {"name": "p", "namespace": "ns", "uid": "p"},
                "spec": {"containers": [], "volumes": volumes}}))
            .unwrap(),
        )
    }

    fn fits(c: &Cluster, p: &PodInfo) -> Result<Vec<&'static str>, Status> {
        let mut state = CycleState::default();
        let (s, _) = VolumeZone.pre_filter(&mut state, p, c);
        if s.is_skip() {
            return Ok(vec!["skip"]);
        }
        if !s.is_success() {
            return Err(s);
        }
        let mut names: Vec<&'static str> = Vec::new();
        for n in c.nodes() {
            let st = VolumeZone.filter(&state, p, n);
            if st.is_success() {
                names.push(match n.name.as_str() {
                    "zone-a" => "zone-a",
                    "zone-b" => "zone-b",
                    "legacy-a" => "legacy-a",
                    _ => "unlabelled",
                });
            } else {
                assert_eq!(st.code, Code::UnschedulableAndUnresolvable);
                assert_eq!(st.reasons, vec![REASON_CONFLICT]);
            }
        }
        names.sort();
        Ok(names)
    }

    #[test]
    fn bound_volumes_pin_pods_to_their_zones() {
        let mut c = cluster();
        add_bound(&mut c, "data", "pv-a", json!({ZONE: "a"}));
        // Only a legacy label on the PV falls back to the node's GA one, not the reverse.
        assert_eq!(
            fits(&c, &pod(&["data"])).unwrap(),
            vec!["unlabelled", "zone-a"]
        );
        add_bound(&mut c, "data", "pv-a", json!({BETA_ZONE: "a"}));
        assert_eq!(
            fits(&c, &pod(&["data"])).unwrap(),
            vec!["legacy-a", "unlabelled", "zone-a"]
        );

        add_bound(&mut c, "data", "pv-a", json!({BETA_ZONE: "a__b"}));
        assert_eq!(
            fits(&c, &pod(&["data"])).unwrap(),
            vec!["legacy-a", "unlabelled", "zone-a", "zone-b"]
        );

        add_bound(&mut c, "data", "pv-a", json!({REGION: "r2"}));
        assert_eq!(fits(&c, &pod(&["data"])).unwrap(), vec!["unlabelled"]);

        // Unlabelled volumes put no constraint.
        add_bound(&mut c, "data", "pv-a", json!({}));
        assert_eq!(fits(&c, &pod(&["data"])).unwrap(), vec!["skip"]);
    }

    #[test]
    fn missing_objects_are_unresolvable() {
        let mut c = cluster();
        let err = fits(&c, &pod(&["data"])).unwrap_err();
        assert_eq!(err.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            err.reasons,
            vec![r#"persistentvolumeclaim "data" not found"#]
        );

        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns"}, "spec": {"volumeName": "pv-x"}}))
        .unwrap();
        c.pvcs.insert("ns/data".into(), Arc::new(pvc));
        let err = fits(&c, &pod(&["data"])).unwrap_err();
        assert_eq!(err.reasons, vec![r#"persistentvolume "pv-x" not found"#]);
    }

    #[test]
    fn unbound_claims_depend_on_their_class() {
        let mut c = cluster();
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns"},
            "spec": {"storageClassName": "wait"}}))
        .unwrap();
        c.pvcs.insert("ns/data".into(), Arc::new(pvc));
        let err = fits(&c, &pod(&["data"])).unwrap_err();
        assert_eq!(
            err.reasons,
            vec![r#"storageclass.storage.k8s.io "wait" not found"#]
        );

        let class = |mode: &str| -> Arc<StorageClass> {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "wait"},
                    "provisioner": "x", "volumeBindingMode": mode}))
                .unwrap(),
            )
        };
        c.storage_classes
            .insert("wait".into(), class("WaitForFirstConsumer"));
        assert_eq!(fits(&c, &pod(&["data"])).unwrap(), vec!["skip"]);
        c.storage_classes.insert("wait".into(), class("Immediate"));
        let err = fits(&c, &pod(&["data"])).unwrap_err();
        assert_eq!(err.reasons, vec!["PersistentVolume had no name"]);
    }
}
