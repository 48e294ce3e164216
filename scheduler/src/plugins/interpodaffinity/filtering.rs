//! PreFilter (with preemption's AddPod/RemovePod) and Filter.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::*;
use crate::cache::equality;
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, NodeNames, PodInfo, PreFilterPlugin, Status,
};
use crate::plugins::helpers::parallel_chunks;

const PRE_FILTER_STATE_KEY: &str = "PreFilterInterPodAffinity";

/// What never changes during a cycle, shared by every fork preemption makes.
#[derive(Debug)]
struct Incoming {
    pod: Arc<Pod>,
    required_affinity: Vec<IncomingTerm>,
    required_anti_affinity: Vec<IncomingTerm>,
    /// The pod's namespace labels when PreFilter ran, for placed pods' namespaceSelectors.
    namespace_labels: Option<BTreeMap<String, String>>,
    /// The pod satisfies all of its own required affinity terms.
    matches_own_affinity: bool,
}

#[derive(Clone, Debug)]
pub(super) struct PreFilterState {
    /// Placed pods whose required anti-affinity selects the incoming pod.
    existing_anti_affinity: PairCounts,
    /// Placed pods matching all of the incoming pod's required affinity terms.
    affinity: PairCounts,
    /// Placed pods matching the incoming pod's required anti-affinity terms.
    anti_affinity: PairCounts,
    incoming: Arc<Incoming>,
}

impl PreFilterState {
    fn update_with_pod(&mut self, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if node.node.is_none() {
            return;
        }
        let labels = node.labels();
        let inc = &self.incoming;
        for t in &other.required_anti_affinity {
            if t.matches(&inc.pod, inc.namespace_labels.as_ref()) {
                self.existing_anti_affinity
                    .add(labels, &t.topology_key, delta);
            }
        }
        if matches_all(&inc.required_affinity, &other.pod) {
            for t in &inc.required_affinity {
                self.affinity.add(labels, &t.topology_key, delta);
            }
        }
        for t in &inc.required_anti_affinity {
            if t.matches(&other.pod) {
                self.anti_affinity.add(labels, &t.topology_key, delta);
            }
        }
    }

