//! The status a StatefulSet reports, counted from the pods one sync saw and made.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::identity;
use crate::shared::pods;

pub struct Revisions<'a> {
    pub current: &'a str,
    pub update: &'a str,
    pub collision_count: i32,
}

/// Counts `pods` (every pod of the set, in range or condemned) the way upstream does, and
/// finishes a rolling update once every pod runs the update revision and is ready.
pub fn compute(set: &StatefulSet, pods: &[&Pod], revs: &Revisions<'_>) -> StatefulSetStatus {
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut st = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: Some(revs.collision_count),
        current_revision: Some(revs.current.to_string()),
        update_revision: Some(revs.update.to_string()),
        ..Default::default()
    };
    let mut available = 0;
    let mut current = 0;
    let mut updated = 0;
    let mut ready = 0;
    for p in pods {
        st.replicas += 1;
        if pods::is_running(p) && pods::is_ready(p) {
            ready += 1;
            if pods::availability(p, min_ready).0 {
                available += 1;
            }
        }
        let rev = identity::revision_of(p);
        if !pods::is_terminating(p) {
            if rev == Some(revs.current) {
                current += 1;
            }
            if rev == Some(revs.update) {
                updated += 1;
            }
        }
    }
    st.ready_replicas = Some(ready);
    st.available_replicas = Some(available);
    st.current_replicas = Some(current);
    st.updated_replicas = Some(updated);
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling && updated == st.replicas && ready == st.replicas {
        st.current_replicas = Some(updated);
        st.current_revision = Some(revs.update.to_string());
    }
    st
}

/// Writes the status when it differs from what the set reports.
pub async fn write(
    api: &Api<StatefulSet>,
    set: &StatefulSet,
    status: StatefulSetStatus,
) -> kube::Result<()> {
    let mut old = set.status.clone().unwrap_or_default();
    // Conditions are not this controller's to manage; compare everything else.
    old.conditions = None;
    if old == status {
        return Ok(());
    }
    let name = set.metadata.name.clone().unwrap_or_default();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}
