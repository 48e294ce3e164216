//! The decisions of upstream's volume binder, without its API side: which of a pod's
//! claims are bound, and for one node, whether the bound ones' PVs allow it and how the
//! unbound ones would get a volume there (an existing PV, or a new one provisioned).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ferrokube_common::labels::Selector;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::storage::*;

pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_NOT_ENOUGH_SPACE: &str = "node(s) did not have enough free storage";
pub const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// A pod's claims as PreFilter found them, with everything Filter needs to place them.
#[derive(Debug, Default)]
pub struct PodClaims {
    /// Fully bound claims with their PV (`None` when the cache has no such PV).
    pub bound: Vec<(Arc<PersistentVolumeClaim>, Option<Arc<PersistentVolume>>)>,
    /// Unbound claims whose class waits for the first consumer, smallest request first.
    pub delayed: Vec<Arc<PersistentVolumeClaim>>,
    /// The PVs of each delayed claim's class, by name.
    pub pvs_by_class: HashMap<String, Vec<Arc<PersistentVolume>>>,
    /// The delayed claims' classes (`None`: not in the cache).
    pub classes: HashMap<String, Option<Arc<StorageClass>>>,
}

/// How the pod's unbound claims get volumes on one node.
#[derive(Clone, Debug, Default)]
pub struct PodVolumes {
    /// Existing PVs to bind, each with its claim.
    pub static_bindings: Vec<(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>)>,
    /// Claims to provision a volume for.
    pub provisions: Vec<Arc<PersistentVolumeClaim>>,
}

/// The volumes the pod would use on the node and, when it cannot, why (in upstream's
/// order). An `Err` is an internal error rather than a verdict on the node.
pub fn find_pod_volumes(
    claims: &PodClaims,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(PodVolumes, Vec<&'static str>), String> {
    let mut bound_ok = true;
    let mut pvs_found = true;
    let mut unbound_ok = true;
    let mut enough_space = true;
    let mut volumes = PodVolumes::default();

    for (_, pv) in &claims.bound {
        match pv {
            None => {
                pvs_found = false;
                break;
            }
            Some(pv) if !node_affinity_matches(pv, labels) => {
                bound_ok = false;
                break;
            }
            Some(_) => {}
        }
    }

    'unbound: {
        if claims.delayed.is_empty() {
            break 'unbound;
        }
        let mut to_match = Vec::new();
        let mut to_provision = Vec::new();
        for claim in &claims.delayed {
            match annotation(&claim.metadata, ANN_SELECTED_NODE) {
                // Another pod already had this claim provisioned for its node.
                Some(selected) if selected != node_name => {
                    unbound_ok = false;
                    break 'unbound;
                }
                Some(_) => to_provision.push(claim.clone()),
                None => to_match.push(claim.clone()),
            }
        }
        if !to_match.is_empty() {
            let (found_all, bindings, unmatched) =
                find_matching_volumes(claims, &to_match, labels)?;
            unbound_ok = found_all;
            volumes.static_bindings = bindings;
            to_provision.extend(unmatched);
        }
        if !to_provision.is_empty() {
            let (ok, space, provisions) = check_provisions(claims, &to_provision, labels)?;
            unbound_ok = ok;
            enough_space = space;
            volumes.provisions = provisions;
        }
    }

    let mut reasons = Vec::new();
    if !bound_ok {
        reasons.push(REASON_NODE_CONFLICT);
    }
    if !unbound_ok {
        reasons.push(REASON_BIND_CONFLICT);
    }
    if !enough_space {
        reasons.push(REASON_NOT_ENOUGH_SPACE);
    }
    if !pvs_found {
        reasons.push(REASON_PV_NOT_EXIST);
    }
    Ok((volumes, reasons))
}

type Matches = (
    bool,
    Vec<(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>)>,
    Vec<Arc<PersistentVolumeClaim>>,
);

/// Picks a PV for each claim (smallest claims first, so they take the smallest PVs), never
/// the same PV twice; claims without one are returned for provisioning.
fn find_matching_volumes(
    claims: &PodClaims,
    to_match: &[Arc<PersistentVolumeClaim>],
    labels: &BTreeMap<String, String>,
) -> Result<Matches, String> {
    let mut chosen = HashSet::new();
    let mut bindings = Vec::new();
    let mut unmatched = Vec::new();
    for claim in to_match {
        let pvs = claims
            .pvs_by_class
            .get(claim_class(claim))
            .map(Vec::as_slice)
            .unwrap_or_default();
        match find_matching_volume(claim, pvs, labels, &chosen)? {
            Some(pv) => {
                chosen.insert(pv.metadata.name.clone().unwrap_or_default());
                bindings.push((pv, claim.clone()));
            }
            None => unmatched.push(claim.clone()),
        }
    }
    Ok((unmatched.is_empty(), bindings, unmatched))
}

