//! RollingUpdate: grow the new RS within maxSurge, shrink old ones within maxUnavailable,
//! unhealthy old pods first.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::scale::scale_rs;
use super::util::*;
use super::State;

/// One step of the rollout; true when something was scaled (the next event continues it).
pub async fn step(
    state: &State,
    d: &Deployment,
    new_rs: &ReplicaSet,
    old: &[ReplicaSet],
) -> kube::Result<bool> {
    if grow_new(state, d, new_rs, old).await? {
        return Ok(true);
    }
    shrink_old(state, d, new_rs, old).await
}

async fn grow_new(
    state: &State,
    d: &Deployment,
    new_rs: &ReplicaSet,
    old: &[ReplicaSet],
) -> kube::Result<bool> {
    let want = replicas(d);
    let current_new = rs_replicas(new_rs);
    if current_new == want {
        return Ok(false);
    }
    if current_new > want {
        return scale_rs(state, d, new_rs, want).await;
    }
    let (surge, _) = surge_and_unavailable(d);
    let total: i32 = old.iter().map(rs_replicas).sum::<i32>() + current_new;
    let room = want + surge - total;
    if room <= 0 {
        return Ok(false);
    }
    let to = current_new + room.min(want - current_new);
    scale_rs(state, d, new_rs, to).await
}

async fn shrink_old(
    state: &State,
    d: &Deployment,
    new_rs: &ReplicaSet,
    old: &[ReplicaSet],
) -> kube::Result<bool> {
    let old_total: i32 = old.iter().map(rs_replicas).sum();
    if old_total == 0 {
        return Ok(false);
    }
    let all_total = old_total + rs_replicas(new_rs);
    let (_, max_unavailable) = surge_and_unavailable(d);
    let min_available = replicas(d) - max_unavailable;
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    let max_down = all_total - min_available - new_unavailable;
    if max_down <= 0 {
        return Ok(false);
    }
    let mut old: Vec<ReplicaSet> = old.to_vec();
    old.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            rs_revision(r),
        )
    });

    // Old pods that are not available cost nothing to remove: take them first.
    let mut cleaned = 0;
    for rs in old.iter_mut() {
        if cleaned >= max_down {
            break;
        }
        let size = rs_replicas(rs);
        let unhealthy = size - rs_available(rs);
        if size == 0 || unhealthy <= 0 {
            continue;
        }
        let by = (max_down - cleaned).min(unhealthy);
        scale_rs(state, d, rs, size - by).await?;
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(size - by);
        }
        cleaned += by;
    }

    // Then available ones, as long as enough stay available overall.
    let available: i32 = old.iter().map(rs_available).sum::<i32>() + rs_available(new_rs);
    let mut scaled = 0;
    if available > min_available {
        let budget = available - min_available;
        for rs in &old {
            if scaled >= budget {
                break;
            }
            let size = rs_replicas(rs);
            if size == 0 {
                continue;
            }
            let by = size.min(budget - scaled);
            scale_rs(state, d, rs, size - by).await?;
            scaled += by;
        }
    }
    Ok(cleaned + scaled > 0)
}
