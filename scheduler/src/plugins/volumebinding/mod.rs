//! VolumeBinding: a pod's PersistentVolumeClaims must be bound, or bindable on the node.
//!
//! PreFilter sorts the claims (bound, or unbound in a WaitForFirstConsumer class; unbound
//! immediate claims reject the pod), Filter checks bound PVs' node affinity and finds an
//! existing PV or a provisioning path for each unbound claim, Reserve remembers the choice
//! so the next pods see those PVs as taken, and PreBind writes it to the API and waits for
//! the PV controller to finish. Upstream's Score only runs behind the alpha
//! StorageCapacityScoring gate, so there is none here.

mod binder;
mod prebind;
pub mod storage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use serde::Deserialize;

use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::*;
use crate::plugins::{PluginContext, Registered};

use binder::{find_pod_volumes, is_volume_bound_to_claim, PodClaims};
use storage::*;

pub const NAME: &str = "VolumeBinding";

pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub use binder::{
    REASON_BIND_CONFLICT, REASON_NODE_CONFLICT, REASON_NOT_ENOUGH_SPACE, REASON_PV_NOT_EXIST,
};

const DEFAULT_BIND_TIMEOUT_SECONDS: i64 = 600;

/// `VolumeBindingArgs`. `shape` only exists behind the StorageCapacityScoring gate, which
/// is off, so upstream's validation rejects it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Args {
    bind_timeout_seconds: Option<i64>,
    shape: Option<serde_json::Value>,
}

fn parse_args(args: &serde_json::Value) -> anyhow::Result<Duration> {
    let args: Args = if args.is_null() {
        Args::default()
    } else {
        serde_json::from_value(args.clone())
            .map_err(|e| anyhow::anyhow!("decoding VolumeBindingArgs: {e}"))?
    };
    let timeout = args
        .bind_timeout_seconds
        .unwrap_or(DEFAULT_BIND_TIMEOUT_SECONDS);
    let mut errors = Vec::new();
    if timeout < 0 {
        errors.push(format!(
            "bindTimeoutSeconds: Invalid value: {timeout}: invalid BindTimeoutSeconds, should not be a negative value"
        ));
    }
    if let Some(shape) = args.shape.as_ref().filter(|s| !s.is_null()) {
        errors.push(format!(
            "shape: Invalid value: {shape}: unexpected field `shape`, remove it or turn on the feature gate StorageCapacityScoring"
        ));
    }
    match errors.len() {
        0 => Ok(Duration::from_secs(timeout.unsigned_abs())),
        1 => Err(anyhow::anyhow!(errors.remove(0))),
        _ => Err(anyhow::anyhow!("[{}]", errors.join(", "))),
    }
}

/// A PV or PVC as a reserved pod will write it, standing in for the cached object until the
/// cache sees a newer version (upstream's assume cache).
struct Assumption<T> {
    object: Arc<T>,
    pod_uid: String,
}

#[derive(Default)]
struct Assumed {
    /// PV name → the PV with the claimRef a reserved pod is binding it with.
    pvs: HashMap<String, Assumption<PersistentVolume>>,
    /// `namespace/claim` → the claim with the node a reserved pod provisions it for.
    pvcs: HashMap<String, Assumption<PersistentVolumeClaim>>,
}

impl Assumed {
    /// Drops assumptions the cache has caught up with (the object changed since, or is gone).
    fn prune(&mut self, cluster: &Cluster) {
        self.pvs.retain(|name, a| {
            cluster.pvs.get(name).is_some_and(|pv| {
                pv.metadata.resource_version == a.object.metadata.resource_version
            })
        });
        self.pvcs.retain(|key, a| {
            cluster.pvcs.get(key).is_some_and(|pvc| {
                pvc.metadata.resource_version == a.object.metadata.resource_version
            })
        });
    }

