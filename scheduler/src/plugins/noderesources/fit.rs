//! NodeResourcesFit: a node must have room for the pod's requests (and one more pod), and
//! nodes are scored by how much of their allocatable the pod would leave used, per the
//! profile's scoring strategy.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use ferrokube_common::labels::validate_qualified_name;
use serde_json::Value;

use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::*;
use crate::plugins::{PluginContext, Registered};

use super::args::{fit_config, FitConfig, MOST_ALLOCATED, REQUESTED_TO_CAPACITY_RATIO};
use super::scoring::{Scorer, Strategy};

pub const NAME: &str = "NodeResourcesFit";

const PRE_FILTER_KEY: &str = "PreFilterNodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";

/// The pod's request as PreFilter saw it; Filter checks nodes against it.
#[derive(Clone, Debug)]
struct PreFilterState(Resource);

/// The pod's request for each scored resource, in the strategy's resource order.
#[derive(Clone, Debug)]
struct PreScoreState(Vec<i64>);

pub struct Fit {
    ignored_resources: HashSet<String>,
    ignored_resource_groups: HashSet<String>,
    scorer: Scorer,
}

/// upstream's `IsExtendedResourceName`: a qualified name outside `kubernetes.io/`, which is
/// also valid behind the `requests.` quota prefix.
fn is_extended_resource(name: &str) -> bool {
    name.contains('/')
        && !name.contains("kubernetes.io/")
        && !name.starts_with("requests.")
        && validate_qualified_name(&format!("requests.{name}")).is_empty()
}

impl Fit {
    fn new(config: FitConfig) -> Fit {
        let strategy = match config.strategy.as_str() {
            MOST_ALLOCATED => Strategy::MostAllocated,
            REQUESTED_TO_CAPACITY_RATIO => {
                Strategy::requested_to_capacity_ratio(config.shape.as_deref().unwrap_or_default())
            }
            _ => Strategy::LeastAllocated,
        };
        Fit {
            ignored_resources: config.ignored_resources.into_iter().collect(),
            ignored_resource_groups: config.ignored_resource_groups.into_iter().collect(),
            scorer: Scorer {
                strategy,
                resources: config.resources,
                use_requested: false,
            },
        }
    }

    fn from_args(args: &Value) -> Result<Fit> {
        Ok(Fit::new(fit_config(args)?))
    }

    fn ignored(&self, name: &str) -> bool {
        if !is_extended_resource(name) {
            return false;
        }
        let group = name.split('/').next().unwrap_or_default();
        self.ignored_resources.contains(name) || self.ignored_resource_groups.contains(group)
    }

    /// Every reason the node lacks room for `request`, in upstream's order (pods, cpu,
    /// memory, ephemeral storage, then scalar resources).
    fn insufficient(&self, request: &Resource, node: &NodeInfo) -> Vec<String> {
        let mut reasons = Vec::new();
        if node.pods.len() as i64 + 1 > node.allocatable.allowed_pod_number {
            reasons.push("Too many pods".to_string());
        }
        if request.milli_cpu == 0
            && request.memory == 0
            && request.ephemeral_storage == 0
            && request.scalar.is_empty()
        {
            return reasons;
        }
        let alloc = &node.allocatable;
        let used = &node.requested;
        for (name, want, have) in [
            ("cpu", request.milli_cpu, alloc.milli_cpu - used.milli_cpu),
            ("memory", request.memory, alloc.memory - used.memory),
            (
                "ephemeral-storage",
                request.ephemeral_storage,
                alloc.ephemeral_storage - used.ephemeral_storage,
            ),
        ] {
            if want > 0 && want > have {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        for (name, &want) in &request.scalar {
            if want == 0 || self.ignored(name) {
                continue;
            }
            let have = alloc.scalar.get(name).copied().unwrap_or(0)
                - used.scalar.get(name).copied().unwrap_or(0);
            if want > have {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        reasons
    }
}

impl Plugin for Fit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        // Room appears when a pod leaves or shrinks in place, or when a node appears or
        // grows; upstream registers no node update beyond allocatable when queueing hints
        // are on (the v1.33 default).
        vec![
            ClusterEvent::new(
                EventResource::AssignedPod,
                ActionType::DELETE | ActionType::UPDATE_POD_SCALE_DOWN,
            ),
            ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD | ActionType::UPDATE_NODE_ALLOCATABLE,
            ),
        ]
    }
}

impl PreFilterPlugin for Fit {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _cluster: &Cluster,
    ) -> (Status, NodeNames) {
        state.write(PRE_FILTER_KEY, PreFilterState(pod.requests.clone()));
        (Status::success(), None)
    }
}

