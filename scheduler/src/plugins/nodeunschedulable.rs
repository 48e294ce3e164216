//! NodeUnschedulable: keeps pods off cordoned nodes (`spec.unschedulable`) unless they
//! tolerate the taint the node lifecycle controller puts on such nodes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Taint;

use super::helpers::{tolerates, tolerations};
use super::{PluginContext, Registered};
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

pub const NAME: &str = "NodeUnschedulable";

pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";

const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

fn events() -> Vec<ClusterEvent> {
    // A cordon/uncordon reaches the queue as a taint update, as upstream classifies it.
    vec![ClusterEvent::new(
        EventResource::Node,
        ActionType::ADD | ActionType::UPDATE_NODE_TAINT,
    )]
}

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        events()
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = node.node.as_ref() else {
            return Status::error("node not found");
        };
        if !n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            return Status::success();
        }
        // Tolerating the taint implies tolerating the flag it stands for.
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_string(),
            effect: "NoSchedule".to_string(),
            ..Default::default()
        };
        if tolerations(&pod.pod).iter().any(|t| tolerates(t, &taint)) {
            return Status::success();
        }
        Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    build(args)
}

fn build(_args: &serde_json::Value) -> anyhow::Result<Registered> {
    Ok(Registered {
        filter: Some(Arc::new(NodeUnschedulable)),
        events: events(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> PodInfo {
        PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap(),
        ))
    }

    fn node(spec: serde_json::Value) -> NodeInfo {
        let mut info = NodeInfo::new("n1");
        info.set_node(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": spec})).unwrap(),
        ));
        info
    }

    fn filter(p: &PodInfo, n: &NodeInfo) -> Status {
        NodeUnschedulable.filter(&CycleState::default(), p, n)
    }

    #[test]
    fn cordoned_node_rejects_pod_without_toleration() {
        let s = filter(
            &pod(json!({"containers": []})),
            &node(json!({"unschedulable": true})),
        );
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec![ERR_REASON_UNSCHEDULABLE]);
    }

    #[test]
    fn schedulable_node_admits() {
        let p = pod(json!({"containers": []}));
        assert!(filter(&p, &node(json!({}))).is_success());
        assert!(filter(&p, &node(json!({"unschedulable": false}))).is_success());
    }

    #[test]
    fn toleration_of_unschedulable_taint_admits() {
        let n = node(json!({"unschedulable": true}));
        let p = pod(json!({"containers": [], "tolerations": [
            {"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]}));
        assert!(filter(&p, &n).is_success());
        let p = pod(json!({"containers": [], "tolerations": [{"operator": "Exists"}]}));
        assert!(filter(&p, &n).is_success());
        // A toleration for another effect does not count.
        let p = pod(json!({"containers": [], "tolerations": [
            {"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Exists", "effect": "NoExecute"}]}));
        assert!(!filter(&p, &n).is_success());
    }

    #[test]
    fn registers_filter_and_node_events() {
        let r = build(&serde_json::Value::Null).unwrap();
        assert!(r.filter.is_some());
        assert!(r.pre_filter.is_none());
        let taint_update = ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_TAINT);
        assert!(r.events.iter().any(|e| e.covers(&taint_update)));
        let label_update = ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_LABEL);
        assert!(!r.events.iter().any(|e| e.covers(&label_update)));
    }
}
