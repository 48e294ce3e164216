//! PreScore, Score and the reversed normalisation for `ScheduleAnyway` constraints.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::*;
use crate::framework::{CycleState, NodeInfo, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::plugins::helpers::parallel_chunks;

const PRE_SCORE_STATE_KEY: &str = "PreScorePodTopologySpread";

/// What Score returns for a node lacking a required topology key; normalisation turns it
/// into 0. Real scores are never negative (counts ≥ 0, maxSkew ≥ 1).
const INVALID_SCORE: i64 = -1;

#[derive(Debug)]
struct ScoreData {
    constraints: Vec<Constraint>,
    /// Filtered nodes missing some constraint's topology key.
    ignored: HashSet<String>,
    /// Per constraint: domain → matching pods. Empty for hostname constraints, which
    /// Score counts on the node itself.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: log(domains + 2), so that counts in topologies with few domains
    /// aren't drowned by those with many.
    weights: Vec<f64>,
    namespace: String,
}

/// Read-only once built, so forks share it.
#[derive(Clone, Debug)]
pub(super) struct PreScoreState(Arc<ScoreData>);

/// Upstream's `scoreForCount`: adding maxSkew−1 waters down small differences, so a larger
/// maxSkew tolerates more skew.
fn score_for_count(count: i64, max_skew: i64, weight: f64) -> f64 {
    count as f64 * weight + (max_skew - 1) as f64
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        cluster: &Cluster,
    ) -> Status {
        if !cluster.nodes().iter().any(|n| n.node.is_some()) {
            return Status::skip();
        }
        let constraints = match self.constraints(pod, cluster, SCHEDULE_ANYWAY) {
            Ok(c) => c,
            Err(e) => {
                return Status::error(format!(
                "calculating preScoreState: obtaining pod's soft topology spread constraints: {e}"
            ))
            }
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        // The system defaults apply to nodes without a zone label too (hostname spreading
        // still works there); anything else needs every key on the node.
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let require_all = own || !self.args.system_defaulted;

        let mut ignored = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for info in nodes {
            let labels = info.labels();
            if require_all && !has_all_keys(labels, &constraints) {
                ignored.insert(info.name.clone());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                let value = labels.get(&c.topology_key).map_or("", String::as_str);
                if !counts[i].contains_key(value) {
                    counts[i].insert(value.to_string(), 0);
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    domains.len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();

        // Only domains of candidate nodes are counted, over every node in the cluster.
        let ns = pod.namespace();
        if counts.iter().any(|d| !d.is_empty()) {
            let known = &counts;
            let walk = |nodes: &[Arc<NodeInfo>]| {
                let mut found: Vec<HashMap<&str, i64>> = vec![HashMap::new(); constraints.len()];
                for info in nodes {
                    let Some(node) = info.node.as_deref() else {
                        continue;
                    };
                    let labels = info.labels();
                    if require_all && !has_all_keys(labels, &constraints) {
                        continue;
                    }
                    let mut eligible = NodeEligibility::new(&pod.pod, node);
                    let mut shared: Option<(usize, i64)> = None;
                    for (i, c) in constraints.iter().enumerate() {
                        let value = labels.get(&c.topology_key).map_or("", String::as_str);
                        // Only domains of candidate nodes are counted.
                        let Some((domain, _)) = known[i].get_key_value(value) else {
                            continue;
                        };
                        if !eligible.admits(c) {
                            continue;
                        }
                        // Default constraints share a selector: count the node once for them.
                        let count = match shared {
                            Some((j, n)) if constraints[j].selector == c.selector => n,
                            _ => count_matching(&info.pods, &c.selector, ns),
                        };
                        shared = Some((i, count));
                        *found[i].entry(domain.as_str()).or_insert(0) += count;
                    }
                }
                found
            };
            let all_nodes = cluster.nodes();
            let cost = all_nodes.len() + cluster.pod_count();
            let parts = parallel_chunks(all_nodes, cost, MIN_COST_PER_THREAD, walk);
            let mut totals: Vec<HashMap<String, i64>> = counts.clone();
            for part in parts {
                for (mine, theirs) in totals.iter_mut().zip(part) {
                    for (value, n) in theirs {
                        if let Some(total) = mine.get_mut(value) {
                            *total += n;
                        }
                    }
                }
            }
            counts = totals;
        }

        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState(Arc::new(ScoreData {
                constraints,
                ignored,
                counts,
                weights,
                namespace: ns.to_string(),
            })),
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(PreScoreState(s)) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return Err(Status::error(format!(
                "error reading {PRE_SCORE_STATE_KEY:?} from cycleState"
            )));
        };
        if node.node.is_none() {
            return Err(Status::error("node not found"));
        }
        if s.ignored.contains(&node.name) {
            return Ok(INVALID_SCORE);
        }
        let labels = node.labels();
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_matching(&node.pods, &c.selector, &s.namespace)
            } else {
                s.counts[i].get(value.as_str()).copied().unwrap_or(0)
            };
            score += score_for_count(count, c.max_skew, s.weights[i]);
        }
        Ok(score.round() as i64)
    }

    /// Fewer matching pods is better: the lowest raw score maps to MAX_NODE_SCORE.
    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        if state.read::<PreScoreState>(PRE_SCORE_STATE_KEY).is_none() {
            return Status::error(format!(
                "error reading {PRE_SCORE_STATE_KEY:?} from cycleState"
            ));
        }
        let valid = scores.iter().copied().filter(|&s| s != INVALID_SCORE);
        let min = valid.clone().min().unwrap_or(i64::MAX);
        let max = valid.max().unwrap_or(0).max(0);
        for score in scores.iter_mut() {
            *score = if *score == INVALID_SCORE {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
        Status::success()
    }
}
