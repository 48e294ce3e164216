//! NodeVolumeLimits: a node can attach only so many volumes of each CSI driver
//! (`CSINode.spec.drivers[].allocatable.count`, or the legacy
//! `attachable-volumes-csi-<driver>` allocatable on the Node). Volumes are counted once
//! however many pods on the node use them; claims not bound yet count by their class's
//! provisioner. In-tree volumes of plugins migrated to CSI (AWS EBS, GCE PD, Azure Disk,
//! Cinder) count against their CSI driver once the node has a CSINode, as upstream.
//!
//! Filter only sees the node, so PreFilter resolves, for every node with limits, the CSI
//! volumes of the pod and of the pods already there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Volume};
use k8s_openapi::api::storage::v1::CSINode;

use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::*;
use crate::plugins::volumebinding::storage::{
    claim_class, claim_of, not_found, pod_volumes, volume_is_for_pod, volume_name,
};
use crate::plugins::{PluginContext, Registered};

pub const NAME: &str = "NodeVolumeLimits";

pub const REASON_MAX_VOLUME_COUNT: &str = "node(s) exceed max volume count";

/// Node allocatable names for CSI attach limits, followed by the driver name.
const CSI_ATTACH_LIMIT_PREFIX: &str = "attachable-volumes-csi-";

/// `<driver>/<volume handle>` → driver, for one pod.
type Attachable = BTreeMap<String, String>;

#[derive(Clone, Default)]
struct NodeEntry {
    /// The new pod's CSI volumes as this node sees them, or why they cannot be counted.
    new_volumes: Option<Result<Attachable, Status>>,
    /// Max attachable volumes per driver.
    limits: HashMap<String, i64>,
}

#[derive(Clone, Default)]
struct State {
    nodes: Arc<HashMap<String, NodeEntry>>,
    /// The CSI volumes of pods on nodes with limits, by pod UID (an error when one of them
    /// cannot be resolved).
    pod_volumes: HashMap<String, Result<Attachable, String>>,
}

pub struct NodeVolumeLimits {
    /// Stands in for the volume handle of claims not bound yet, so they cannot collide with
    /// a real handle.
    unbound_prefix: String,
}

impl Plugin for NodeVolumeLimits {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::CSINode, ActionType::ADD),
            ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE),
            ClusterEvent::new(EventResource::PersistentVolumeClaim, ActionType::ADD),
        ]
    }
}

/// An in-tree plugin upstream translates to CSI, by plugin name and CSI driver name.
struct Migrated {
    plugin: &'static str,
    driver: &'static str,
}

const AWS_EBS: Migrated = Migrated {
    plugin: "kubernetes.io/aws-ebs",
    driver: "ebs.csi.aws.com",
};
const GCE_PD: Migrated = Migrated {
    plugin: "kubernetes.io/gce-pd",
    driver: "pd.csi.storage.gke.io",
};
const AZURE_DISK: Migrated = Migrated {
    plugin: "kubernetes.io/azure-disk",
    driver: "disk.csi.azure.com",
};
const CINDER: Migrated = Migrated {
    plugin: "kubernetes.io/cinder",
    driver: "cinder.csi.openstack.org",
};

fn migrated_provisioner(provisioner: &str) -> Option<&'static Migrated> {
    [&AWS_EBS, &GCE_PD, &AZURE_DISK, &CINDER]
        .into_iter()
        .find(|m| m.plugin == provisioner)
}

/// `aws://<zone>/<volume-id>` and plain IDs name the same EBS volume.
fn ebs_volume_id(id: &str) -> String {
    match id.strip_prefix("aws://") {
        Some(rest) => rest.rsplit('/').next().unwrap_or(rest).to_string(),
        None => id.to_string(),
    }
}

fn gce_handle(pd_name: &str, zone: Option<&str>) -> String {
    let zone = zone
        .filter(|z| !z.is_empty() && !z.contains("__"))
        .unwrap_or("UNSPECIFIED");
    format!("projects/UNSPECIFIED/zones/{zone}/disks/{pd_name}")
}

