//! NodeResourcesBalancedAllocation: favours nodes whose resources would be used in even
//! proportions with the pod on them.

use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use crate::cache::Cluster;
use crate::framework::*;
use crate::plugins::{PluginContext, Registered};

use super::args::balanced_allocation_resources;
use super::scoring::{Scorer, Strategy};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

/// The pod's request for each configured resource, in the args' order.
#[derive(Clone, Debug)]
struct PreScoreState(Vec<i64>);

pub struct BalancedAllocation {
    scorer: Scorer,
}

impl BalancedAllocation {
    fn from_args(args: &Value) -> Result<BalancedAllocation> {
        Ok(BalancedAllocation {
            scorer: Scorer {
                strategy: Strategy::BalancedAllocation,
                resources: balanced_allocation_resources(args)?,
                // Real requests, not scoring defaults: a node full of pods without requests
                // is not unbalanced.
                use_requested: true,
            },
        })
    }
}

/// Nothing requested among the scored resources (upstream's `isBestEffortPod`).
fn requests_nothing(requests: &[i64]) -> bool {
    requests.iter().all(|&r| r == 0)
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _cluster: &Cluster,
    ) -> Status {
        let requests = self.scorer.pod_requests(pod);
        // A pod requesting nothing leaves every node as balanced as it was, so scoring would
        // keep sending such pods to the same node (upstream issue 129138).
        if requests_nothing(&requests) {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState(requests));
        Status::success()
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        if let Some(PreScoreState(requests)) = state.read::<PreScoreState>(PRE_SCORE_KEY) {
            return self.scorer.score(node, requests);
        }
        let requests = self.scorer.pod_requests(pod);
        if requests_nothing(&requests) {
            return Ok(0);
        }
        self.scorer.score(node, &requests)
    }
}