    fn pv(&self, cluster: &Cluster, name: &str) -> Option<Arc<PersistentVolume>> {
        let cached = cluster.pvs.get(name)?;
        match self.pvs.get(name) {
            Some(a) if a.object.metadata.resource_version == cached.metadata.resource_version => {
                Some(a.object.clone())
            }
            _ => Some(cached.clone()),
        }
    }

    fn pvc(&self, cluster: &Cluster, key: &str) -> Option<Arc<PersistentVolumeClaim>> {
        let cached = cluster.pvcs.get(key)?;
        match self.pvcs.get(key) {
            Some(a) if a.object.metadata.resource_version == cached.metadata.resource_version => {
                Some(a.object.clone())
            }
            _ => Some(cached.clone()),
        }
    }

    fn forget_pod(&mut self, uid: &str) {
        self.pvs.retain(|_, a| a.pod_uid != uid);
        self.pvcs.retain(|_, a| a.pod_uid != uid);
    }
}

/// What Reserve decided for the chosen node, for PreBind to write.
#[derive(Debug)]
pub struct Reserved {
    pub node: String,
    pub node_labels: BTreeMap<String, String>,
    /// Each chosen PV as it will be written (claimRef set), with its claim.
    pub bindings: Vec<(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>)>,
    /// Each claim to provision as it will be written (selected node set).
    pub provisions: Vec<Arc<PersistentVolumeClaim>>,
}

#[derive(Clone)]
struct State {
    claims: Arc<PodClaims>,
    /// `None` until Reserve, and after it when every claim was already bound.
    reserved: Option<Arc<Reserved>>,
}

pub struct VolumeBinding {
    client: kube::Client,
    bind_timeout: Duration,
    assumed: Mutex<Assumed>,
}

impl VolumeBinding {
    fn assumed(&self) -> MutexGuard<'_, Assumed> {
        // The map stays consistent even if a holder panicked: every update is one insert
        // or retain.
        self.assumed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        events()
    }
}

fn events() -> Vec<ClusterEvent> {
    let add_or_update = ActionType::ADD | ActionType::UPDATE;
    vec![
        // A class appearing, or its allowedTopologies changing.
        ClusterEvent::new(EventResource::StorageClass, add_or_update),
        ClusterEvent::new(EventResource::PersistentVolumeClaim, add_or_update),
        ClusterEvent::new(EventResource::PersistentVolume, add_or_update),
        // Labels decide PV node affinity and allowed topologies.
        ClusterEvent::new(
            EventResource::Node,
            ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
        ),
        ClusterEvent::new(EventResource::CSINode, add_or_update),
    ]
}

/// Upstream's `IsDelayBindingMode`: a class the cache does not know counts as immediate.
fn is_delay_binding(pvc: &PersistentVolumeClaim, cluster: &Cluster) -> Result<bool, String> {
    let class_name = claim_class(pvc);
    if class_name.is_empty() {
        return Ok(false);
    }
    let Some(class) = cluster.storage_classes.get(class_name) else {
        return Ok(false);
    };
    match class.volume_binding_mode.as_deref() {
        None => Err(format!(
            "VolumeBindingMode not set for StorageClass {class_name:?}"
        )),
        Some(mode) => Ok(mode == WAIT_FOR_FIRST_CONSUMER),
    }
}