/// The CSI driver and handle an in-tree volume source translates to.
fn translate_inline(vol: &Volume) -> Option<(&'static str, String)> {
    if let Some(s) = &vol.aws_elastic_block_store {
        return Some((AWS_EBS.driver, ebs_volume_id(&s.volume_id)));
    }
    if let Some(s) = &vol.gce_persistent_disk {
        return Some((GCE_PD.driver, gce_handle(&s.pd_name, None)));
    }
    if let Some(s) = &vol.azure_disk {
        return Some((AZURE_DISK.driver, s.disk_uri.clone()));
    }
    if let Some(s) = &vol.cinder {
        return Some((CINDER.driver, s.volume_id.clone()));
    }
    None
}

fn translate_pv(pv: &PersistentVolume) -> Option<(&'static str, String)> {
    let spec = pv.spec.as_ref()?;
    if let Some(s) = &spec.aws_elastic_block_store {
        return Some((AWS_EBS.driver, ebs_volume_id(&s.volume_id)));
    }
    if let Some(s) = &spec.gce_persistent_disk {
        let labels = pv.metadata.labels.as_ref();
        let zone = labels.and_then(|l| {
            l.get("topology.kubernetes.io/zone")
                .or_else(|| l.get("failure-domain.beta.kubernetes.io/zone"))
        });
        return Some((
            GCE_PD.driver,
            gce_handle(&s.pd_name, zone.map(String::as_str)),
        ));
    }
    if let Some(s) = &spec.azure_disk {
        return Some((AZURE_DISK.driver, s.disk_uri.clone()));
    }
    if let Some(s) = &spec.cinder {
        return Some((CINDER.driver, s.volume_id.clone()));
    }
    None
}

/// Why one of a pod's volumes cannot be counted.
enum VolumeError {
    /// The claim does not exist (the pod cannot run until it does).
    NotFound(String),
    Other(String),
}

impl NodeVolumeLimits {
    /// The CSI driver and volume handle a claim's volume has, or will have once provisioned.
    fn claim_driver(
        &self,
        cluster: &Cluster,
        csi_node: Option<&CSINode>,
        pvc: &PersistentVolumeClaim,
    ) -> Option<(String, String)> {
        let pv_name = volume_name(pvc);
        if let Some(pv) = (!pv_name.is_empty())
            .then(|| cluster.pvs.get(pv_name))
            .flatten()
        {
            if let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.as_ref()) {
                return Some((csi.driver.clone(), csi.volume_handle.clone()));
            }
            // Upstream considers migration on for these plugins whenever the node has a
            // CSINode.
            csi_node?;
            let (driver, handle) = translate_pv(pv)?;
            return Some((driver.to_string(), handle));
        }
        // Not bound, or bound to a PV the cache lacks: count it by the class's provisioner.
        let class_name = claim_class(pvc);
        if class_name.is_empty() {
            return None;
        }
        let class = cluster.storage_classes.get(class_name)?;
        let handle = format!(
            "{}-{}/{}",
            self.unbound_prefix,
            pvc.metadata.namespace.as_deref().unwrap_or_default(),
            pvc.metadata.name.as_deref().unwrap_or_default()
        );
        if let Some(m) = migrated_provisioner(&class.provisioner) {
            csi_node?;
            return Some((m.driver.to_string(), handle));
        }
        // The other in-tree plugins upstream can translate are never counted as migrated.
        if matches!(
            class.provisioner.as_str(),
            "kubernetes.io/azure-file"
                | "kubernetes.io/vsphere-volume"
                | "kubernetes.io/portworx-volume"
        ) {
            return None;
        }
        Some((class.provisioner.clone(), handle))
    }

    /// The pod's CSI volumes on a node with this CSINode. For the pod being scheduled a
    /// missing claim is an error; for pods already running it is just not counted.
    fn attachable(
        &self,
        cluster: &Cluster,
        csi_node: Option<&CSINode>,
        pod: &Pod,
        new_pod: bool,
    ) -> Result<Attachable, VolumeError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = Attachable::new();
        for vol in pod_volumes(pod) {
            let Some((claim_name, ephemeral)) = claim_of(pod, vol) else {
                if csi_node.is_some() {
                    if let Some((driver, handle)) = translate_inline(vol) {
                        out.insert(format!("{driver}/{handle}"), driver.to_string());
                    }
                }
                continue;
            };
            if claim_name.is_empty() {
                return Err(VolumeError::Other(
                    "PersistentVolumeClaim had no name".to_string(),
                ));
            }
            let Some(pvc) = cluster.pvcs.get(&format!("{ns}/{claim_name}")) else {
                if new_pod {
                    return Err(VolumeError::NotFound(format!(
                        "looking up PVC {ns}/{claim_name}: {}",
                        not_found("persistentvolumeclaim", &claim_name)
                    )));
                }
                continue;
            };
            if ephemeral {
                volume_is_for_pod(pod, pvc).map_err(VolumeError::Other)?;
            }
            if let Some((driver, handle)) = self.claim_driver(cluster, csi_node, pvc) {
                if !driver.is_empty() && !handle.is_empty() {
                    out.insert(format!("{driver}/{handle}"), driver);
                }
            }
        }
        Ok(out)
    }
}