pub fn register(args: &Value, _ctx: &PluginContext) -> Result<Registered> {
    let plugin = Arc::new(BalancedAllocation::from_args(args)?);
    Ok(Registered {
        pre_score: Some(plugin.clone()),
        score: Some(plugin),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    fn pod(requests: &[serde_json::Value]) -> Arc<PodInfo> {
        let containers: Vec<serde_json::Value> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "resources": {"requests": r}}))
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "pending"},
            "spec": {"containers": containers}
        }))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    fn node(allocatable: serde_json::Value, pods: &[Arc<PodInfo>]) -> NodeInfo {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": allocatable}
        }))
        .unwrap();
        let mut info = NodeInfo::new("n");
        info.set_node(Arc::new(n));
        for (i, p) in pods.iter().enumerate() {
            let mut pod = (*p.pod).clone();
            pod.metadata.uid = Some(format!("bound-{i}"));
            info.add_pod(Arc::new(PodInfo::new(Arc::new(pod))));
        }
        info
    }

    fn scores(plugin: &BalancedAllocation, pod: &PodInfo, nodes: &[NodeInfo]) -> Vec<i64> {
        let mut state = CycleState::default();
        let infos: Vec<Arc<NodeInfo>> = nodes.iter().cloned().map(Arc::new).collect();
        let s = plugin.pre_score(&mut state, pod, &infos, &Cluster::default());
        assert!(s.is_success(), "{s:?}");
        nodes
            .iter()
            .map(|n| plugin.score(&state, pod, n).unwrap())
            .collect()
    }

    fn plugin(args: serde_json::Value) -> BalancedAllocation {
        BalancedAllocation::from_args(&args).unwrap()
    }

    // Upstream's balanced-allocation cases: quantities are whole cores and bytes.

    #[test]
    fn differently_sized_nodes() {
        let p = plugin(Value::Null);
        let requested = pod(&[
            json!({"cpu": "1000", "memory": "2000"}),
            json!({"cpu": "2000", "memory": "3000"}),
        ]);
        // Fractions 0.75 and 0.5: std 0.125 → 87; 0.5 and 0.5 → 100.
        let nodes = [
            node(json!({"cpu": "4000", "memory": "10000"}), &[]),
            node(json!({"cpu": "6000", "memory": "10000"}), &[]),
        ];
        assert_eq!(scores(&p, &requested, &nodes), vec![87, 100]);
    }

    #[test]
    fn scheduled_pods_count_with_their_real_requests() {
        let p = plugin(Value::Null);
        let requested = pod(&[json!({"cpu": "3000", "memory": "5000"})]);
        let cpu_only = pod(&[json!({"cpu": "3000", "memory": "0"})]);
        let cpu_and_mem = pod(&[json!({"cpu": "3000", "memory": "5000"})]);
        // cpu 0.6, memory 0.25 → 82; cpu 0.6, memory 0.5 → 95.
        let nodes = [
            node(json!({"cpu": "10000", "memory": "20000"}), &[cpu_only]),
            node(json!({"cpu": "10000", "memory": "20000"}), &[cpu_and_mem]),
        ];
        assert_eq!(scores(&p, &requested, &nodes), vec![82, 95]);

        // Pods without requests add nothing (no scoring defaults here), so the node stays
        // perfectly balanced for a pod asking for 10% of each.
        let small = pod(&[json!({"cpu": "1", "memory": "2"})]);
        let nodes = [node(
            json!({"cpu": "10", "memory": "20"}),
            &[pod(&[json!({})]), pod(&[json!({})])],
        )];
        assert_eq!(scores(&p, &small, &nodes), vec![100]);
    }

    #[test]
    fn over_requested_fractions_are_capped() {
        let p = plugin(Value::Null);
        let requested = pod(&[json!({"cpu": "8000", "memory": "5000"})]);
        let nodes = [node(json!({"cpu": "4000", "memory": "10000"}), &[])];
        assert_eq!(scores(&p, &requested, &nodes), vec![75]);
    }

    #[test]
    fn extended_resources() {
        let p = plugin(json!({"resources": [{"name": "cpu", "weight": 1},
            {"name": "memory", "weight": 1}, {"name": "nvidia.com/gpu", "weight": 1}]}));
        // cpu 0.6, memory 0.25, gpu 0.5 → std ≈ 0.147 → 85.
        let requested = pod(&[json!({"cpu": "3", "memory": "5", "nvidia.com/gpu": "1"})]);
        let nodes = [
            node(
                json!({"cpu": "10", "memory": "20", "nvidia.com/gpu": "2"}),
                &[pod(&[json!({"cpu": "3"})])],
            ),
            // Without the gpu on the node only cpu and memory count: 0.6 and 0.25 → 82.
            node(
                json!({"cpu": "10", "memory": "20"}),
                &[pod(&[json!({"cpu": "3"})])],
            ),
        ];
        assert_eq!(scores(&p, &requested, &nodes), vec![85, 82]);

        // A pod not asking for the gpu is scored on cpu and memory alone.
        let no_gpu = pod(&[json!({"cpu": "3", "memory": "5"})]);
        assert_eq!(scores(&p, &no_gpu, &nodes[..1]), vec![82]);
    }

    #[test]
    fn best_effort_pods_skip_scoring() {
        let p = plugin(Value::Null);
        let mut state = CycleState::default();
        let best_effort = pod(&[json!({})]);
        let s = p.pre_score(&mut state, &best_effort, &[], &Cluster::default());
        assert!(s.is_skip());
        let n = node(json!({"cpu": "4", "memory": "8"}), &[]);
        assert_eq!(p.score(&CycleState::default(), &best_effort, &n), Ok(0));
        // Without PreScore the requests are computed on the spot.
        let requested = pod(&[json!({"cpu": "3", "memory": "4"})]);
        assert_eq!(p.score(&CycleState::default(), &requested, &n), Ok(87));
    }

    #[test]
    fn rejects_invalid_args() {
        let err =
            BalancedAllocation::from_args(&json!({"resources": [{"name": "cpu", "weight": 3}]}))
                .err()
                .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("resources[0].weight: Invalid value: 3: must be 1")
        );
    }
}
