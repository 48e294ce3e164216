//! SchedulingGates: holds a pod out of the active queue while it has scheduling gates.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::{PluginContext, Registered};
use crate::framework::{Code, Plugin, PreEnqueuePlugin, Status};

pub const NAME: &str = "SchedulingGates";

pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }

    // Upstream only registers the unscheduled pod's own update (gates removed); the queue
    // runs PreEnqueue again on every update of a gated pod, so no cluster event is needed.
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        let gates: Vec<&str> = pod
            .spec
            .iter()
            .flat_map(|s| s.scheduling_gates.iter().flatten())
            .map(|g| g.name.as_str())
            .collect();
        if gates.is_empty() {
            return Status::success();
        }
        // Go's `%v` of a []string: space-separated inside brackets.
        Status::new(
            Code::UnschedulableAndUnresolvable,
            vec![format!(
                "waiting for scheduling gates: [{}]",
                gates.join(" ")
            )],
        )
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    build(args)
}

fn build(_args: &serde_json::Value) -> anyhow::Result<Registered> {
    let plugin = Arc::new(SchedulingGates);
    Ok(Registered {
        pre_enqueue: Some(plugin),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn gated_pod_is_held_with_upstream_message() {
        let p = pod(json!({"containers": [], "schedulingGates": [{"name": "a"}, {"name": "b/c"}]}));
        let s = SchedulingGates.pre_enqueue(&p);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec!["waiting for scheduling gates: [a b/c]"]);
    }

    #[test]
    fn ungated_pod_is_admitted() {
        assert!(SchedulingGates
            .pre_enqueue(&pod(json!({"containers": []})))
            .is_success());
        assert!(SchedulingGates
            .pre_enqueue(&pod(json!({"containers": [], "schedulingGates": []})))
            .is_success());
    }

    #[test]
    fn registers_pre_enqueue_only() {
        let r = build(&serde_json::Value::Null).unwrap();
        assert!(r.pre_enqueue.is_some());
        assert!(r.filter.is_none() && r.score.is_none());
        assert!(r.events.is_empty());
    }
}
