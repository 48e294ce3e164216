//! VolumeRestrictions: volumes that only one pod may use at a time.
//!
//! In-tree disks (GCE PD, AWS EBS, Ceph RBD, iSCSI) conflict with the same disk already
//! mounted on the node unless every mount is read-only (EBS: always). A claim with the
//! ReadWriteOncePod access mode may be used by a single pod in the whole cluster; PreFilter
//! counts the pods already using the pod's such claims, and while any does, every node is
//! rejected (preemption may help, so the code is Unschedulable).

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Volume};

use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::*;
use crate::plugins::volumebinding::storage::{not_found, pod_volumes, READ_WRITE_ONCE_POD};
use crate::plugins::{PluginContext, Registered};

pub const NAME: &str = "VolumeRestrictions";

pub const REASON_DISK_CONFLICT: &str = "node(s) had no available disk";
pub const REASON_RWOP_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";

#[derive(Clone)]
struct State {
    namespace: String,
    /// Names of the pod's claims with the ReadWriteOncePod access mode.
    rwop_claims: Arc<HashSet<String>>,
    /// How many of those claims scheduled pods already use.
    conflicts: i64,
}

impl State {
    fn uses(&self, pod: &Pod) -> i64 {
        if pod.metadata.namespace.as_deref().unwrap_or_default() != self.namespace {
            return 0;
        }
        pod_volumes(pod)
            .iter()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .filter(|c| self.rwop_claims.contains(&c.claim_name))
            .count() as i64
    }
}

pub struct VolumeRestrictions;

impl Plugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            // Deleting a pod frees its disks and claims.
            ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE),
            ClusterEvent::new(EventResource::Node, ActionType::ADD),
            // The claim must exist to read its access modes.
            ClusterEvent::new(EventResource::PersistentVolumeClaim, ActionType::ADD),
        ]
    }
}

fn needs_disk_check(v: &Volume) -> bool {
    v.gce_persistent_disk.is_some()
        || v.aws_elastic_block_store.is_some()
        || v.rbd.is_some()
        || v.iscsi.is_some()
}

/// Whether mounting `vol` conflicts with a volume `other` already mounts.
fn disk_conflict(vol: &Volume, other: &Pod) -> bool {
    pod_volumes(other).iter().any(|existing| {
        if let (Some(a), Some(b)) = (&vol.gce_persistent_disk, &existing.gce_persistent_disk) {
            let both_ro = a.read_only.unwrap_or(false) && b.read_only.unwrap_or(false);
            if a.pd_name == b.pd_name && !both_ro {
                return true;
            }
        }
        if let (Some(a), Some(b)) = (
            &vol.aws_elastic_block_store,
            &existing.aws_elastic_block_store,
        ) {
            if a.volume_id == b.volume_id {
                return true;
            }
        }
        if let (Some(a), Some(b)) = (&vol.iscsi, &existing.iscsi) {
            let both_ro = a.read_only.unwrap_or(false) && b.read_only.unwrap_or(false);
            if a.iqn == b.iqn && !both_ro {
                return true;
            }
        }
        if let (Some(a), Some(b)) = (&vol.rbd, &existing.rbd) {
            // The same image: a shared monitor, the same pool (defaulted to "rbd" by the
            // apiserver) and the same image name.
            let pool = |p: &Option<String>| p.clone().unwrap_or_else(|| "rbd".to_string());
            let shared_monitor = a.monitors.iter().any(|m| b.monitors.contains(m));
            let both_ro = a.read_only.unwrap_or(false) && b.read_only.unwrap_or(false);
            if shared_monitor && pool(&a.pool) == pool(&b.pool) && a.image == b.image && !both_ro {
                return true;
            }
        }
        false
    })
}

