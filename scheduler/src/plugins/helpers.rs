//! Matching rules several plugins share: node selectors and node affinity terms against a
//! node, and tolerations against taints, with upstream's semantics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

/// A node selector requirement against labels (`matchExpressions`) or fields
/// (`matchFields`, where only `metadata.name` exists).
fn requirement_matches(
    req: &NodeSelectorRequirement,
    get: &dyn Fn(&str) -> Option<String>,
) -> bool {
    let value = get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value, values.first()) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A term matches when all its requirements do; a term with none matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let label = |k: &str| labels.get(k).cloned();
    let field = |k: &str| (k == "metadata.name").then(|| node_name.to_string());
    exprs.iter().all(|r| requirement_matches(r, &label))
        && fields.iter().all(|r| requirement_matches(r, &field))
}

/// A NodeSelector matches when any of its terms does.
pub fn node_selector_matches(
    sel: &NodeSelector,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, node_name))
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// The pod's `nodeSelector` and required node affinity both accept the node (upstream's
/// `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn pod_requires_node(pod: &Pod, node: &Node) -> bool {
    let labels = node_labels(node);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|sel| node_selector_matches(sel, labels, name))
}

/// Whether one toleration tolerates one taint (upstream's `Toleration.ToleratesTaint`):
/// an empty effect matches every effect, an empty key with `Exists` every key.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// The first taint among `taints` (restricted to those `relevant` selects) that no toleration
/// tolerates.
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    relevant: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| relevant(t))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// The node's taints.
pub fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The pod's tolerations.
pub fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// Upstream's `helper.DefaultNormalizeScore`: scales raw scores so the highest becomes
/// `max_priority` (integer division, as upstream). With `reverse`, the scale is flipped so
/// the highest raw score gets 0. When every score is 0 they stay 0, or all become
/// `max_priority` when reversed (no node is worse than another).
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max_count = scores.iter().copied().fold(0, i64::max);
    if max_count == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = max_priority * *s / max_count;
        *s = if reverse {
            max_priority - scaled
        } else {
            scaled
        };
    }
}

/// Worker threads for splitting a cycle's walk over all nodes, like upstream's
/// parallelizer: the machine's parallelism, capped at upstream's default of 16. Read once;
/// on Linux finding it out reads cgroup files.
fn cycle_parallelism() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(16)
    })
}

/// Runs `work` on contiguous chunks of `items`, on scoped threads when the whole job
/// (`cost`, in any unit, e.g. nodes plus pods visited) gives each thread at least
/// `min_cost_per_thread`, so cheap walks don't pay for threads; returns the chunks' results
/// in order. A panic in a worker is re-raised on the caller.
pub fn parallel_chunks<T: Sync, R: Send>(
    items: &[T],
    cost: usize,
    min_cost_per_thread: usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let threads = cycle_parallelism()
        .min(cost / min_cost_per_thread.max(1))
        .min(items.len());
    if threads <= 1 {
        return vec![work(items)];
    }
    let size = items.len().div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(size);
        let first = chunks.next().unwrap_or_default();
        let spawned: Vec<_> = chunks.map(|c| scope.spawn(move || work(c))).collect();
        let mut out = Vec::with_capacity(spawned.len() + 1);
        out.push(work(first));
        for handle in spawned {
            let result = handle.join();
            out.push(result.unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_normalize_score_scales_and_reverses() {
        let mut s = [10, 5, 0, 3];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, [100, 50, 0, 30]);
        let mut s = [10, 5, 0, 3];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, [0, 50, 100, 70]);
        let mut s = [0, 0];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, [100, 100]);
        let mut s = [0, 0];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, [0, 0]);
        // Integer division, as upstream: 100 * 1 / 3 = 33.
        let mut s = [3, 1];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, [100, 33]);
    }

    #[test]
    fn parallel_chunks_covers_every_item_in_order() {
        let items: Vec<usize> = (0..1000).collect();
        for min in [1, 10, 400, 2000] {
            let parts = parallel_chunks(&items, 1000, min, |c| c.to_vec());
            assert_eq!(parts.concat(), items);
            if min > 1000 {
                assert_eq!(parts.len(), 1);
            }
        }
        let empty: [usize; 0] = [];
        assert_eq!(parallel_chunks(&empty, 100, 1, |c| c.len()), vec![0]);
    }

    fn node(labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}})).unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn node_selector_and_required_affinity_both_apply() {
        let n = node(json!({"zone": "a", "gen": "5"}));
        let p = pod(json!({"containers": [], "nodeSelector": {"zone": "a"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}]}}}}));
        assert!(pod_requires_node(&p, &n));
        let p = pod(json!({"containers": [], "nodeSelector": {"zone": "b"}}));
        assert!(!pod_requires_node(&p, &n));
        let p = pod(json!({"containers": [],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}));
        assert!(!pod_requires_node(&p, &n));
    }

    #[test]
    fn toleration_rules() {
        let taint: Taint =
            serde_json::from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"}))
                .unwrap();
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &taint));
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
    }
}