/// Whether upstream's PreFilter lets the pod through to Filter: it has a claim, or an
/// inline volume of a plugin migrated to CSI.
fn has_countable_volumes(pod: &Pod) -> bool {
    pod_volumes(pod).iter().any(|v| {
        v.persistent_volume_claim.is_some()
            || v.ephemeral.is_some()
            || translate_inline(v).is_some()
            || v.azure_file.is_some()
            || v.vsphere_volume.is_some()
            || v.portworx_volume.is_some()
    })
}

/// Max attachable volumes per CSI driver: the Node's legacy allocatable, overridden by the
/// CSINode's counts.
fn volume_limits(node: &Node, csi_node: Option<&CSINode>) -> HashMap<String, i64> {
    let mut limits = HashMap::new();
    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    for (name, q) in allocatable.into_iter().flatten() {
        if let Some(driver) = name.strip_prefix(CSI_ATTACH_LIMIT_PREFIX) {
            if let Ok(q) = ferrokube_common::quantity::Quantity::parse(&q.0) {
                limits.insert(driver.to_string(), q.value());
            }
        }
    }
    for d in csi_node
        .map(|c| c.spec.drivers.as_slice())
        .unwrap_or_default()
    {
        if let Some(count) = d.allocatable.as_ref().and_then(|a| a.count) {
            limits.insert(d.name.clone(), i64::from(count));
        }
    }
    limits
}

fn to_status(e: VolumeError) -> Status {
    match e {
        VolumeError::NotFound(msg) => Status::unresolvable(msg),
        VolumeError::Other(msg) => Status::error(msg),
    }
}

impl PreFilterPlugin for NodeVolumeLimits {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
    ) -> (Status, NodeNames) {
        if !has_countable_volumes(&pod.pod) {
            return (Status::skip(), None);
        }
        let mut nodes = HashMap::new();
        let mut pod_volumes = HashMap::new();
        for info in cluster.nodes() {
            let Some(node) = info.node.as_ref() else {
                continue;
            };
            let csi_node = cluster.csi_nodes.get(&info.name).map(Arc::as_ref);
            let new_volumes = self
                .attachable(cluster, csi_node, &pod.pod, true)
                .map_err(to_status);
            let limits = volume_limits(node, csi_node);
            if matches!(&new_volumes, Ok(v) if !v.is_empty()) && !limits.is_empty() {
                for other in &info.pods {
                    let volumes = self
                        .attachable(cluster, csi_node, &other.pod, false)
                        .map_err(|e| match e {
                            VolumeError::NotFound(m) | VolumeError::Other(m) => m,
                        });
                    pod_volumes.insert(other.uid().to_string(), volumes);
                }
            }
            nodes.insert(
                info.name.clone(),
                NodeEntry {
                    new_volumes: Some(new_volumes),
                    limits,
                },
            );
        }
        state.write(
            NAME,
            State {
                nodes: Arc::new(nodes),
                pod_volumes,
            },
        );
        (Status::success(), None)
    }

    /// Preemption may place a nominated pod on the node; Filter needs its volumes too.
    fn add_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
        cluster: &Cluster,
    ) -> Status {
        let Some(st) = state.read_mut::<State>(NAME) else {
            return Status::success();
        };
        if st.pod_volumes.contains_key(other.uid()) {
            return Status::success();
        }
        let csi_node = cluster.csi_nodes.get(&node.name).map(Arc::as_ref);
        let volumes = self
            .attachable(cluster, csi_node, &other.pod, false)
            .map_err(|e| match e {
                VolumeError::NotFound(m) | VolumeError::Other(m) => m,
            });
        st.pod_volumes.insert(other.uid().to_string(), volumes);
        Status::success()
    }
}

