//! TaintToleration: a pod must tolerate a node's NoSchedule/NoExecute taints to land there,
//! and prefers nodes with fewer PreferNoSchedule taints it does not tolerate.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::helpers::{default_normalize_score, first_untolerated, taints, tolerates, tolerations};
use super::{PluginContext, Registered};
use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreScorePlugin, ScorePlugin, Status,
    MAX_NODE_SCORE,
};

pub const NAME: &str = "TaintToleration";

const PRE_SCORE_STATE_KEY: &str = "PreScoreTaintToleration";

pub struct TaintToleration;

/// The pod's tolerations that can apply to PreferNoSchedule taints.
#[derive(Clone)]
struct PreScoreState {
    tolerations_prefer_no_schedule: Vec<Toleration>,
}

fn events() -> Vec<ClusterEvent> {
    vec![ClusterEvent::new(
        EventResource::Node,
        ActionType::ADD | ActionType::UPDATE_NODE_TAINT,
    )]
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        events()
    }
}

fn does_not_schedule(t: &Taint) -> bool {
    t.effect == "NoSchedule" || t.effect == "NoExecute"
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = node.node.as_ref() else {
            return Status::error("invalid nodeInfo");
        };
        match first_untolerated(taints(n), tolerations(&pod.pod), does_not_schedule) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )),
        }
    }
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        _cluster: &Cluster,
    ) -> Status {
        if nodes.is_empty() {
            return Status::success();
        }
        // An empty effect tolerates every effect, PreferNoSchedule included.
        let tolerations_prefer_no_schedule = tolerations(&pod.pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                tolerations_prefer_no_schedule,
            },
        );
        Status::success()
    }
}

fn count_intolerable_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> i64 {
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

impl ScorePlugin for TaintToleration {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(n) = node.node.as_ref() else {
            return Err(Status::error(format!(
                "getting node {:?} from Snapshot: not found",
                node.name
            )));
        };
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return Err(Status::error(format!(
                "reading {PRE_SCORE_STATE_KEY:?} from cycleState: not found"
            )));
        };
        Ok(count_intolerable_prefer_no_schedule(
            taints(n),
            &s.tolerations_prefer_no_schedule,
        ))
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    build(args)
}

fn build(_args: &serde_json::Value) -> anyhow::Result<Registered> {
    let plugin = Arc::new(TaintToleration);
    Ok(Registered {
        filter: Some(plugin.clone()),
        pre_score: Some(plugin.clone()),
        score: Some(plugin),
        events: events(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use serde_json::json;

    fn pod(tolerations: serde_json::Value) -> PodInfo {
        PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "spec": {"containers": [], "tolerations": tolerations}}))
            .unwrap(),
        ))
    }

    fn node(name: &str, taints: serde_json::Value) -> Arc<NodeInfo> {
        let mut info = NodeInfo::new(name);
        info.set_node(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"taints": taints}}))
                .unwrap(),
        ));
        Arc::new(info)
    }

    #[test]
    fn untolerated_no_schedule_taint_rejects_with_key_and_value() {
        let n = node(
            "n1",
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        );
        let s = TaintToleration.filter(&CycleState::default(), &pod(json!([])), &n);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            s.reasons,
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
    }

    #[test]
    fn no_execute_counts_and_prefer_no_schedule_does_not() {
        let st = CycleState::default();
        let n = node("n1", json!([{"key": "k", "effect": "NoExecute"}]));
        let s = TaintToleration.filter(&st, &pod(json!([])), &n);
        assert_eq!(s.reasons, vec!["node(s) had untolerated taint {k: }"]);
        let n = node("n1", json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        assert!(TaintToleration
            .filter(&st, &pod(json!([])), &n)
            .is_success());
    }

    #[test]
    fn tolerated_taints_pass() {
        let n = node(
            "n1",
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                   {"key": "other", "effect": "NoExecute"}]),
        );
        let p = pod(json!([
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
            {"key": "other", "operator": "Exists"}
        ]));
        assert!(TaintToleration
            .filter(&CycleState::default(), &p, &n)
            .is_success());
    }

    fn scores(p: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<i64> {
        let mut st = CycleState::default();
        assert!(TaintToleration
            .pre_score(&mut st, p, nodes, &Cluster::default())
            .is_success());
        let mut out: Vec<i64> = nodes
            .iter()
            .map(|n| TaintToleration.score(&st, p, n).unwrap())
            .collect();
        assert!(TaintToleration.normalize(&st, p, &mut out).is_success());
        out
    }

    #[test]
    fn score_prefers_nodes_with_fewer_intolerable_prefer_no_schedule_taints() {
        let nodes = vec![
            node("clean", json!([])),
            node(
                "one",
                json!([{"key": "a", "effect": "PreferNoSchedule"},
                       {"key": "x", "effect": "NoSchedule"}]),
            ),
            node(
                "two",
                json!([{"key": "a", "effect": "PreferNoSchedule"},
                       {"key": "b", "effect": "PreferNoSchedule"}]),
            ),
        ];
        assert_eq!(scores(&pod(json!([])), &nodes), vec![100, 50, 0]);
        // A toleration with no effect covers PreferNoSchedule; a NoSchedule one does not.
        let p = pod(json!([{"key": "a", "operator": "Exists"},
                           {"key": "b", "operator": "Exists", "effect": "NoSchedule"}]));
        assert_eq!(scores(&p, &nodes), vec![100, 100, 0]);
        let p = pod(json!([{"operator": "Exists", "effect": "PreferNoSchedule"}]));
        assert_eq!(scores(&p, &nodes), vec![100, 100, 100]);
    }

    #[test]
    fn score_without_pre_score_state_is_an_error() {
        let n = node("n1", json!([]));
        let err = TaintToleration
            .score(&CycleState::default(), &pod(json!([])), &n)
            .unwrap_err();
        assert_eq!(err.code, Code::Error);
    }

    #[test]
    fn registers_filter_score_and_taint_events() {
        let r = build(&serde_json::Value::Null).unwrap();
        assert!(r.filter.is_some() && r.pre_score.is_some() && r.score.is_some());
        assert!(r.pre_filter.is_none());
        let add = ClusterEvent::new(EventResource::Node, ActionType::ADD);
        let taint = ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_TAINT);
        assert!(r.events.iter().any(|e| e.covers(&add)));
        assert!(r.events.iter().any(|e| e.covers(&taint)));
    }
}
