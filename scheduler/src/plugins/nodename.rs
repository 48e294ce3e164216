//! NodeName: a pod that names its node (`spec.nodeName`) fits only that node.

use std::sync::Arc;

use super::{PluginContext, Registered};
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

pub const NAME: &str = "NodeName";

pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

fn events() -> Vec<ClusterEvent> {
    // Only a new node can be the one the pod names; updates never change the answer.
    vec![ClusterEvent::new(EventResource::Node, ActionType::ADD)]
}

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        events()
    }
}

/// Whether the pod may go to `node` as far as `spec.nodeName` is concerned.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.node_name().is_none_or(|n| n == node.name)
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    build(args)
}

fn build(_args: &serde_json::Value) -> anyhow::Result<Registered> {
    Ok(Registered {
        filter: Some(Arc::new(NodeName)),
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

    fn node(name: &str) -> NodeInfo {
        let mut info = NodeInfo::new(name);
        info.set_node(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        ));
        info
    }

    #[test]
    fn pod_naming_another_node_is_rejected() {
        let p = pod(json!({"containers": [], "nodeName": "n2"}));
        let s = NodeName.filter(&CycleState::default(), &p, &node("n1"));
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec![ERR_REASON]);
        assert!(NodeName
            .filter(&CycleState::default(), &p, &node("n2"))
            .is_success());
    }

    #[test]
    fn pod_without_node_name_fits_anywhere() {
        let st = CycleState::default();
        let p = pod(json!({"containers": []}));
        assert!(NodeName.filter(&st, &p, &node("n1")).is_success());
        let p = pod(json!({"containers": [], "nodeName": ""}));
        assert!(NodeName.filter(&st, &p, &node("n1")).is_success());
    }

    #[test]
    fn registers_filter_on_node_add() {
        let r = build(&serde_json::Value::Null).unwrap();
        assert!(r.filter.is_some());
        assert_eq!(
            r.events,
            vec![ClusterEvent::new(EventResource::Node, ActionType::ADD)]
        );
    }
}