/// Whether the PV is pre-bound or bound to this claim (name and namespace, and the UID
/// when the reference carries one).
pub fn is_volume_bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name != claim.metadata.name || r.namespace != claim.metadata.namespace {
        return false;
    }
    match r.uid.as_deref() {
        None | Some("") => true,
        Some(uid) => claim.metadata.uid.as_deref() == Some(uid),
    }
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

/// Upstream's `FindMatchingVolume` on the scheduler's path: a PV pre-bound to the claim wins
/// (if its node affinity allows the node), otherwise the smallest Available PV that fits.
pub fn find_matching_volume(
    claim: &PersistentVolumeClaim,
    pvs: &[Arc<PersistentVolume>],
    labels: &BTreeMap<String, String>,
    excluded: &HashSet<String>,
) -> Result<Option<Arc<PersistentVolume>>, String> {
    let requested = requested_storage(claim);
    let class = claim_class(claim);
    let spec = claim.spec.clone().unwrap_or_default();
    let selector = match &spec.selector {
        None => None,
        Some(sel) => {
            let value = serde_json::to_value(sel).map_err(|e| e.to_string())?;
            Some(Selector::from_label_selector(&value).map_err(|e| {
                format!(
                    "error creating internal label selector for claim: {}/{}: {}",
                    claim.metadata.namespace.as_deref().unwrap_or_default(),
                    claim.metadata.name.as_deref().unwrap_or_default(),
                    e.message()
                )
            })?)
        }
    };
    let wanted_modes = spec.access_modes.unwrap_or_default();

    let mut smallest: Option<(Arc<PersistentVolume>, ferrokube_common::quantity::Quantity)> = None;
    for pv in pvs {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        if excluded.contains(name) {
            continue;
        }
        let pv_spec = pv.spec.clone().unwrap_or_default();
        let bound_to_claim = is_volume_bound_to_claim(pv, claim);
        if pv_spec.claim_ref.is_some() && !bound_to_claim {
            continue;
        }
        let size = capacity(pv);
        if size < requested {
            continue;
        }
        if volume_mode(spec.volume_mode.as_ref()) != volume_mode(pv_spec.volume_mode.as_ref()) {
            continue;
        }
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = node_affinity_matches(pv, labels);
        if bound_to_claim {
            // The claim asked for this PV; if the node cannot reach it, no other PV will do.
            return Ok(affinity_ok.then(|| pv.clone()));
        }
        let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        if !available {
            continue;
        }
        if let Some(sel) = &selector {
            let empty = BTreeMap::new();
            if !sel.matches(pv.metadata.labels.as_ref().unwrap_or(&empty)) {
                continue;
            }
        }
        if volume_class(pv) != class || !affinity_ok {
            continue;
        }
        let modes = pv_spec.access_modes.unwrap_or_default();
        if !wanted_modes.iter().all(|m| modes.contains(m)) {
            continue;
        }
        if smallest.as_ref().is_none_or(|(_, s)| *s > size) {
            smallest = Some((pv.clone(), size));
        }
    }
    Ok(smallest.map(|(pv, _)| pv))
}

type Provisions = (bool, bool, Vec<Arc<PersistentVolumeClaim>>);

/// Whether every claim left can get a new volume on this node: its class must have a real
/// provisioner whose allowed topologies include the node.
fn check_provisions(
    claims: &PodClaims,
    to_provision: &[Arc<PersistentVolumeClaim>],
    labels: &BTreeMap<String, String>,
) -> Result<Provisions, String> {
    let mut provisions = Vec::new();
    for claim in to_provision {
        let class_name = claim_class(claim);
        if class_name.is_empty() {
            return Err(format!(
                "no class for claim \"{}/{}\"",
                claim.metadata.namespace.as_deref().unwrap_or_default(),
                claim.metadata.name.as_deref().unwrap_or_default()
            ));
        }
        let Some(class) = claims.classes.get(class_name).and_then(Option::as_ref) else {
            return Err(format!("failed to find storage class {class_name:?}"));
        };
        if class.provisioner.is_empty() || class.provisioner == NOT_SUPPORTED_PROVISIONER {
            return Ok((false, true, Vec::new()));
        }
        if !topology_matches(
            class.allowed_topologies.as_deref().unwrap_or_default(),
            labels,
        ) {
            return Ok((false, true, Vec::new()));
        }
        // Upstream also checks CSIStorageCapacity here for drivers that opt in; the cache
        // holds neither CSIDrivers nor capacities, so provisioning is assumed to fit.
        provisions.push(claim.clone());
    }
    Ok((true, true, provisions))
}
