//! One profile's plugins, called in upstream's order at each extension point.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::*;

/// A score plugin with its weight in the profile.
#[derive(Clone)]
pub struct ScoredPlugin {
    pub plugin: Arc<dyn ScorePlugin>,
    pub weight: i64,
}

#[derive(Clone, Default)]
pub struct Framework {
    pub scheduler_name: String,
    pub pre_enqueue: Vec<Arc<dyn PreEnqueuePlugin>>,
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub score: Vec<ScoredPlugin>,
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
    pub pre_bind: Vec<Arc<dyn PreBindPlugin>>,
    pub bind: Vec<Arc<dyn BindPlugin>>,
    /// Which cluster events each plugin cares about, for requeueing.
    pub events: HashMap<&'static str, Vec<ClusterEvent>>,
}

impl Framework {
    pub fn run_pre_enqueue(&self, pod: &Pod) -> Status {
        for p in &self.pre_enqueue {
            let s = p.pre_enqueue(pod);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Runs every PreFilter; the node sets they return are intersected.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
    ) -> (Status, NodeNames) {
        let mut nodes: NodeNames = None;
        for p in &self.pre_filter {
            let (s, narrowed) = p.pre_filter(state, pod, cluster);
            if s.is_skip() {
                state.skip_filter.push(p.name());
                continue;
            }
            if !s.is_success() {
                return (s.with_plugin(p.name()), None);
            }
            if let Some(set) = narrowed {
                nodes = Some(match nodes {
                    None => set,
                    Some(prev) => prev.intersection(&set).cloned().collect(),
                });
                if nodes.as_ref().is_some_and(|n| n.is_empty()) {
                    return (
                        Status::unresolvable(
                            "node(s) didn't satisfy plugin(s) [".to_string() + p.name() + "]",
                        )
                        .with_plugin(p.name()),
                        None,
                    );
                }
            }
        }
        (Status::success(), nodes)
    }

    /// Runs the Filter plugins on one node, stopping at the first that rejects it.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for p in &self.filter {
            if state.skip_filter.contains(&p.name()) {
                continue;
            }
            let s = p.filter(state, pod, node);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Filters as upstream does when pods with at least this pod's priority are nominated
    /// to the node: the node must fit with them counted, and without them (some filters,
    /// like anti-affinity, can only fail by adding pods).
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &[Arc<PodInfo>],
        cluster: &Cluster,
    ) -> Status {
        let mine = pod.priority();
        let ahead: Vec<&Arc<PodInfo>> = nominated
            .iter()
            .filter(|n| n.uid() != pod.uid() && n.priority() >= mine)
            .collect();
        if ahead.is_empty() {
            return self.run_filter(state, pod, node);
        }
        let mut with_state = state.clone();
        let mut with_node = node.clone();
        for other in ahead {
            with_node.add_pod((*other).clone());
            for p in &self.pre_filter {
                if state.skip_filter.contains(&p.name()) {
                    continue;
                }
                let s = p.add_pod(&mut with_state, pod, other, &with_node, cluster);
                if !s.is_success() {
                    return s.with_plugin(p.name());
                }
            }
        }
        let s = self.run_filter(&with_state, pod, &with_node);
        if !s.is_success() {
            return s;
        }
        self.run_filter(state, pod, node)
    }

    pub fn run_post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
        statuses: &NodeStatuses,
    ) -> (Status, PostFilterResult) {
        // A rejection may still carry a result: `nominated_node: Some("")` asks to clear the
        // pod's nomination, as upstream's preemption does when it cannot help.
        let mut last = (
            Status::unschedulable("no PostFilter plugin made the pod schedulable"),
            PostFilterResult::default(),
        );
        for p in &self.post_filter {
            let (s, result) = p.post_filter(state, pod, cluster, self, statuses);
            if s.is_success() {
                return (s, result);
            }
            if !s.is_rejected() {
                return (s.with_plugin(p.name()), result);
            }
            last = (s.with_plugin(p.name()), result);
        }
        last
    }

    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        cluster: &Cluster,
    ) -> Status {
        for p in &self.pre_score {
            let s = p.pre_score(state, pod, nodes, cluster);
            if s.is_skip() {
                state.skip_score.push(p.name());
                continue;
            }
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// The weighted total of every Score plugin for each node, in `nodes` order.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let mut totals = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for sp in &self.score {
            let name = sp.plugin.name();
            if state.skip_score.contains(&name) {
                continue;
            }
            for (i, node) in nodes.iter().enumerate() {
                scores[i] = sp
                    .plugin
                    .score(state, pod, node)
                    .map_err(|s| s.with_plugin(name))?;
            }
            let s = sp.plugin.normalize(state, pod, &mut scores);
            if !s.is_success() {
                return Err(s.with_plugin(name));
            }
            for (total, score) in totals.iter_mut().zip(&scores) {
                if !(0..=MAX_NODE_SCORE).contains(score) {
                    return Err(Status::error(format!(
                        "plugin {name} returned an invalid score {score}"
                    ))
                    .with_plugin(name));
                }
                *total += score * sp.weight;
            }
        }
        Ok(totals)
    }

    /// Reserves in order; on a failure, unreserves everything (in reverse) and reports it.
    pub fn run_reserve(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
        cluster: &Cluster,
    ) -> Status {
        for p in &self.reserve {
            let s = p.reserve(state, pod, node, cluster);
            if !s.is_success() {
                self.run_unreserve(state, pod, node);
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    pub fn run_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            p.unreserve(state, pod, node);
        }
    }

    pub async fn run_pre_bind(&self, state: &CycleState, pod: &Pod, node: &str) -> Status {
        for p in &self.pre_bind {
            let s = p.pre_bind(state, pod, node).await;
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// The first Bind plugin that does not skip binds the pod.
    pub async fn run_bind(&self, state: &CycleState, pod: &Pod, node: &str) -> Status {
        for p in &self.bind {
            let s = p.bind(state, pod, node).await;
            if s.is_skip() {
                continue;
            }
            return s.with_plugin(p.name());
        }
        Status::error("no bind plugin bound the pod")
    }
}