impl FilterPlugin for NodeVolumeLimits {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod_volumes(&pod.pod).is_empty() {
            return Status::success();
        }
        let Some(st) = state.read::<State>(NAME) else {
            return Status::error(format!("reading {NAME:?} from cycleState: not found"));
        };
        let Some(entry) = st.nodes.get(&node.name) else {
            return Status::success();
        };
        let mut new_volumes = match &entry.new_volumes {
            None => return Status::success(),
            Some(Err(status)) => return status.clone(),
            Some(Ok(v)) => v.clone(),
        };
        if new_volumes.is_empty() || entry.limits.is_empty() {
            return Status::success();
        }

        let mut attached = Attachable::new();
        for other in &node.pods {
            match st.pod_volumes.get(other.uid()) {
                Some(Ok(v)) => attached.extend(v.iter().map(|(k, d)| (k.clone(), d.clone()))),
                Some(Err(e)) => return Status::error(e.clone()),
                None => {}
            }
        }
        let mut attached_count: HashMap<&str, i64> = HashMap::new();
        for (volume, driver) in &attached {
            // A volume already attached for another pod costs nothing more.
            new_volumes.remove(volume);
            *attached_count.entry(driver).or_default() += 1;
        }
        let mut new_count: HashMap<&str, i64> = HashMap::new();
        for driver in new_volumes.values() {
            *new_count.entry(driver).or_default() += 1;
        }
        for (driver, count) in new_count {
            if let Some(limit) = entry.limits.get(driver) {
                let current = attached_count.get(driver).copied().unwrap_or(0);
                if current + count > *limit {
                    return Status::unschedulable(REASON_MAX_VOLUME_COUNT);
                }
            }
        }
        Status::success()
    }
}