impl PreFilterPlugin for VolumeRestrictions {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
    ) -> (Status, NodeNames) {
        let volumes = pod_volumes(&pod.pod);
        let needs_check = volumes.iter().any(needs_disk_check);

        let mut rwop_claims = HashSet::new();
        for claim in volumes
            .iter()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
        {
            let key = format!("{}/{}", pod.namespace(), claim.claim_name);
            let Some(pvc) = cluster.pvcs.get(&key) else {
                return (
                    Status::unresolvable(not_found("persistentvolumeclaim", &claim.claim_name)),
                    None,
                );
            };
            let modes = pvc.spec.as_ref().and_then(|s| s.access_modes.as_deref());
            if modes
                .unwrap_or_default()
                .iter()
                .any(|m| m == READ_WRITE_ONCE_POD)
            {
                rwop_claims.insert(claim.claim_name.clone());
            }
        }

        // At most one pod can be using a ReadWriteOncePod claim.
        let conflicts = rwop_claims
            .iter()
            .filter(|name| {
                let key = format!("{}/{}", pod.namespace(), name);
                cluster
                    .nodes()
                    .iter()
                    .any(|n| n.pvc_ref_counts.get(&key).is_some_and(|c| *c > 0))
            })
            .count() as i64;

        if !needs_check && conflicts == 0 {
            return (Status::skip(), None);
        }
        state.write(
            NAME,
            State {
                namespace: pod.namespace().to_string(),
                rwop_claims: Arc::new(rwop_claims),
                conflicts,
            },
        );
        (Status::success(), None)
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        other: &Arc<PodInfo>,
        _node: &NodeInfo,
        _cluster: &Cluster,
    ) -> Status {
        if let Some(st) = state.read_mut::<State>(NAME) {
            st.conflicts += st.uses(&other.pod);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        other: &Arc<PodInfo>,
        _node: &NodeInfo,
        _cluster: &Cluster,
    ) -> Status {
        if let Some(st) = state.read_mut::<State>(NAME) {
            st.conflicts -= st.uses(&other.pod);
        }
        Status::success()
    }
}

impl FilterPlugin for VolumeRestrictions {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for vol in pod_volumes(&pod.pod).iter().filter(|v| needs_disk_check(v)) {
            if node.pods.iter().any(|other| disk_conflict(vol, &other.pod)) {
                return Status::unschedulable(REASON_DISK_CONFLICT);
            }
        }
        let Some(st) = state.read::<State>(NAME) else {
            return Status::error(format!("cannot read \"PreFilter{NAME}\" from cycleState"));
        };
        if st.conflicts > 0 {
            return Status::unschedulable(REASON_RWOP_CONFLICT);
        }
        Status::success()
    }
}

