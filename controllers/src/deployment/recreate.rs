//! Recreate: every old pod gone before the new RS gets any.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use super::scale::scale_rs;
use super::util::*;
use super::State;

/// Scales old RSes to zero; true while any of them or any of their pods is still around.
pub async fn old_still_running(
    state: &State,
    d: &Deployment,
    old: &[ReplicaSet],
    pods: &Store<Pod>,
) -> kube::Result<bool> {
    let mut scaled = false;
    for rs in old.iter().filter(|r| rs_replicas(r) > 0) {
        scaled |= scale_rs(state, d, rs, 0).await?;
    }
    if scaled {
        return Ok(true);
    }
    if old.iter().any(|r| rs_actual(r) > 0) {
        return Ok(true);
    }
    let uids: Vec<&str> = old
        .iter()
        .filter_map(|r| r.metadata.uid.as_deref())
        .collect();
    let ns = d.namespace();
    let running = pods.state().iter().any(|p| {
        p.namespace() == ns
            && p.owner_references()
                .iter()
                .any(|o| uids.contains(&o.uid.as_str()))
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
    });
    Ok(running)
}
