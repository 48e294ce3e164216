//! NodePorts: a pod's host ports must be free on the node.

use std::sync::Arc;

use super::{PluginContext, Registered};
use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::node_info::{host_ports, HostPort};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, NodeNames, Plugin, PodInfo, PreFilterPlugin, Status,
};

pub const NAME: &str = "NodePorts";

pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

const PRE_FILTER_STATE_KEY: &str = "PreFilterNodePorts";

const BIND_ALL: &str = "0.0.0.0";

pub struct NodePorts;

/// The host ports the pod asks for.
#[derive(Clone)]
struct PreFilterState(Vec<HostPort>);

fn events() -> Vec<ClusterEvent> {
    // Ports are immutable on a pod, so only a pod leaving or a new node frees any.
    vec![
        ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE),
        ClusterEvent::new(EventResource::Node, ActionType::ADD),
    ]
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        events()
    }
}

/// Upstream's `HostPortInfo.CheckConflict`: the same protocol and port clash when either
/// side binds every address or both bind the same one. `host_ports` has already defaulted
/// empty IPs to 0.0.0.0 and empty protocols to TCP on both sides.
fn conflicts(want: &HostPort, used: &HostPort) -> bool {
    want.port > 0
        && want.port == used.port
        && want.protocol == used.protocol
        && (want.ip == BIND_ALL || used.ip == BIND_ALL || want.ip == used.ip)
}

/// Whether every wanted port is free on the node.
pub fn fits_ports(want: &[HostPort], node: &NodeInfo) -> bool {
    !want
        .iter()
        .any(|w| node.used_ports.iter().any(|u| conflicts(w, u)))
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _cluster: &Cluster,
    ) -> (Status, NodeNames) {
        let want = host_ports(pod);
        if want.is_empty() {
            return (Status::skip(), None);
        }
        state.write(PRE_FILTER_STATE_KEY, PreFilterState(want));
        (Status::success(), None)
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(want) = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return Status::error(format!(
                "reading {PRE_FILTER_STATE_KEY:?} from cycleState: not found"
            ));
        };
        if fits_ports(&want.0, node) {
            Status::success()
        } else {
            Status::unschedulable(ERR_REASON)
        }
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    build(args)
}

fn build(_args: &serde_json::Value) -> anyhow::Result<Registered> {
    let plugin = Arc::new(NodePorts);
    Ok(Registered {
        pre_filter: Some(plugin.clone()),
        filter: Some(plugin),
        events: events(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use serde_json::json;

    fn pod(uid: &str, ports: serde_json::Value) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid},
                "spec": {"containers": [{"name": "c", "ports": ports}]}}))
            .unwrap(),
        )))
    }

    fn node_with(pods: &[Arc<PodInfo>]) -> NodeInfo {
        let mut info = NodeInfo::new("n1");
        info.set_node(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        ));
        for p in pods {
            info.add_pod(p.clone());
        }
        info
    }

    fn run(p: &PodInfo, node: &NodeInfo) -> Status {
        let mut st = CycleState::default();
        let (s, names) = NodePorts.pre_filter(&mut st, p, &Cluster::default());
        assert!(names.is_none());
        if s.is_skip() {
            return s;
        }
        assert!(s.is_success());
        NodePorts.filter(&st, p, node)
    }

    #[test]
    fn pod_without_host_ports_is_skipped() {
        let p = pod("a", json!([{"containerPort": 80}]));
        assert!(run(&p, &node_with(&[])).is_skip());
    }

    #[test]
    fn same_port_and_protocol_conflicts() {
        let existing = pod("old", json!([{"containerPort": 80, "hostPort": 8080}]));
        let n = node_with(&[existing]);
        let p = pod("new", json!([{"containerPort": 80, "hostPort": 8080}]));
        let s = run(&p, &n);
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(s.reasons, vec![ERR_REASON]);
        // Another protocol or port is free.
        let p = pod(
            "new",
            json!([{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]),
        );
        assert!(run(&p, &n).is_success());
        let p = pod("new", json!([{"containerPort": 80, "hostPort": 8081}]));
        assert!(run(&p, &n).is_success());
    }

    #[test]
    fn host_ip_rules() {
        let on_ip = pod(
            "old",
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
        );
        let n = node_with(&[on_ip]);
        // A different specific IP does not clash.
        let p = pod(
            "new",
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]),
        );
        assert!(run(&p, &n).is_success());
        // The same IP does; so does binding every address.
        let p = pod(
            "new",
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
        );
        assert!(!run(&p, &n).is_success());
        let p = pod(
            "new",
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "0.0.0.0"}]),
        );
        assert!(!run(&p, &n).is_success());
        // An existing wildcard binding clashes with any specific IP.
        let wildcard = pod("old", json!([{"containerPort": 80, "hostPort": 8080}]));
        let n = node_with(&[wildcard]);
        let p = pod(
            "new",
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]),
        );
        assert!(!run(&p, &n).is_success());
    }

    #[test]
    fn filter_without_pre_filter_state_is_an_error() {
        let p = pod("a", json!([{"containerPort": 80, "hostPort": 1}]));
        let s = NodePorts.filter(&CycleState::default(), &p, &node_with(&[]));
        assert_eq!(s.code, Code::Error);
    }

    #[test]
    fn registers_pre_filter_filter_and_events() {
        let r = build(&serde_json::Value::Null).unwrap();
        assert!(r.pre_filter.is_some() && r.filter.is_some());
        let deleted = ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE);
        assert!(r.events.iter().any(|e| e.covers(&deleted)));
        let added = ClusterEvent::new(EventResource::AssignedPod, ActionType::ADD);
        assert!(!r.events.iter().any(|e| e.covers(&added)));
    }
}