    fn satisfies_pod_affinity(&self, labels: &BTreeMap<String, String>) -> bool {
        let terms = &self.incoming.required_affinity;
        let mut pods_exist = true;
        for t in terms {
            // Every topology key must be on the node, whatever the counts say.
            let Some(value) = labels.get(&t.topology_key) else {
                return false;
            };
            if self.affinity.get(&t.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        // The first of a group of pods with affinity to each other has nothing to follow:
        // it may go anywhere when no pod matches at all and it matches its own terms.
        pods_exist || (self.affinity.is_empty() && self.incoming.matches_own_affinity)
    }

    fn satisfies_pod_anti_affinity(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.anti_affinity.is_empty() {
            return true;
        }
        !self.incoming.required_anti_affinity.iter().any(|t| {
            labels
                .get(&t.topology_key)
                .is_some_and(|v| self.anti_affinity.get(&t.topology_key, v) > 0)
        })
    }

    fn satisfies_existing_anti_affinity(&self, labels: &BTreeMap<String, String>) -> bool {
        // Any of the node's pairs with a positive count; walking the few keys counted is
        // cheaper than walking every label of the node.
        !self.existing_anti_affinity.0.iter().any(|(key, values)| {
            labels
                .get(key)
                .and_then(|v| values.get(v))
                .is_some_and(|&n| n > 0)
        })
    }
}

/// Builds the counts from the cluster; `None` when the pod has no required terms and no
/// placed pod's anti-affinity selects it (nothing to filter).
pub(super) fn compute(pod: &PodInfo, cluster: &Cluster) -> Option<PreFilterState> {
    let namespace_labels = cluster.namespace_labels(pod.namespace()).cloned();
    let required_affinity: Vec<IncomingTerm> = pod
        .required_affinity
        .iter()
        .map(|t| IncomingTerm::resolve(t, 0, cluster))
        .collect();
    let required_anti_affinity: Vec<IncomingTerm> = pod
        .required_anti_affinity
        .iter()
        .map(|t| IncomingTerm::resolve(t, 0, cluster))
        .collect();

    let has_own_terms = !required_affinity.is_empty() || !required_anti_affinity.is_empty();
    if !has_own_terms && cluster.pods_with_required_anti_affinity() == 0 {
        // Nothing placed can repel this pod and it asks for nothing itself.
        return None;
    }
    let walk = |nodes: &[Arc<NodeInfo>]| {
        let mut existing_anti_affinity = PairCounts::default();
        let mut affinity = PairCounts::default();
        let mut anti_affinity = PairCounts::default();
        for info in nodes {
            if info.node.is_none() {
                continue;
            }
            let labels = info.labels();
            for other in &info.pods_with_required_anti_affinity {
                for t in &other.required_anti_affinity {
                    if t.matches(&pod.pod, namespace_labels.as_ref()) {
                        existing_anti_affinity.add(labels, &t.topology_key, 1);
                    }
                }
            }
            if !has_own_terms {
                continue;
            }
            for other in &info.pods {
                if matches_all(&required_affinity, &other.pod) {
                    for t in &required_affinity {
                        affinity.add(labels, &t.topology_key, 1);
                    }
                }
                for t in &required_anti_affinity {
                    if t.matches(&other.pod) {
                        anti_affinity.add(labels, &t.topology_key, 1);
                    }
                }
            }
        }
        (existing_anti_affinity, affinity, anti_affinity)
    };
    let indexed = required_affinity
        .iter()
        .chain(&required_anti_affinity)
        .all(|t| equality(&t.selector).is_some());
    let (existing_anti_affinity, affinity, anti_affinity) = if indexed {
        // Every selector has an equality requirement: the cache's label indexes give the
        // few pods that can match instead of a pass over every placed pod.
        count_indexed(
            pod,
            cluster,
            &required_affinity,
            &required_anti_affinity,
            namespace_labels.as_ref(),
        )
    } else {
        let nodes = cluster.nodes();
        let cost = nodes.len()
            + if has_own_terms {
                cluster.pod_count()
            } else {
                0
            };
        let mut parts = parallel_chunks(nodes, cost, MIN_COST_PER_THREAD, walk).into_iter();
        let (mut e, mut a, mut n) = parts.next().unwrap_or_default();
        for (pe, pa, pn) in parts {
            e.merge(pe);
            a.merge(pa);
            n.merge(pn);
        }
        (e, a, n)
    };

    if existing_anti_affinity.is_empty() && !has_own_terms {
        return None;
    }
    let matches_own_affinity = matches_all(&required_affinity, &pod.pod);
    Some(PreFilterState {
        existing_anti_affinity,
        affinity,
        anti_affinity,
        incoming: Arc::new(Incoming {
            pod: pod.pod.clone(),
            required_affinity,
            required_anti_affinity,
            namespace_labels,
            matches_own_affinity,
        }),
    })
}

/// The three counts from the cache's label indexes (see `compute`).
fn count_indexed(
    pod: &PodInfo,
    cluster: &Cluster,
    required_affinity: &[IncomingTerm],
    required_anti_affinity: &[IncomingTerm],
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> (PairCounts, PairCounts, PairCounts) {
    let mut existing_anti_affinity = PairCounts::default();
    let mut affinity = PairCounts::default();
    let mut anti_affinity = PairCounts::default();
    for (node, other) in cluster.anti_affinity_candidates(pod.labels()) {
        if node.node.is_none() {
            continue;
        }
        for t in &other.required_anti_affinity {
            if t.matches(&pod.pod, namespace_labels) {
                existing_anti_affinity.add(node.labels(), &t.topology_key, 1);
            }
        }
    }
    if let Some((k, v)) = required_affinity
        .first()
        .and_then(|t| equality(&t.selector))
    {
        for (node, other) in cluster.pods_labelled(k, v) {
            if node.node.is_some() && matches_all(required_affinity, &other.pod) {
                for t in required_affinity {
                    affinity.add(node.labels(), &t.topology_key, 1);
                }
            }
        }
    }
    for t in required_anti_affinity {
        let Some((k, v)) = equality(&t.selector) else {
            continue;
        };
        for (node, other) in cluster.pods_labelled(k, v) {
            if node.node.is_some() && t.matches(&other.pod) {
                anti_affinity.add(node.labels(), &t.topology_key, 1);
            }
        }
    }
    (existing_anti_affinity, affinity, anti_affinity)
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
    ) -> (Status, NodeNames) {
        match compute(pod, cluster) {
            Some(s) => {
                state.write(PRE_FILTER_STATE_KEY, s);
                (Status::success(), None)
            }
            None => (Status::skip(), None),
        }
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
        _cluster: &Cluster,
    ) -> Status {
        // No state: PreFilter skipped this pod, and the framework skips us for it too.
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_STATE_KEY) {
            s.update_with_pod(other, node, 1);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
        _cluster: &Cluster,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_STATE_KEY) {
            s.update_with_pod(other, node, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
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
        if !s.satisfies_pod_affinity(labels) {
            return Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !s.satisfies_pod_anti_affinity(labels) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if !s.satisfies_existing_anti_affinity(labels) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::success()
    }
}