pub fn register(_args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    let plugin = Arc::new(VolumeRestrictions);
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
    use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
    use serde_json::{json, Value};

    fn pod(name: &str, node: Option<&str>, volumes: Value) -> Arc<PodInfo> {
        let mut spec = json!({"containers": [{"name": "c"}], "volumes": volumes});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        pod_info(
            serde_json::from_value::<Pod>(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": name}, "spec": spec}))
            .unwrap(),
        )
    }

    fn claim(name: &str, modes: &[&str]) -> Arc<PersistentVolumeClaim> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"},
                "spec": {"accessModes": modes}}))
            .unwrap(),
        )
    }

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        for n in ["n1", "n2"] {
            let node: Node = serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
            c.upsert_node(Arc::new(node));
        }
        c
    }

    fn filter_all(c: &Cluster, p: &PodInfo) -> (Status, Vec<Status>) {
        let mut state = CycleState::default();
        let (s, _) = VolumeRestrictions.pre_filter(&mut state, p, c);
        let statuses = if s.is_success() {
            c.nodes()
                .iter()
                .map(|n| VolumeRestrictions.filter(&state, p, n))
                .collect()
        } else {
            Vec::new()
        };
        (s, statuses)
    }

    #[test]
    fn pods_without_restricted_volumes_skip() {
        let c = cluster();
        let (s, _) = filter_all(&c, &pod("p", None, json!([{"name": "e", "emptyDir": {}}])));
        assert!(s.is_skip());
    }

    #[test]
    fn in_tree_disks_conflict_unless_all_read_only() {
        let mut c = cluster();
        c.upsert_bound_pod(pod(
            "old",
            Some("n1"),
            json!([
                {"name": "gce", "gcePersistentDisk": {"pdName": "disk", "readOnly": true}},
                {"name": "ebs", "awsElasticBlockStore": {"volumeID": "vol-1"}},
                {"name": "rbd", "rbd": {"monitors": ["m1", "m2"], "image": "img"}},
                {"name": "iscsi", "iscsi": {"iqn": "iqn.1", "targetPortal": "p", "lun": 0}}
            ]),
        ));
        let cases = [
            (
                json!({"gcePersistentDisk": {"pdName": "disk", "readOnly": true}}),
                true,
            ),
            (json!({"gcePersistentDisk": {"pdName": "disk"}}), false),
            (json!({"gcePersistentDisk": {"pdName": "other"}}), true),
            (
                json!({"awsElasticBlockStore": {"volumeID": "vol-1", "readOnly": true}}),
                false,
            ),
            (
                json!({"rbd": {"monitors": ["m2"], "image": "img", "pool": "rbd"}}),
                false,
            ),
            (json!({"rbd": {"monitors": ["m3"], "image": "img"}}), true),
            (
                json!({"iscsi": {"iqn": "iqn.1", "targetPortal": "p", "lun": 0}}),
                false,
            ),
        ];
        for (source, fits) in cases {
            let mut vol = json!({"name": "v"});
            merge(&mut vol, source.clone());
            let p = pod("new", None, json!([vol]));
            let (s, statuses) = filter_all(&c, &p);
            assert!(s.is_success(), "{source}");
            let on_n1 = c.nodes().iter().position(|n| n.name == "n1").unwrap();
            if fits {
                assert!(statuses[on_n1].is_success(), "{source}");
            } else {
                assert_eq!(statuses[on_n1].code, Code::Unschedulable, "{source}");
                assert_eq!(statuses[on_n1].reasons, vec![REASON_DISK_CONFLICT]);
            }
            // The other node has no disks mounted.
            assert!(statuses[1 - on_n1].is_success());
        }
    }

    fn merge(base: &mut Value, extra: Value) {
        if let (Value::Object(b), Value::Object(e)) = (base, extra) {
            b.extend(e);
        }
    }

    #[test]
    fn missing_claims_are_unresolvable() {
        let c = cluster();
        let p = pod(
            "p",
            None,
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]),
        );
        let (s, _) = filter_all(&c, &p);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec![r#"persistentvolumeclaim "data" not found"#]);
    }

    #[test]
    fn read_write_once_pod_claims_admit_one_pod() {
        let mut c = cluster();
        c.pvcs
            .insert("ns/solo".into(), claim("solo", &[READ_WRITE_ONCE_POD]));
        c.pvcs
            .insert("ns/shared".into(), claim("shared", &["ReadWriteOnce"]));
        let volumes = json!([{"name": "d", "persistentVolumeClaim": {"claimName": "solo"}}]);
        let p = pod("p", None, volumes.clone());
        // Nobody uses the claim yet: nothing to check.
        assert!(filter_all(&c, &p).0.is_skip());

        let user = pod("user", Some("n2"), volumes.clone());
        c.upsert_bound_pod(user.clone());
        let (s, statuses) = filter_all(&c, &p);
        assert!(s.is_success());
        for st in &statuses {
            assert_eq!(st.code, Code::Unschedulable);
            assert_eq!(st.reasons, vec![REASON_RWOP_CONFLICT]);
        }

        // Preemption's what-if: removing the user frees the claim.
        let mut state = CycleState::default();
        VolumeRestrictions.pre_filter(&mut state, &p, &c);
        let n2 = c.node("n2").unwrap().clone();
        VolumeRestrictions.remove_pod(&mut state, &p, &user, &n2, &c);
        assert!(VolumeRestrictions.filter(&state, &p, &n2).is_success());
        VolumeRestrictions.add_pod(&mut state, &p, &user, &n2, &c);
        assert!(!VolumeRestrictions.filter(&state, &p, &n2).is_success());

        // Sharing a ReadWriteOnce claim is fine.
        let q = pod(
            "q",
            None,
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}]),
        );
        c.upsert_bound_pod(pod(
            "other",
            Some("n1"),
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}]),
        ));
        assert!(filter_all(&c, &q).0.is_skip());
    }
}
