//! PreFilter (with preemption's AddPod/RemovePod) and Filter for `DoNotSchedule`
//! constraints.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::cache::equality;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, NodeNames, PreFilterPlugin, Status};
use crate::plugins::helpers::parallel_chunks;

const PRE_FILTER_STATE_KEY: &str = "PreFilterPodTopologySpread";

/// The two domains with the fewest matching pods, as upstream keeps them: slot 0 always
/// holds the minimum; slot 1 is no smaller but not necessarily the second smallest. That
/// suffices because preemption only ever changes the pods of one node per fork.
#[derive(Clone, Debug)]
struct CriticalPaths([(String, i64); 2]);

impl CriticalPaths {
    fn new() -> Self {
        let unset = (String::new(), i64::from(i32::MAX));
        CriticalPaths([unset.clone(), unset])
    }

    fn update(&mut self, value: &str, num: i64) {
        let p = &mut self.0;
        let slot = if p[0].0 == value {
            Some(0)
        } else if p[1].0 == value {
            Some(1)
        } else {
            None
        };
        match slot {
            Some(i) => {
                p[i].1 = num;
                if p[0].1 > p[1].1 {
                    p.swap(0, 1);
                }
            }
            None if num < p[0].1 => {
                p[1] = std::mem::replace(&mut p[0], (value.to_string(), num));
            }
            None if num < p[1].1 => p[1] = (value.to_string(), num),
            None => {}
        }
    }

    fn min(&self) -> i64 {
        self.0[0].1
    }
}

#[derive(Clone, Debug)]
pub(super) struct PreFilterState {
    constraints: Arc<Vec<Constraint>>,
    /// Per constraint: whether its selector selects the incoming pod itself.
    self_match: Vec<bool>,
    paths: Vec<CriticalPaths>,
    /// Per constraint: domain (topology value) → matching pods in it. Every eligible
    /// domain is present, with 0 when it has no matching pod.
    counts: Vec<HashMap<String, i64>>,
}

impl PreFilterState {
    /// The global minimum for constraint `i`: 0 while fewer domains than minDomains exist.
    fn min_match(&self, i: usize, c: &Constraint) -> i64 {
        if (self.counts[i].len() as i64) < c.min_domains {
            0
        } else {
            self.paths[i].min()
        }
    }

    fn update_with_pod(
        &mut self,
        other: &PodInfo,
        incoming: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        let Some(n) = node.node.as_deref() else {
            return;
        };
        if other.namespace() != incoming.namespace() {
            return;
        }
        let labels = node.labels();
        if !has_all_keys(labels, &self.constraints) {
            return;
        }
        let mut eligible = NodeEligibility::new(&incoming.pod, n);
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.selector.matches(other.labels()) || !eligible.admits(c) {
                continue;
            }
            let Some(value) = labels.get(&c.topology_key) else {
                continue;
            };
            let num = add_count(&mut self.counts[i], value, delta);
            self.paths[i].update(value, num);
        }
    }
}

/// Adds to a domain's count (creating the domain) and returns the new count.
fn add_count(counts: &mut HashMap<String, i64>, value: &str, delta: i64) -> i64 {
    match counts.get_mut(value) {
        Some(n) => {
            *n += delta;
            *n
        }
        None => {
            counts.insert(value.to_string(), delta);
            delta
        }
    }
}