/// The pod's claims, or why the pod cannot be scheduled as they are (upstream's
/// `podHasPVCs`): each must exist, not be lost or being deleted, and an ephemeral volume's
/// claim must belong to the pod.
fn pod_claim_keys(pod: &PodInfo, cluster: &Cluster) -> Result<Vec<String>, Status> {
    let mut keys = Vec::new();
    for vol in pod_volumes(&pod.pod) {
        let Some((name, ephemeral)) = claim_of(&pod.pod, vol) else {
            continue;
        };
        let key = format!("{}/{}", pod.namespace(), name);
        let Some(pvc) = cluster.pvcs.get(&key) else {
            let msg = if ephemeral {
                format!(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                )
            } else {
                not_found("persistentvolumeclaim", &name)
            };
            return Err(Status::unresolvable(msg));
        };
        if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {:?}",
                volume_name(pvc)
            )));
        }
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim {name:?} is being deleted"
            )));
        }
        if ephemeral {
            volume_is_for_pod(&pod.pod, pvc).map_err(Status::unresolvable)?;
        }
        keys.push(key);
    }
    Ok(keys)
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
    ) -> (Status, NodeNames) {
        let keys = match pod_claim_keys(pod, cluster) {
            Ok(keys) => keys,
            Err(status) => return (status, None),
        };
        if keys.is_empty() {
            return (Status::skip(), None);
        }
        let mut assumed = self.assumed();
        assumed.prune(cluster);

        let mut claims = PodClaims::default();
        let mut unbound_immediate = false;
        let mut seen = HashSet::new();
        for key in keys {
            // A claim mounted twice is still one claim to bind.
            if !seen.insert(key.clone()) {
                continue;
            }
            let Some(pvc) = assumed.pvc(cluster, &key) else {
                continue;
            };
            if is_fully_bound(&pvc) {
                let pv = assumed.pv(cluster, volume_name(&pvc));
                claims.bound.push((pvc, pv));
                continue;
            }
            match is_delay_binding(&pvc, cluster) {
                Err(e) => return (Status::error(e), None),
                // A claim pre-bound to a PV is the PV controller's to finish.
                Ok(true) if volume_name(&pvc).is_empty() => claims.delayed.push(pvc),
                Ok(_) => unbound_immediate = true,
            }
        }
        if unbound_immediate {
            return (Status::unresolvable(REASON_UNBOUND_IMMEDIATE), None);
        }

        claims
            .delayed
            .sort_by_cached_key(|pvc| requested_storage(pvc));
        let classes: HashSet<&str> = claims.delayed.iter().map(|c| claim_class(c)).collect();
        let mut pvs_by_class: HashMap<String, Vec<Arc<PersistentVolume>>> = classes
            .iter()
            .map(|c| (c.to_string(), Vec::new()))
            .collect();
        if !pvs_by_class.is_empty() {
            for name in cluster.pvs.keys() {
                let Some(pv) = assumed.pv(cluster, name) else {
                    continue;
                };
                if let Some(list) = pvs_by_class.get_mut(volume_class(&pv)) {
                    list.push(pv);
                }
            }
        }
        for list in pvs_by_class.values_mut() {
            list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        }
        claims.classes = classes
            .iter()
            .map(|c| (c.to_string(), cluster.storage_classes.get(*c).cloned()))
            .collect();
        claims.pvs_by_class = pvs_by_class;
        drop(assumed);

        state.write(
            NAME,
            State {
                claims: Arc::new(claims),
                reserved: None,
            },
        );
        (Status::success(), None)
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<State>(NAME) else {
            return Status::error(format!("reading {NAME:?} from cycleState: not found"));
        };
        if node.node.is_none() {
            return Status::error("node not found");
        }
        match find_pod_volumes(&st.claims, &node.name, node.labels()) {
            Err(e) => Status::error(e),
            Ok((_, reasons)) if reasons.is_empty() => Status::success(),
            Ok((_, reasons)) => Status::new(
                Code::UnschedulableAndUnresolvable,
                reasons.into_iter().map(str::to_string).collect(),
            ),
        }
    }
}

/// The PV as binding it to the claim will write it, and whether that changes it
/// (upstream's `GetBindVolumeToClaim`).
fn bind_volume_to_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> (PersistentVolume, bool) {
    let by_controller = !is_volume_bound_to_claim(pv, claim);
    let mut bound = pv.clone();
    let mut dirty = false;
    let spec = bound.spec.get_or_insert_with(Default::default);
    let same_claim = spec.claim_ref.as_ref().is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && r.uid == claim.metadata.uid
    });
    if !same_claim {
        spec.claim_ref = Some(ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("PersistentVolumeClaim".to_string()),
            name: claim.metadata.name.clone(),
            namespace: claim.metadata.namespace.clone(),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            field_path: None,
        });
        dirty = true;
    }
    if by_controller && annotation(&bound.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
        bound
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANN_BOUND_BY_CONTROLLER.to_string(), "yes".to_string());
        dirty = true;
    }
    (bound, dirty)
}

