//! Facts about pods that several workload controllers read: activeness, readiness,
//! availability after minReadySeconds, and upstream's order of which pods matter least.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Upstream's annotation that lets users pick which pods go first on scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Neither finished nor being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let p = phase(pod);
    p != "Succeeded" && p != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod last became Ready, if it is Ready now.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conds.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` seconds at `now`.
pub fn is_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + SignedDuration::from_secs(i64::from(min_ready)) <= now,
    }
}

/// How long until a Ready pod becomes available, when that is still ahead.
pub fn until_available(pod: &Pod, min_ready: i32, now: Timestamp) -> Option<std::time::Duration> {
    let since = ready_since(pod)??;
    let at = since + SignedDuration::from_secs(i64::from(min_ready.max(0)));
    let left = at.duration_since(now);
    (left > SignedDuration::ZERO).then(|| left.unsigned_abs())
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Running" => 2,
        _ => 1,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Sorts pods so that the ones to delete first come first, in upstream's order: unscheduled
/// before scheduled, pending before unknown before running, not ready before ready, lower
/// deletion cost first, more crowded nodes first, ready for less time first, more restarts
/// first, younger first.
pub fn sort_least_valuable_first(pods: &mut [Pod]) {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in pods.iter() {
        if !node(p).is_empty() {
            *per_node.entry(node(p).to_string()).or_default() += 1;
        }
    }
    let crowd = |p: &Pod| per_node.get(node(p)).copied().unwrap_or(0);
    pods.sort_by(|a, b| {
        let by = [
            (!node(a).is_empty()).cmp(&!node(b).is_empty()),
            phase_rank(a).cmp(&phase_rank(b)),
            is_ready(a).cmp(&is_ready(b)),
            deletion_cost(a).cmp(&deletion_cost(b)),
            crowd(b).cmp(&crowd(a)),
        ];
        if let Some(o) = by.into_iter().find(|o| *o != Ordering::Equal) {
            return o;
        }
        if let (Some(Some(ra)), Some(Some(rb))) = (ready_since(a), ready_since(b)) {
            if ra != rb {
                return rb.cmp(&ra);
            }
        }
        if restarts(a) != restarts(b) {
            return restarts(b).cmp(&restarts(a));
        }
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(b).cmp(&created(a))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, ready: bool, node: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn least_valuable_first() {
        let mut pods = vec![
            pod("running-ready", "Running", true, "n1"),
            pod("pending", "Pending", false, "n1"),
            pod("unscheduled", "Pending", false, ""),
            pod("running-unready", "Running", false, "n1"),
        ];
        sort_least_valuable_first(&mut pods);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            ["unscheduled", "pending", "running-unready", "running-ready"]
        );
    }
}
