//! PreScore, Score and the min/max normalisation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::*;
use crate::framework::pod_info::WeightedAffinityTerm;
use crate::framework::{
    CycleState, NodeInfo, PodInfo, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::plugins::helpers::parallel_chunks;

const PRE_SCORE_STATE_KEY: &str = "PreScoreInterPodAffinity";

/// Topology key → value → summed weight. Read-only once built, so forks share it.
type ScoreMap = HashMap<String, HashMap<String, i64>>;

#[derive(Clone, Debug)]
pub(super) struct PreScoreState {
    topology_score: Arc<ScoreMap>,
}

/// Adds `weight` under the node's value for `key`; false when the node lacks the key.
fn bump(map: &mut ScoreMap, labels: &BTreeMap<String, String>, key: &str, weight: i64) -> bool {
    let Some(value) = labels.get(key) else {
        return false;
    };
    if let Some(values) = map.get_mut(key) {
        if let Some(n) = values.get_mut(value.as_str()) {
            *n += weight;
        } else {
            values.insert(value.clone(), weight);
        }
    } else {
        map.insert(key.to_string(), HashMap::from([(value.clone(), weight)]));
    }
    true
}

/// The incoming pod's side of scoring, shared by the threads walking the nodes.
struct Scorer<'a> {
    incoming: &'a Pod,
    namespace_labels: Option<&'a BTreeMap<String, String>>,
    preferred_affinity: Vec<IncomingTerm>,
    preferred_anti_affinity: Vec<IncomingTerm>,
    hard_weight: i64,
}

impl Scorer<'_> {
    /// Adds what `existing` contributes on its node; true when any term applied.
    fn process(
        &self,
        map: &mut ScoreMap,
        existing: &PodInfo,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        if labels.is_empty() {
            return false;
        }
        let mut touched = false;
        for t in &self.preferred_affinity {
            if t.matches(&existing.pod) {
                touched |= bump(map, labels, &t.topology_key, t.weight);
            }
        }
        for t in &self.preferred_anti_affinity {
            if t.matches(&existing.pod) {
                touched |= bump(map, labels, &t.topology_key, -t.weight);
            }
        }
        if self.hard_weight > 0 {
            for t in &existing.required_affinity {
                if t.matches(self.incoming, self.namespace_labels) {
                    touched |= bump(map, labels, &t.topology_key, self.hard_weight);
                }
            }
        }
        let mut existing_terms = |terms: &[WeightedAffinityTerm], sign: i64| {
            for t in terms {
                if t.term.matches(self.incoming, self.namespace_labels) {
                    let weight = i64::from(t.weight) * sign;
                    touched |= bump(map, labels, &t.term.topology_key, weight);
                }
            }
        };
        existing_terms(&existing.preferred_affinity, 1);
        existing_terms(&existing.preferred_anti_affinity, -1);
        touched
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        cluster: &Cluster,
    ) -> Status {
        let has_constraints =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !has_constraints
            && (self.args.ignore_preferred_terms_of_existing_pods
                || cluster.pods_with_scored_affinity() == 0)
        {
            return Status::skip();
        }
        let resolve = |terms: &[WeightedAffinityTerm]| -> Vec<IncomingTerm> {
            terms
                .iter()
                .map(|t| IncomingTerm::resolve(&t.term, t.weight, cluster))
                .collect()
        };
        let scorer = Scorer {
            incoming: &pod.pod,
            namespace_labels: cluster.namespace_labels(pod.namespace()),
            preferred_affinity: resolve(&pod.preferred_affinity),
            preferred_anti_affinity: resolve(&pod.preferred_anti_affinity),
            hard_weight: i64::from(self.args.hard_pod_affinity_weight),
        };
        let walk = |nodes: &[Arc<NodeInfo>]| {
            let mut map = ScoreMap::new();
            let mut touched = false;
            for info in nodes {
                if info.node.is_none() {
                    continue;
                }
                // Only pods with affinity terms of their own can matter unless the incoming
                // pod has preferences that any pod may match.
                let pods = if has_constraints {
                    &info.pods
                } else {
                    &info.pods_with_affinity
                };
                let labels = info.labels();
                for existing in pods {
                    touched |= scorer.process(&mut map, existing, labels);
                }
            }
            (map, touched)
        };
        let nodes = cluster.nodes();
        let cost = nodes.len() + cluster.pod_count();
        let mut map = ScoreMap::new();
        let mut touched = false;
        for (part, t) in parallel_chunks(nodes, cost, MIN_COST_PER_THREAD, walk) {
            touched |= t;
            for (key, values) in part {
                let mine = map.entry(key).or_default();
                for (value, n) in values {
                    *mine.entry(value).or_insert(0) += n;
                }
            }
        }
        if !touched {
            return Status::skip();
        }
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                topology_score: Arc::new(map),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return Err(Status::error(format!(
                "failed to read {PRE_SCORE_STATE_KEY:?} from cycleState"
            )));
        };
        let labels = node.labels();
        Ok(s.topology_score
            .iter()
            .filter_map(|(key, values)| values.get(labels.get(key)?).copied())
            .sum())
    }

    /// Min/max scaling to [0, MAX_NODE_SCORE]; all nodes get 0 when they score alike.
    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return Status::error(format!(
                "failed to read {PRE_SCORE_STATE_KEY:?} from cycleState"
            ));
        };
        if s.topology_score.is_empty() || scores.is_empty() {
            return Status::success();
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for score in scores.iter_mut() {
            *score = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*score - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}