impl ReservePlugin for VolumeBinding {
    fn reserve(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
        cluster: &Cluster,
    ) -> Status {
        let Some(st) = state.read_mut::<State>(NAME) else {
            // PreFilter skipped: the pod has no claims.
            return Status::success();
        };
        st.reserved = None;
        if st.claims.delayed.is_empty() {
            return Status::success();
        }
        let Some(labels) = cluster
            .node(node)
            .and_then(|n| n.node.as_ref())
            .map(|n| n.metadata.labels.clone().unwrap_or_default())
        else {
            return Status::error(format!("node {node:?} not found"));
        };
        let volumes = match find_pod_volumes(&st.claims, node, &labels) {
            Err(e) => return Status::error(e),
            Ok((_, reasons)) if !reasons.is_empty() => {
                return Status::error(format!(
                    "pod's volumes no longer fit node {node:?}: {}",
                    reasons.join(", ")
                ))
            }
            Ok((volumes, _)) => volumes,
        };

        let mut assumed = self.assumed();
        let uid = pod.uid().to_string();
        let mut bindings = Vec::new();
        for (pv, claim) in volumes.static_bindings {
            let (bound, dirty) = bind_volume_to_claim(&pv, &claim);
            let bound = Arc::new(bound);
            if dirty {
                assumed.pvs.insert(
                    bound.metadata.name.clone().unwrap_or_default(),
                    Assumption {
                        object: bound.clone(),
                        pod_uid: uid.clone(),
                    },
                );
            }
            bindings.push((bound, claim));
        }
        let mut provisions = Vec::new();
        for claim in volumes.provisions {
            let mut selected = (*claim).clone();
            selected
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ANN_SELECTED_NODE.to_string(), node.to_string());
            let selected = Arc::new(selected);
            assumed.pvcs.insert(
                crate::cache::key_of(&selected.metadata),
                Assumption {
                    object: selected.clone(),
                    pod_uid: uid.clone(),
                },
            );
            provisions.push(selected);
        }
        st.reserved = Some(Arc::new(Reserved {
            node: node.to_string(),
            node_labels: labels,
            bindings,
            provisions,
        }));
        Status::success()
    }

    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, _node: &str) {
        self.assumed().forget_pod(pod.uid());
        if let Some(st) = state.read_mut::<State>(NAME) {
            st.reserved = None;
        }
    }
}

#[async_trait]
impl PreBindPlugin for VolumeBinding {
    async fn pre_bind(&self, state: &CycleState, pod: &Pod, node: &str) -> Status {
        let Some(reserved) = state.read::<State>(NAME).and_then(|st| st.reserved.clone()) else {
            // No claims, or all of them already bound.
            return Status::success();
        };
        if reserved.node != node {
            return Status::error(format!("no pod volumes found for node {node:?}"));
        }
        match prebind::bind_pod_volumes(&self.client, self.bind_timeout, pod, &reserved).await {
            Ok(()) => Status::success(),
            Err(e) => Status::error(e),
        }
    }
}

pub fn register(args: &serde_json::Value, ctx: &PluginContext) -> anyhow::Result<Registered> {
    let plugin = Arc::new(VolumeBinding {
        client: ctx.client.clone(),
        bind_timeout: parse_args(args)?,
        assumed: Mutex::new(Assumed::default()),
    });
    Ok(Registered {
        pre_filter: Some(plugin.clone()),
        filter: Some(plugin.clone()),
        reserve: Some(plugin.clone()),
        pre_bind: Some(plugin.clone()),
        events: plugin.events(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