pub fn register(_args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    let prefix: String = {
        use rand::distr::{Alphanumeric, SampleString};
        Alphanumeric.sample_string(&mut rand::rng(), 32)
    };
    let plugin = Arc::new(NodeVolumeLimits {
        unbound_prefix: prefix,
    });
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
    use k8s_openapi::api::storage::v1::StorageClass;
    use serde_json::{json, Value};

    fn plugin() -> NodeVolumeLimits {
        NodeVolumeLimits {
            unbound_prefix: "unbound".to_string(),
        }
    }

    fn pod(name: &str, node: Option<&str>, claims: &[&str]) -> Arc<PodInfo> {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
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

    fn csi_claim(c: &mut Cluster, claim: &str, driver: &str, handle: &str) {
        let pv_name = format!("pv-{claim}");
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": claim, "namespace": "ns"}, "spec": {"volumeName": pv_name}}))
        .unwrap();
        c.pvcs.insert(format!("ns/{claim}"), Arc::new(pvc));
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": pv_name},
            "spec": {"csi": {"driver": driver, "volumeHandle": handle}}}))
        .unwrap();
        c.pvs.insert(pv_name, Arc::new(pv));
    }

    fn cluster(limit: i32) -> Cluster {
        let mut c = Cluster::default();
        for n in ["n1", "n2"] {
            let node: Node = serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
            c.upsert_node(Arc::new(node));
        }
        let csi: CSINode = serde_json::from_value(json!({"metadata": {"name": "n1"},
            "spec": {"drivers": [{"name": "ebs.csi.aws.com", "nodeID": "i-1",
                "allocatable": {"count": limit}}]}}))
        .unwrap();
        c.csi_nodes.insert("n1".into(), Arc::new(csi));
        c
    }

    fn filter(c: &Cluster, p: &PodInfo, node: &str) -> Status {
        let pl = plugin();
        let mut state = CycleState::default();
        let (s, _) = pl.pre_filter(&mut state, p, c);
        if !s.is_success() {
            return s;
        }
        pl.filter(&state, p, c.node(node).unwrap())
    }

    #[test]
    fn pods_without_claims_skip() {
        let c = cluster(1);
        let p = pod_info(
            serde_json::from_value::<Pod>(json!({"metadata": {"name": "p", "namespace": "ns"},
                "spec": {"containers": [], "volumes": [{"name": "e", "emptyDir": {}}]}}))
            .unwrap(),
        );
        let mut state = CycleState::default();
        assert!(plugin().pre_filter(&mut state, &p, &c).0.is_skip());
    }

    #[test]
    fn counts_unique_volumes_against_the_csinode_limit() {
        let mut c = cluster(2);
        csi_claim(&mut c, "a", "ebs.csi.aws.com", "vol-a");
        csi_claim(&mut c, "b", "ebs.csi.aws.com", "vol-b");
        csi_claim(&mut c, "c", "ebs.csi.aws.com", "vol-c");
        csi_claim(&mut c, "other", "other.csi", "x");
        c.upsert_bound_pod(pod("user-1", Some("n1"), &["a"]));
        c.upsert_bound_pod(pod("user-2", Some("n1"), &["a", "other"]));

        // vol-a is attached already; vol-b makes two of two.
        assert!(filter(&c, &pod("p", None, &["a", "b"]), "n1").is_success());
        let s = filter(&c, &pod("p", None, &["b", "c"]), "n1");
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(s.reasons, vec![REASON_MAX_VOLUME_COUNT]);
        // n2 has no limits at all; other drivers have none on n1.
        assert!(filter(&c, &pod("p", None, &["b", "c"]), "n2").is_success());
        assert!(filter(&c, &pod("p", None, &["other"]), "n1").is_success());
    }

    #[test]
    fn unbound_claims_count_by_provisioner() {
        let mut c = cluster(1);
        csi_claim(&mut c, "a", "ebs.csi.aws.com", "vol-a");
        c.upsert_bound_pod(pod("user", Some("n1"), &["a"]));
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "new", "namespace": "ns"},
            "spec": {"storageClassName": "gp3"}}))
        .unwrap();
        c.pvcs.insert("ns/new".into(), Arc::new(pvc));
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com"}))
        .unwrap();
        c.storage_classes.insert("gp3".into(), Arc::new(class));
        let s = filter(&c, &pod("p", None, &["new"]), "n1");
        assert_eq!(s.reasons, vec![REASON_MAX_VOLUME_COUNT]);
    }

    #[test]
    fn missing_claims_are_unresolvable() {
        let c = cluster(1);
        let s = filter(&c, &pod("p", None, &["nope"]), "n2");
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            s.reasons,
            vec![r#"looking up PVC ns/nope: persistentvolumeclaim "nope" not found"#]
        );
    }

    #[test]
    fn migrated_in_tree_volumes_count_against_their_csi_driver() {
        let mut c = cluster(1);
        let inline = |name: &str, node: Option<&str>, id: &str| {
            let mut spec = json!({"containers": [], "volumes": [
                {"name": "ebs", "awsElasticBlockStore": {"volumeID": id}}]});
            if let Some(n) = node {
                spec["nodeName"] = json!(n);
            }
            pod_info(
                serde_json::from_value::<Pod>(json!({
                    "metadata": {"name": name, "namespace": "ns", "uid": name}, "spec": spec}))
                .unwrap(),
            )
        };
        c.upsert_bound_pod(inline("user", Some("n1"), "aws://us-east-1a/vol-1"));
        // The same EBS volume under its other name is not a second attachment.
        assert!(filter(&c, &inline("p", None, "vol-1"), "n1").is_success());
        let s = filter(&c, &inline("p", None, "vol-2"), "n1");
        assert_eq!(s.reasons, vec![REASON_MAX_VOLUME_COUNT]);
    }

    #[test]
    fn preemption_sees_nominated_pods_volumes() {
        let mut c = cluster(1);
        csi_claim(&mut c, "a", "ebs.csi.aws.com", "vol-a");
        csi_claim(&mut c, "b", "ebs.csi.aws.com", "vol-b");
        let pl = plugin();
        let p = pod("p", None, &["b"]);
        let mut state = CycleState::default();
        assert!(pl.pre_filter(&mut state, &p, &c).0.is_success());
        let nominated = pod("nominated", Some("n1"), &["a"]);
        let mut with = (**c.node("n1").unwrap()).clone();
        with.add_pod(nominated.clone());
        pl.add_pod(&mut state, &p, &nominated, &with, &c);
        assert_eq!(
            pl.filter(&state, &p, &with).reasons,
            vec![REASON_MAX_VOLUME_COUNT]
        );
        assert!(pl.filter(&state, &p, c.node("n1").unwrap()).is_success());
    }
}
