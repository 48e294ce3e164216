//! What a node's conditions and taints should be, from what it last reported and how long ago
//! that was, as upstream's node lifecycle controller decides (apart from any API access).

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Conditions the kubelet owns; when it goes silent they all become Unknown.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The conditions of a node whose kubelet stopped reporting: every kubelet-owned condition
/// Unknown (added as Unknown when it was never reported). Returns None when nothing changes.
pub fn silenced_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

fn taint(key: &str, effect: &str, now: Timestamp) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: (effect == "NoExecute").then_some(Time(now)),
    }
}

/// The taints the controller manages that the node should carry, by its conditions: the
/// NoExecute ones that drive taint-based eviction and the NoSchedule ones that keep new pods
/// away (upstream's TaintNodesByCondition).
pub fn wanted_taints(node: &Node, now: Timestamp) -> Vec<Taint> {
    let status_of = |t: &str| condition(node, t).map(|c| c.status.as_str());
    let mut out = Vec::new();
    match status_of("Ready") {
        Some("False") => {
            out.push(taint(NOT_READY, "NoExecute", now));
            out.push(taint(NOT_READY, "NoSchedule", now));
        }
        Some("Unknown") => {
            out.push(taint(UNREACHABLE, "NoExecute", now));
            out.push(taint(UNREACHABLE, "NoSchedule", now));
        }
        // A node that never reported is left alone until the grace period makes it Unknown.
        _ => {}
    }
    for (cond, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        (
            "NetworkUnavailable",
            "node.kubernetes.io/network-unavailable",
        ),
    ] {
        if status_of(cond) == Some("True") {
            out.push(taint(key, "NoSchedule", now));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push(taint("node.kubernetes.io/unschedulable", "NoSchedule", now));
    }
    out
}

fn managed(t: &Taint) -> bool {
    matches!(
        t.key.as_str(),
        NOT_READY
            | UNREACHABLE
            | "node.kubernetes.io/memory-pressure"
            | "node.kubernetes.io/disk-pressure"
            | "node.kubernetes.io/pid-pressure"
            | "node.kubernetes.io/network-unavailable"
            | "node.kubernetes.io/unschedulable"
    ) && matches!(t.effect.as_str(), "NoExecute" | "NoSchedule")
}

/// The node's taints with the managed ones replaced by `wanted`, keeping the time a taint
/// that stays was first added. None when nothing changes.
pub fn reconcile_taints(node: &Node, wanted: Vec<Taint>) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut out: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
    for w in wanted {
        match current
            .iter()
            .find(|t| t.key == w.key && t.effect == w.effect)
        {
            Some(existing) => out.push(existing.clone()),
            None => out.push(w),
        }
    }
    let same = out.len() == current.len()
        && out.iter().all(|t| {
            current
                .iter()
                .any(|c| c.key == t.key && c.effect == t.effect)
        });
    (!same).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }))
        .unwrap()
    }

    #[test]
    fn taints_follow_readiness() {
        let now = Timestamp::now();
        let keys = |n: &Node| -> Vec<(String, String)> {
            wanted_taints(n, now)
                .into_iter()
                .map(|t| (t.key, t.effect))
                .collect()
        };
        assert!(keys(&node("True")).is_empty());
        assert!(keys(&node("False")).contains(&(NOT_READY.into(), "NoExecute".into())));
        assert!(keys(&node("Unknown")).contains(&(UNREACHABLE.into(), "NoExecute".into())));
    }

    #[test]
    fn silence_turns_conditions_unknown_once() {
        let n = node("True");
        let conds = silenced_conditions(&n, Timestamp::now()).unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        let mut again = n.clone();
        again.status.as_mut().unwrap().conditions = Some(conds);
        assert!(silenced_conditions(&again, Timestamp::now()).is_none());
    }
}