impl FilterPlugin for Fit {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(PreFilterState(request)) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::error(format!(
                "error reading {PRE_FILTER_KEY:?} from cycleState: not found"
            ));
        };
        let reasons = self.insufficient(request, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status::new(Code::Unschedulable, reasons)
        }
    }
}

impl PreScorePlugin for Fit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _cluster: &Cluster,
    ) -> Status {
        state.write(PRE_SCORE_KEY, PreScoreState(self.scorer.pod_requests(pod)));
        Status::success()
    }
}

impl ScorePlugin for Fit {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        match state.read::<PreScoreState>(PRE_SCORE_KEY) {
            Some(PreScoreState(requests)) => self.scorer.score(node, requests),
            None => self.scorer.score(node, &self.scorer.pod_requests(pod)),
        }
    }
}

pub fn register(args: &Value, _ctx: &PluginContext) -> Result<Registered> {
    let fit = Arc::new(Fit::from_args(args)?);
    Ok(Registered {
        pre_filter: Some(fit.clone()),
        filter: Some(fit.clone()),
        pre_score: Some(fit.clone()),
        score: Some(fit.clone()),
        events: fit.events(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    fn pod_with(containers: serde_json::Value) -> Arc<PodInfo> {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": format!("{}", containers)},
            "spec": {"containers": containers}
        }))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    /// A pod with one container per request map (an empty list gives a pod without
    /// containers, which requests nothing even for scoring).
    fn pod(requests: &[serde_json::Value]) -> Arc<PodInfo> {
        let containers: Vec<serde_json::Value> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "resources": {"requests": r}}))
            .collect();
        pod_with(json!(containers))
    }

    fn node(name: &str, allocatable: serde_json::Value, pods: &[Arc<PodInfo>]) -> NodeInfo {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"allocatable": allocatable, "capacity": allocatable}
        }))
        .unwrap();
        let mut info = NodeInfo::new(name);
        info.set_node(Arc::new(n));
        for (i, p) in pods.iter().enumerate() {
            // Distinct uids keep the node's bookkeeping honest.
            let mut pod = (*p.pod).clone();
            pod.metadata.uid = Some(format!("{name}-{i}"));
            info.add_pod(Arc::new(PodInfo::new(Arc::new(pod))));
        }
        info
    }

    fn plugin(args: serde_json::Value) -> Fit {
        Fit::from_args(&args).unwrap()
    }

    fn run_filter(fit: &Fit, pod: &PodInfo, node: &NodeInfo) -> Status {
        let mut state = CycleState::default();
        let (s, _) = fit.pre_filter(&mut state, pod, &Cluster::default());
        assert!(s.is_success());
        fit.filter(&state, pod, node)
    }

    fn scores(fit: &Fit, pod: &PodInfo, nodes: &[NodeInfo]) -> Vec<i64> {
        let mut state = CycleState::default();
        let infos: Vec<Arc<NodeInfo>> = nodes.iter().cloned().map(Arc::new).collect();
        assert!(fit
            .pre_score(&mut state, pod, &infos, &Cluster::default())
            .is_success());
        nodes
            .iter()
            .map(|n| fit.score(&state, pod, n).unwrap())
            .collect()
    }

    fn alloc(cpu: &str, memory: &str, pods: i64) -> serde_json::Value {
        json!({"cpu": cpu, "memory": memory, "pods": pods.to_string()})
    }

    #[test]
    fn fits_when_there_is_room() {
        let fit = plugin(Value::Null);
        let existing = pod(&[json!({"cpu": "5", "memory": "5"})]);
        let n = node("n1", alloc("10", "20", 32), &[existing]);
        let p = pod(&[json!({"cpu": "5", "memory": "15"})]);
        assert!(run_filter(&fit, &p, &n).is_success());
    }

    #[test]
    fn reports_every_short_resource() {
        let fit = plugin(Value::Null);
        let existing = pod(&[json!({"cpu": "5", "memory": "19"})]);
        let n = node("n1", alloc("10", "20", 32), &[existing]);

        let p = pod(&[json!({"cpu": "8", "memory": "1"})]);
        let s = run_filter(&fit, &p, &n);
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(s.reasons, vec!["Insufficient cpu"]);

        let p = pod(&[json!({"cpu": "6", "memory": "2"})]);
        let s = run_filter(&fit, &p, &n);
        assert_eq!(s.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
    }

    #[test]
    fn init_containers_and_overhead_count() {
        let fit = plugin(Value::Null);
        let n = node("n1", alloc("10", "20", 32), &[]);
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1"}}}],
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3", "memory": "1"}}}],
                "overhead": {"cpu": "8"}
            }
        }))
        .unwrap();
        let s = run_filter(&fit, &PodInfo::new(Arc::new(p)), &n);
        assert_eq!(s.reasons, vec!["Insufficient cpu"]);
    }

    #[test]
    fn too_many_pods_comes_first_and_alone_for_empty_requests() {
        let fit = plugin(Value::Null);
        let existing = pod(&[json!({"cpu": "10", "memory": "20"})]);
        let n = node("n1", alloc("10", "20", 1), &[existing]);
        let s = run_filter(&fit, &pod(&[json!({})]), &n);
        assert_eq!(s.reasons, vec!["Too many pods"]);
        let s = run_filter(&fit, &pod(&[json!({"cpu": "1", "memory": "1"})]), &n);
        assert_eq!(
            s.reasons,
            vec!["Too many pods", "Insufficient cpu", "Insufficient memory"]
        );
        // A node reporting no pod capacity takes no pods at all.
        let n = node("n2", json!({"cpu": "10", "memory": "20"}), &[]);
        let s = run_filter(&fit, &pod(&[json!({})]), &n);
        assert_eq!(s.reasons, vec!["Too many pods"]);
    }

    #[test]
    fn ephemeral_storage_and_extended_resources() {
        let fit = plugin(Value::Null);
        let n = node(
            "n1",
            json!({"cpu": "10", "memory": "20", "pods": "32", "ephemeral-storage": "10",
                   "example.com/foo": "2", "hugepages-2Mi": "4Mi"}),
            &[pod(&[json!({"example.com/foo": "1"})])],
        );
        let p = pod(&[json!({"ephemeral-storage": "11", "example.com/foo": "2",
                             "example.com/bar": "1", "hugepages-2Mi": "2Mi"})]);
        let s = run_filter(&fit, &p, &n);
        assert_eq!(
            s.reasons,
            vec![
                "Insufficient ephemeral-storage",
                "Insufficient example.com/bar",
                "Insufficient example.com/foo"
            ]
        );
    }

    #[test]
    fn ignored_resources_and_groups() {
        let n = node("n1", alloc("10", "20", 32), &[]);
        let p =
            pod(&[json!({"example.com/foo": "1", "other.io/bar": "1", "hugepages-2Mi": "2Mi"})]);

        let fit = plugin(json!({"ignoredResources": ["example.com/foo"]}));
        assert_eq!(
            run_filter(&fit, &p, &n).reasons,
            vec!["Insufficient hugepages-2Mi", "Insufficient other.io/bar"]
        );
        let fit = plugin(
            json!({"ignoredResourceGroups": ["other.io"], "ignoredResources": ["example.com/foo"]}),
        );
        assert_eq!(
            run_filter(&fit, &p, &n).reasons,
            vec!["Insufficient hugepages-2Mi"]
        );
        // Only extended resources can be ignored.
        let fit = plugin(json!({"ignoredResources": ["hugepages-2Mi"]}));
        assert!(run_filter(&fit, &p, &n)
            .reasons
            .contains(&"Insufficient hugepages-2Mi".to_string()));
    }

    #[test]
    fn filter_without_pre_filter_is_an_error() {
        let fit = plugin(Value::Null);
        let n = node("n1", alloc("10", "20", 32), &[]);
        let s = fit.filter(&CycleState::default(), &pod(&[]), &n);
        assert_eq!(s.code, Code::Error);
        assert_eq!(
            s.reasons,
            vec!["error reading \"PreFilterNodeResourcesFit\" from cycleState: not found"]
        );
    }

    // The scoring cases below are upstream's least/most-allocated and requested-to-capacity
    // tests: quantities there are whole cores and bytes, and the ratios are what matter.

    #[test]
    fn least_allocated() {
        let fit = plugin(Value::Null);
        let requested = pod(&[
            json!({"cpu": "1000", "memory": "2000"}),
            json!({"cpu": "2000", "memory": "3000"}),
        ]);
        // Nothing scheduled, differently sized nodes: (25 + 50) / 2 and (50 + 50) / 2.
        let nodes = [
            node("n1", alloc("4000", "10000", 110), &[]),
            node("n2", alloc("6000", "10000", 110), &[]),
        ];
        assert_eq!(scores(&fit, &requested, &nodes), vec![37, 50]);

        // Nothing requested by a pod without containers: every node is fully free.
        let idle = [
            node("n1", alloc("4000", "10000", 110), &[pod(&[]), pod(&[])]),
            node("n2", alloc("4000", "10000", 110), &[pod(&[])]),
        ];
        assert_eq!(scores(&fit, &pod(&[]), &idle), vec![100, 100]);

        // Pods scheduled with resources: cpu 40, memory 100 → 70; cpu 40, memory 75 → 57.
        let cpu_only = pod(&[json!({"cpu": "3000", "memory": "0"})]);
        let cpu_and_mem = pod(&[json!({"cpu": "3000", "memory": "5000"})]);
        let nodes = [
            node(
                "n1",
                alloc("10000", "20000", 110),
                &[cpu_only.clone(), cpu_only.clone()],
            ),
            node(
                "n2",
                alloc("10000", "20000", 110),
                &[cpu_only.clone(), cpu_and_mem.clone()],
            ),
        ];
        assert_eq!(scores(&fit, &pod(&[]), &nodes), vec![70, 57]);

        // With the pod's own requests: 57 and 45; on a bigger second node: 57 and 60.
        let nodes = [
            node(
                "n1",
                alloc("10000", "20000", 110),
                std::slice::from_ref(&cpu_only),
            ),
            node(
                "n2",
                alloc("10000", "20000", 110),
                std::slice::from_ref(&cpu_and_mem),
            ),
        ];
        assert_eq!(scores(&fit, &requested, &nodes), vec![57, 45]);
        let nodes = [
            node(
                "n1",
                alloc("10000", "20000", 110),
                std::slice::from_ref(&cpu_only),
            ),
            node(
                "n2",
                alloc("10000", "50000", 110),
                std::slice::from_ref(&cpu_and_mem),
            ),
        ];
        assert_eq!(scores(&fit, &requested, &nodes), vec![57, 60]);

        // Requests beyond capacity score 0 for that resource.
        let nodes = [
            node(
                "n1",
                alloc("4000", "10000", 110),
                std::slice::from_ref(&cpu_only),
            ),
            node(
                "n2",
                alloc("4000", "10000", 110),
                std::slice::from_ref(&cpu_and_mem),
            ),
        ];
        assert_eq!(scores(&fit, &cpu_only, &nodes), vec![50, 25]);

        // A node with no allocatable at all scores 0.
        let nodes = [node("n1", json!({}), std::slice::from_ref(&cpu_only))];
        assert_eq!(scores(&fit, &pod(&[]), &nodes), vec![0]);
    }

    #[test]
    fn least_allocated_weights_and_extended_resources() {
        let requested = pod(&[
            json!({"cpu": "1000", "memory": "2000"}),
            json!({"cpu": "2000", "memory": "3000"}),
        ]);
        let fit = plugin(json!({"scoringStrategy": {"type": "LeastAllocated",
            "resources": [{"name": "memory", "weight": 2}, {"name": "cpu", "weight": 1}]}}));
        let nodes = [
            node("n1", alloc("4000", "10000", 110), &[]),
            node("n2", alloc("6000", "10000", 110), &[]),
        ];
        assert_eq!(scores(&fit, &requested, &nodes), vec![41, 50]);

        let fit = plugin(json!({"scoringStrategy": {"type": "LeastAllocated",
            "resources": [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1},
                          {"name": "example.com/foo", "weight": 1}]}}));
        // The pod does not ask for the extended resource, so it is left out.
        let nodes = [
            node("n1", alloc("6000", "10000", 110), &[]),
            node(
                "n2",
                json!({"cpu": "6000", "memory": "10000", "pods": "110", "example.com/foo": "4"}),
                &[],
            ),
        ];
        assert_eq!(scores(&fit, &requested, &nodes), vec![50, 50]);
        // When it does: 50 on a node with 4, 80 on one with 10, averaged with 50 and 50.
        let wants_foo = pod(&[json!({"cpu": "3000", "memory": "5000", "example.com/foo": "2"})]);
        let nodes = [
            node(
                "n1",
                json!({"cpu": "6000", "memory": "10000", "pods": "110", "example.com/foo": "4"}),
                &[],
            ),
            node(
                "n2",
                json!({"cpu": "6000", "memory": "10000", "pods": "110", "example.com/foo": "10"}),
                &[],
            ),
        ];
        assert_eq!(scores(&fit, &wants_foo, &nodes), vec![50, 60]);
    }

    #[test]
    fn default_requests_count_for_scoring() {
        // A container without requests counts 100m cpu and 200Mi memory.
        let fit = plugin(Value::Null);
        let p = pod(&[json!({})]);
        let n = [node("n1", alloc("1", "400Mi", 110), &[pod(&[json!({})])])];
        // cpu (1000 - 200) * 100 / 1000 = 80, memory (400 - 400) = 0 → 40.
        assert_eq!(scores(&fit, &p, &n), vec![40]);
    }

    #[test]
    fn most_allocated() {
        let fit = plugin(json!({"scoringStrategy": {"type": "MostAllocated"}}));
        let requested = pod(&[
            json!({"cpu": "1000", "memory": "2000"}),
            json!({"cpu": "2000", "memory": "3000"}),
        ]);
        // (75 + 50) / 2 and (50 + 50) / 2.
        let nodes = [
            node("n1", alloc("4000", "10000", 110), &[]),
            node("n2", alloc("6000", "10000", 110), &[]),
        ];
        assert_eq!(scores(&fit, &requested, &nodes), vec![62, 50]);
        // Over-committed cpu counts as fully used: (100 + 60) / 2.
        let big = pod(&[json!({"cpu": "5000", "memory": "6000"})]);
        let nodes = [node("n1", alloc("4000", "10000", 110), &[])];
        assert_eq!(scores(&fit, &big, &nodes), vec![80]);
    }

    #[test]
    fn requested_to_capacity_ratio() {
        let fit = plugin(
            json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
            "requestedToCapacityRatio": {"shape": [
                {"utilization": 0, "score": 10}, {"utilization": 100, "score": 0}]}}}),
        );
        let requested = pod(&[
            json!({"cpu": "1000", "memory": "2000"}),
            json!({"cpu": "2000", "memory": "3000"}),
        ]);
        // cpu 75% → 25, memory 50% → 50: (25 + 50) / 2 = 37.5 rounds to 38.
        let nodes = [
            node("n1", alloc("4000", "10000", 110), &[pod(&[]), pod(&[])]),
            node("n2", alloc("6000", "10000", 110), &[]),
        ];
        assert_eq!(scores(&fit, &requested, &nodes), vec![38, 50]);
        assert_eq!(scores(&fit, &pod(&[]), &nodes), vec![100, 100]);

        // Bin packing on one extended resource with shape 0→0, 100→1 (×10).
        let fit = plugin(
            json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
            "resources": [{"name": "intel.com/foo", "weight": 1}],
            "requestedToCapacityRatio": {"shape": [
                {"utilization": 0, "score": 0}, {"utilization": 100, "score": 1}]}}}),
        );
        let wants2 = pod(&[json!({"intel.com/foo": "2"})]);
        let nodes = [
            node(
                "n1",
                json!({"cpu": "4", "memory": "10Gi", "pods": "110", "intel.com/foo": "8"}),
                &[],
            ),
            node(
                "n2",
                json!({"cpu": "4", "memory": "10Gi", "pods": "110", "intel.com/foo": "4"}),
                std::slice::from_ref(&wants2),
            ),
        ];
        assert_eq!(scores(&fit, &wants2, &nodes), vec![2, 10]);
        assert_eq!(scores(&fit, &pod(&[]), &nodes), vec![0, 0]);
    }

    #[test]
    fn score_without_pre_score_computes_the_requests() {
        let fit = plugin(Value::Null);
        let requested = pod(&[json!({"cpu": "3000", "memory": "5000"})]);
        let n = node("n1", alloc("4000", "10000", 110), &[]);
        assert_eq!(fit.score(&CycleState::default(), &requested, &n), Ok(37));
    }

    #[test]
    fn rejects_invalid_args() {
        let err = Fit::from_args(&json!({"scoringStrategy": {"type": "LeastAllocated",
            "resources": [{"name": "cpu", "weight": 0}, {"name": "memory", "weight": 200}]}}))
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("scoringStrategy.resources[1].weight: Invalid value: 200: resource weight of memory not in valid range (0, 100]")
        );
    }

    #[test]
    fn extended_resource_names() {
        assert!(is_extended_resource("example.com/foo"));
        assert!(!is_extended_resource("kubernetes.io/foo"));
        assert!(!is_extended_resource("hugepages-2Mi"));
        assert!(!is_extended_resource("cpu"));
        assert!(!is_extended_resource("requests.example.com/foo"));
    }

    #[test]
    fn events_and_extension_points() {
        let fit = plugin(Value::Null);
        let events = fit.events();
        let pod_deleted = ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE);
        let node_added = ClusterEvent::new(EventResource::Node, ActionType::ADD);
        let node_labelled = ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_LABEL);
        assert!(events.iter().any(|e| e.covers(&pod_deleted)));
        assert!(events.iter().any(|e| e.covers(&node_added)));
        assert!(!events.iter().any(|e| e.covers(&node_labelled)));
    }
}
