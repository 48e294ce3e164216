//! Changing replica set sizes: one RS with its annotations and ScalingReplicaSet event,
//! proportional scaling of a rollout in flight, and revision-history cleanup.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::json;

use super::util::*;
use super::State;

/// Sets an RS's size and the desired/max annotations; records upstream's event when the
/// size moved. Returns whether anything was written.
pub async fn scale_rs(
    state: &State,
    d: &Deployment,
    rs: &ReplicaSet,
    to: i32,
) -> kube::Result<bool> {
    let from = rs_replicas(rs);
    let (surge, _) = surge_and_unavailable(d);
    let desired = replicas(d).to_string();
    let max = (replicas(d) + surge).to_string();
    let ann = rs.metadata.annotations.clone().unwrap_or_default();
    let annotations_current =
        ann.get(DESIRED_REPLICAS) == Some(&desired) && ann.get(MAX_REPLICAS) == Some(&max);
    if from == to && annotations_current {
        return Ok(false);
    }
    let api: Api<ReplicaSet> = Api::namespaced(
        state.ctx.client.clone(),
        &rs.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "metadata": {
            "resourceVersion": rs.metadata.resource_version,
            "annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max},
        },
        "spec": {"replicas": to},
    });
    api.patch(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    if from != to {
        let dir = if to > from { "up" } else { "down" };
        state
            .event(
                d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {dir} replica set {} from {from} to {to}",
                    rs.name_any()
                ),
            )
            .await;
    }
    Ok(from != to)
}

/// A replica scale with no template change: the only active RS (or the newest) takes it all;
/// with several active during a rolling update, each gets its share of the change in
/// proportion to its size, so a rollout in flight keeps its shape.
pub async fn scale(
    state: &State,
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
) -> kube::Result<()> {
    let want = replicas(d);
    let mut all: Vec<&ReplicaSet> = new_rs.into_iter().chain(old.iter()).collect();
    let active: Vec<&ReplicaSet> = all.iter().copied().filter(|r| rs_replicas(r) > 0).collect();
    let sole = match active.len() {
        0 => new_rs.or_else(|| {
            old.iter()
                .max_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0))
        }),
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(rs) = sole {
        scale_rs(state, d, rs, want).await?;
        return Ok(());
    }
    if let Some(n) = new_rs {
        let saturated = rs_replicas(n) == want
            && n.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                == Some(&want.to_string())
            && rs_available(n) == want;
        if saturated {
            for rs in old.iter().filter(|r| rs_replicas(r) > 0) {
                scale_rs(state, d, rs, 0).await?;
            }
            return Ok(());
        }
    }
    if is_recreate(d) {
        return Ok(());
    }
    let (surge, _) = surge_and_unavailable(d);
    all.retain(|r| rs_replicas(r) > 0);
    let current: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let allowed = if want > 0 { want + surge } else { 0 };
    let to_add = allowed - current;
    if to_add > 0 {
        // Scaling up favours the bigger and newer sets.
        all.sort_by_key(|r| {
            (
                std::cmp::Reverse(rs_replicas(r)),
                std::cmp::Reverse(r.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
        });
    } else {
        all.sort_by_key(|r| {
            (
                std::cmp::Reverse(rs_replicas(r)),
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
    }
    let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let mut sizes: HashMap<String, i32> = HashMap::new();
    let mut added = 0;
    if to_add != 0 {
        for rs in &all {
            let size = rs_replicas(rs);
            let annotated = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MAX_REPLICAS))
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(status_replicas);
            let fraction = if want == 0 {
                -size
            } else if annotated == 0 {
                0
            } else {
                (f64::from(size) * f64::from(want + surge) / f64::from(annotated)).round() as i32
                    - size
            };
            let left = to_add - added;
            let share = if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            };
            sizes.insert(rs.name_any(), size + share);
            added += share;
        }
    }
    for (i, rs) in all.iter().enumerate() {
        let mut size = sizes
            .get(&rs.name_any())
            .copied()
            .unwrap_or(rs_replicas(rs));
        if i == 0 && to_add != 0 {
            size = (size + to_add - added).max(0);
        }
        scale_rs(state, d, rs, size).await?;
    }
    Ok(())
}

/// Deletes the oldest fully scaled-down RSes beyond revisionHistoryLimit (default 10).
pub async fn cleanup(state: &State, d: &Deployment, old: &[ReplicaSet]) -> kube::Result<()> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut dead: Vec<&ReplicaSet> = old
        .iter()
        .filter(|r| {
            rs_replicas(r) == 0
                && rs_actual(r) == 0
                && r.metadata.deletion_timestamp.is_none()
                && r.metadata.generation.unwrap_or(0)
                    <= r.status
                        .as_ref()
                        .and_then(|s| s.observed_generation)
                        .unwrap_or(0)
        })
        .collect();
    if dead.len() <= limit {
        return Ok(());
    }
    dead.sort_by_key(|r| {
        (
            rs_revision(r),
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    });
    let extra = dead.len() - limit;
    for rs in dead.into_iter().take(extra) {
        let api: Api<ReplicaSet> = Api::namespaced(
            state.ctx.client.clone(),
            &rs.namespace().unwrap_or_default(),
        );
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: rs.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&rs.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