/// Upstream's `calPreFilterState`: matching pods per domain over the nodes eligible for
/// each constraint. `None` when the pod has no `DoNotSchedule` constraints.
pub(super) fn compute(
    pl: &PodTopologySpread,
    pod: &PodInfo,
    cluster: &Cluster,
) -> Result<Option<PreFilterState>, String> {
    let constraints = pl.constraints(pod, cluster, DO_NOT_SCHEDULE)?;
    if constraints.is_empty() {
        return Ok(None);
    }
    // Default constraints share one selector; count each node's pods once for them.
    let same_as: Vec<Option<usize>> = constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            constraints[..i]
                .iter()
                .position(|o| o.selector == c.selector)
        })
        .collect();
    let ns = pod.namespace();
    // With an equality requirement in a selector, the cache's label index gives the pods
    // that can match, counted per node up front, instead of a pass over every node's pods.
    let indexed: Vec<Option<HashMap<&str, i64>>> = constraints
        .iter()
        .map(|c| {
            let (k, v) = equality(&c.selector)?;
            let mut per_node: HashMap<&str, i64> = HashMap::new();
            for (node, other) in cluster.pods_labelled(k, v) {
                let counts = other.namespace() == ns
                    && other.pod.metadata.deletion_timestamp.is_none()
                    && c.selector.matches(other.labels());
                if counts {
                    *per_node.entry(node.name.as_str()).or_default() += 1;
                }
            }
            Some(per_node)
        })
        .collect();
    let walk = |nodes: &[Arc<NodeInfo>]| {
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        let mut node_counts: Vec<Option<i64>> = vec![None; constraints.len()];
        for info in nodes {
            let Some(node) = info.node.as_deref() else {
                continue;
            };
            let labels = info.labels();
            if !has_all_keys(labels, &constraints) {
                continue;
            }
            let mut eligible = NodeEligibility::new(&pod.pod, node);
            node_counts.iter_mut().for_each(|n| *n = None);
            for (i, c) in constraints.iter().enumerate() {
                if !eligible.admits(c) {
                    continue;
                }
                let Some(value) = labels.get(&c.topology_key) else {
                    continue;
                };
                let count = match (same_as[i].and_then(|j| node_counts[j]), &indexed[i]) {
                    (Some(n), _) => n,
                    (None, Some(per_node)) => {
                        per_node.get(info.name.as_str()).copied().unwrap_or(0)
                    }
                    (None, None) => count_matching(&info.pods, &c.selector, ns),
                };
                node_counts[i] = Some(count);
                add_count(&mut counts[i], value, count);
            }
        }
        counts
    };
    let nodes = cluster.nodes();
    let cost = nodes.len()
        + if indexed.iter().all(Option::is_some) {
            0
        } else {
            cluster.pod_count()
        };
    let mut parts = parallel_chunks(nodes, cost, MIN_COST_PER_THREAD, walk).into_iter();
    let mut counts = parts.next().unwrap_or_default();
    for part in parts {
        for (mine, theirs) in counts.iter_mut().zip(part) {
            for (value, n) in theirs {
                *mine.entry(value).or_insert(0) += n;
            }
        }
    }
    let paths = counts
        .iter()
        .map(|domains| {
            let mut p = CriticalPaths::new();
            for (value, &num) in domains {
                p.update(value, num);
            }
            p
        })
        .collect();
    let self_match = constraints
        .iter()
        .map(|c| c.selector.matches(pod.labels()))
        .collect();
    Ok(Some(PreFilterState {
        self_match,
        constraints: Arc::new(constraints),
        paths,
        counts,
    }))
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
    ) -> (Status, NodeNames) {
        match compute(self, pod, cluster) {
            Ok(Some(s)) => {
                state.write(PRE_FILTER_STATE_KEY, s);
                (Status::success(), None)
            }
            Ok(None) => (Status::skip(), None),
            Err(e) => (
                Status::error(format!("get constraints from pod: {e}")),
                None,
            ),
        }
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
        _cluster: &Cluster,
    ) -> Status {
        // No state: PreFilter skipped this pod, and the framework skips us for it too.
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_STATE_KEY) {
            s.update_with_pod(other, pod, node, 1);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
        _cluster: &Cluster,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_STATE_KEY) {
            s.update_with_pod(other, pod, node, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        if node.node.is_none() {
            return Status::error("node not found");
        }
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return Status::error(format!(
                "reading {PRE_FILTER_STATE_KEY:?} from cycleState: not found"
            ));
        };
        let labels = node.labels();
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(s.self_match[i]);
            let matching = s.counts[i].get(value.as_str()).copied().unwrap_or(0);
            if matching + self_match - s.min_match(i, c) > c.max_skew {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}
