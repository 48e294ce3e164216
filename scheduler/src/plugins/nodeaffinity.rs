//! NodeAffinity: a pod's `nodeSelector` and required node affinity must match the node, and
//! its preferred node affinity terms score nodes. The profile may add its own affinity
//! (`NodeAffinityArgs.addedAffinity`) that every pod of the profile gets on top of its own.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::anyhow;
use ferrokube_common::labels::{Operator, Requirement};
use k8s_openapi::api::core::v1::{Node, NodeSelector, NodeSelectorTerm, PreferredSchedulingTerm};
use serde::Deserialize;

use super::helpers::{
    default_normalize_score, node_selector_matches, pod_requires_node, term_matches,
};
use super::{PluginContext, Registered};
use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, NodeNames, Plugin, PodInfo, PreFilterPlugin,
    PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "NodeAffinity";

pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeAffinity";

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeAffinityArgs {
    #[serde(default)]
    added_affinity: Option<k8s_openapi::api::core::v1::NodeAffinity>,
}

pub struct NodeAffinity {
    /// The profile's required affinity; `Some` with no terms matches no node, as upstream.
    added_node_selector: Option<NodeSelector>,
    /// The profile's preferred terms (only those that can score), `None` when it has none.
    added_preferred: Option<Vec<PreferredSchedulingTerm>>,
}

/// The pod's preferred terms that can score: upstream drops zero weights and empty terms.
#[derive(Clone)]
struct PreScoreState {
    preferred: Option<Vec<PreferredSchedulingTerm>>,
}

fn events() -> Vec<ClusterEvent> {
    vec![ClusterEvent::new(
        EventResource::Node,
        ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
    )]
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        events()
    }
}

fn required_affinity(pod: &PodInfo) -> Option<&NodeSelector> {
    pod.pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

fn preferred_affinity(pod: &PodInfo) -> Option<&Vec<PreferredSchedulingTerm>> {
    pod.pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
}

fn is_empty_term(term: &NodeSelectorTerm) -> bool {
    term.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && term.match_fields.as_ref().is_none_or(Vec::is_empty)
}

fn scoring_terms(terms: &[PreferredSchedulingTerm]) -> Vec<PreferredSchedulingTerm> {
    terms
        .iter()
        .filter(|t| t.weight != 0 && !is_empty_term(&t.preference))
        .cloned()
        .collect()
}

fn node_labels(node: &Node) -> &std::collections::BTreeMap<String, String> {
    static EMPTY: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn preferred_score(terms: &[PreferredSchedulingTerm], node: &Node) -> i64 {
    let labels = node_labels(node);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    terms
        .iter()
        .filter(|t| term_matches(&t.preference, labels, name))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// The node names the required terms pin the pod to with `matchFields metadata.name In`:
/// `None` when some term does not pin (terms are ORed, so every node may match), an empty
/// set when every term pins to nothing.
fn pinned_node_names(required: &NodeSelector) -> Option<HashSet<String>> {
    let mut union: Option<HashSet<String>> = None;
    for term in &required.node_selector_terms {
        let mut term_names: Option<HashSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key != "metadata.name" || r.operator != "In" {
                continue;
            }
            // Requirements within a term are ANDed.
            let names: HashSet<String> = r.values.iter().flatten().cloned().collect();
            term_names = Some(match term_names {
                None => names,
                Some(prev) => prev.intersection(&names).cloned().collect(),
            });
        }
        let names = term_names?;
        union.get_or_insert_with(HashSet::new).extend(names);
    }
    union
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _cluster: &Cluster,
    ) -> (Status, NodeNames) {
        let required = required_affinity(pod);
        let has_selector = pod
            .pod
            .spec
            .as_ref()
            .is_some_and(|s| s.node_selector.is_some());
        if required.is_none() && self.added_node_selector.is_none() && !has_selector {
            return (Status::skip(), None);
        }
        let Some(required) = required.filter(|r| !r.node_selector_terms.is_empty()) else {
            return (Status::success(), None);
        };
        match pinned_node_names(required) {
            Some(names) if names.is_empty() => (Status::unresolvable(ERR_REASON_CONFLICT), None),
            Some(names) => (Status::success(), Some(names)),
            None => (Status::success(), None),
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = node.node.as_ref() else {
            return Status::error("node not found");
        };
        if let Some(sel) = &self.added_node_selector {
            let name = n.metadata.name.as_deref().unwrap_or_default();
            if !node_selector_matches(sel, node_labels(n), name) {
                return Status::unresolvable(ERR_REASON_ENFORCED);
            }
        }
        if !pod_requires_node(&pod.pod, n) {
            return Status::unresolvable(ERR_REASON_POD);
        }
        Status::success()
    }
}

/// The pod's preferred terms, or the parse error upstream reports for them.
fn pod_preferred(pod: &PodInfo) -> Result<Option<Vec<PreferredSchedulingTerm>>, Status> {
    let Some(terms) = preferred_affinity(pod) else {
        return Ok(None);
    };
    let mut errs = Vec::new();
    validate_preferred(terms, "", &mut errs);
    match aggregate(errs) {
        Some(msg) => Err(Status::error(msg)),
        None => Ok(Some(scoring_terms(terms))),
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _cluster: &Cluster,
    ) -> Status {
        let preferred = match pod_preferred(pod) {
            Ok(p) => p,
            Err(s) => return s,
        };
        if preferred.is_none() && self.added_preferred.is_none() {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PreScoreState { preferred });
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(n) = node.node.as_ref() else {
            return Err(Status::error(format!(
                "getting node {:?} from Snapshot: not found",
                node.name
            )));
        };
        let mut count = 0;
        if let Some(terms) = &self.added_preferred {
            count += preferred_score(terms, n);
        }
        // Without PreScore (disabled in the profile) the terms are computed here.
        let computed;
        let preferred = match state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) {
            Some(s) => &s.preferred,
            None => {
                computed = pod_preferred(pod)?;
                &computed
            }
        };
        if let Some(terms) = preferred {
            count += preferred_score(terms, n);
        }
        Ok(count)
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

// --- Parsing checks, with upstream's field paths and wording -------------------------------

const LABEL_OPERATORS: &str = r#""In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt""#;
const FIELD_OPERATORS: &str = r#""In", "NotIn""#;

/// Go's `%#v` of a `[]string`, as field errors print values.
fn go_strings(values: Option<&Vec<String>>) -> String {
    match values {
        None => "[]string(nil)".to_string(),
        Some(v) => format!(
            "[]string{{{}}}",
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn label_operator(op: &str) -> Option<Operator> {
    Some(match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    })
}

/// Puts `path.` in front of each error of a (possibly aggregated) requirement error, whose
/// own errors name only the field (`key: …`, `values: …`, `values[0]…`).
fn prefix_requirement_errors(msg: &str, path: &str, out: &mut Vec<String>) {
    let Some(inner) = msg.strip_prefix('[').and_then(|m| m.strip_suffix(']')) else {
        out.push(format!("{path}.{msg}"));
        return;
    };
    let mut start = 0;
    let mut i = 0;
    while let Some(pos) = inner[i..].find(", ") {
        let at = i + pos;
        let rest = &inner[at + 2..];
        // A new error starts with a bare field name (`values[0][k]`); a value that merely
        // contains ", values" is inside quotes.
        let field = rest.split(": ").next().unwrap_or_default();
        let starts_error =
            (field == "key" || field.starts_with("values")) && !field.contains([' ', '"']);
        if starts_error {
            out.push(format!("{path}.{}", &inner[start..at]));
            start = at + 2;
        }
        i = at + 2;
    }
    out.push(format!("{path}.{}", &inner[start..]));
}

fn validate_term(term: &NodeSelectorTerm, path: &str, errs: &mut Vec<String>) {
    for (i, r) in term.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let Some(op) = label_operator(&r.operator) else {
            errs.push(format!(
                "{p}.operator: Unsupported value: {:?}: supported values: {LABEL_OPERATORS}",
                r.operator
            ));
            continue;
        };
        let values = r.values.clone().unwrap_or_default();
        if let Err(e) = Requirement::new(r.key.clone(), op, values) {
            prefix_requirement_errors(e.message(), &p, errs);
        }
    }
    for (i, r) in term.match_fields.iter().flatten().enumerate() {
        let p = format!("{path}.matchFields[{i}]");
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if r.values.as_ref().is_none_or(|v| v.len() != 1) {
                    errs.push(format!(
                        "{p}.values: Invalid value: {}: must have one element",
                        go_strings(r.values.as_ref())
                    ));
                }
            }
            op => errs.push(format!(
                "{p}.operator: Unsupported value: {op:?}: supported values: {FIELD_OPERATORS}"
            )),
        }
    }
}

fn validate_required(sel: &NodeSelector, path: &str, errs: &mut Vec<String>) {
    for (i, term) in sel.node_selector_terms.iter().enumerate() {
        if !is_empty_term(term) {
            validate_term(term, &format!("{path}.nodeSelectorTerms[{i}]"), errs);
        }
    }
}

fn validate_preferred(terms: &[PreferredSchedulingTerm], path: &str, errs: &mut Vec<String>) {
    for (i, term) in terms.iter().enumerate() {
        if term.weight != 0 && !is_empty_term(&term.preference) {
            validate_term(&term.preference, &format!("{path}[{i}]"), errs);
        }
    }
}

/// Upstream's flattened aggregate: one error bare, several in brackets, duplicates dropped.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen = HashSet::new();
    let unique: Vec<String> = errs
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    match unique.len() {
        0 => None,
        1 => unique.into_iter().next(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

fn parse_args(args: &serde_json::Value) -> anyhow::Result<NodeAffinityArgs> {
    match args {
        serde_json::Value::Null => Ok(NodeAffinityArgs::default()),
        serde_json::Value::Object(_) => serde_json::from_value(args.clone())
            .map_err(|e| anyhow!("decoding NodeAffinityArgs: {e}")),
        other => Err(anyhow!(
            "args are not of type NodeAffinityArgs, got {other}"
        )),
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    build(args)
}

fn build(args: &serde_json::Value) -> anyhow::Result<Registered> {
    let args = parse_args(args)?;
    let mut plugin = NodeAffinity {
        added_node_selector: None,
        added_preferred: None,
    };
    if let Some(added) = args.added_affinity {
        let mut errs = Vec::new();
        if let Some(sel) = &added.required_during_scheduling_ignored_during_execution {
            validate_required(
                sel,
                "addedAffinity.requiredDuringSchedulingIgnoredDuringExecution",
                &mut errs,
            );
        }
        let preferred = added
            .preferred_during_scheduling_ignored_during_execution
            .unwrap_or_default();
        validate_preferred(
            &preferred,
            "addedAffinity.preferredDuringSchedulingIgnoredDuringExecution",
            &mut errs,
        );
        if let Some(msg) = aggregate(errs) {
            return Err(anyhow!(msg));
        }
        plugin.added_node_selector = added.required_during_scheduling_ignored_during_execution;
        if !preferred.is_empty() {
            plugin.added_preferred = Some(scoring_terms(&preferred));
        }
    }
    let plugin = Arc::new(plugin);
    Ok(Registered {
        pre_filter: Some(plugin.clone()),
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

    fn plugin(args: serde_json::Value) -> NodeAffinity {
        let args = parse_args(&args).unwrap();
        let added = args.added_affinity.unwrap_or_default();
        NodeAffinity {
            added_node_selector: added.required_during_scheduling_ignored_during_execution,
            added_preferred: added
                .preferred_during_scheduling_ignored_during_execution
                .filter(|t| !t.is_empty())
                .map(|t| scoring_terms(&t)),
        }
    }

    fn pod(spec: serde_json::Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([]);
        PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap(),
        ))
    }

    fn node(name: &str, labels: serde_json::Value) -> Arc<NodeInfo> {
        let mut info = NodeInfo::new(name);
        info.set_node(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        ));
        Arc::new(info)
    }

    fn required(terms: serde_json::Value) -> serde_json::Value {
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}})
    }

    fn name_in(names: &[&str]) -> serde_json::Value {
        json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": names}]})
    }

    fn pre_filter(pl: &NodeAffinity, p: &PodInfo) -> (Status, NodeNames) {
        pl.pre_filter(&mut CycleState::default(), p, &Cluster::default())
    }

    #[test]
    fn pre_filter_skips_pods_without_requirements() {
        let pl = plugin(json!(null));
        let (s, names) = pre_filter(&pl, &pod(json!({})));
        assert!(s.is_skip());
        assert!(names.is_none());
        // A preferred-only addedAffinity does not filter either.
        let pl = plugin(
            json!({"addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]}}),
        );
        assert!(pre_filter(&pl, &pod(json!({}))).0.is_skip());
        // A required addedAffinity does.
        let pl = plugin(
            json!({"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}}),
        );
        assert!(pre_filter(&pl, &pod(json!({}))).0.is_success());
        let pl = plugin(json!(null));
        let p = pod(json!({"nodeSelector": {"zone": "a"}}));
        assert!(pre_filter(&pl, &p).0.is_success());
    }

    #[test]
    fn pre_filter_narrows_to_pinned_node_names() {
        let pl = plugin(json!(null));
        let p = pod(json!({"affinity": required(json!([name_in(&["n1"]), name_in(&["n2"])]))}));
        let (s, names) = pre_filter(&pl, &p);
        assert!(s.is_success());
        let want: HashSet<String> = ["n1", "n2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(names, Some(want));

        // Requirements in one term intersect.
        let p = pod(json!({"affinity": required(json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]},
            {"key": "metadata.name", "operator": "In", "values": ["n2", "n3"]}]}]))}));
        let (_, names) = pre_filter(&pl, &p);
        assert_eq!(names, Some(HashSet::from(["n2".to_string()])));

        // A term that does not pin lets every node through.
        let p = pod(json!({"affinity": required(json!([name_in(&["n1"]),
            {"matchExpressions": [{"key": "a", "operator": "Exists"}]}]))}));
        let (s, names) = pre_filter(&pl, &p);
        assert!(s.is_success());
        assert!(names.is_none());

        // Every term pins to nothing: a conflict.
        let p = pod(json!({"affinity": required(json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]},
            {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]))}));
        let (s, names) = pre_filter(&pl, &p);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec![ERR_REASON_CONFLICT]);
        assert!(names.is_none());
    }

    #[test]
    fn filter_checks_selector_affinity_and_added_affinity() {
        let st = CycleState::default();
        let pl = plugin(json!(null));
        let zone_a = node("n1", json!({"zone": "a"}));
        let zone_b = node("n2", json!({"zone": "b"}));
        let p = pod(json!({"nodeSelector": {"zone": "a"}}));
        assert!(pl.filter(&st, &p, &zone_a).is_success());
        let s = pl.filter(&st, &p, &zone_b);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec![ERR_REASON_POD]);

        let p = pod(json!({"affinity": required(json!([{"matchExpressions": [
            {"key": "zone", "operator": "NotIn", "values": ["a"]}]}]))}));
        assert!(!pl.filter(&st, &p, &zone_a).is_success());
        assert!(pl.filter(&st, &p, &zone_b).is_success());

        let pl = plugin(
            json!({"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}),
        );
        let p = pod(json!({}));
        let s = pl.filter(&st, &p, &zone_a);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec![ERR_REASON_ENFORCED]);
        assert!(pl.filter(&st, &p, &zone_b).is_success());
        // Both must hold.
        let p = pod(json!({"nodeSelector": {"zone": "a"}}));
        assert!(!pl.filter(&st, &p, &zone_b).is_success());
    }

    fn scores(pl: &NodeAffinity, p: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Option<Vec<i64>> {
        let mut st = CycleState::default();
        let s = pl.pre_score(&mut st, p, nodes, &Cluster::default());
        if s.is_skip() {
            return None;
        }
        assert!(s.is_success());
        let mut out: Vec<i64> = nodes.iter().map(|n| pl.score(&st, p, n).unwrap()).collect();
        assert!(pl.normalize(&st, p, &mut out).is_success());
        Some(out)
    }

    #[test]
    fn score_sums_matching_preferred_weights_and_normalizes() {
        let nodes = vec![
            node("n1", json!({"zone": "a", "disk": "ssd"})),
            node("n2", json!({"zone": "a"})),
            node("n3", json!({})),
        ];
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 6, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
                {"weight": 50, "preference": {}}
            ]}}}),
        );
        let pl = plugin(json!(null));
        let st = {
            let mut st = CycleState::default();
            assert!(pl
                .pre_score(&mut st, &p, &nodes, &Cluster::default())
                .is_success());
            st
        };
        assert_eq!(pl.score(&st, &p, &nodes[0]).unwrap(), 8);
        assert_eq!(pl.score(&st, &p, &nodes[1]).unwrap(), 2);
        assert_eq!(pl.score(&st, &p, &nodes[2]).unwrap(), 0);
        assert_eq!(scores(&pl, &p, &nodes), Some(vec![100, 25, 0]));

        // Added preferred terms score on top of the pod's.
        let pl = plugin(
            json!({"addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 8, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}}]}}),
        );
        assert_eq!(scores(&pl, &p, &nodes), Some(vec![100, 25, 100]));
        assert_eq!(scores(&pl, &pod(json!({})), &nodes), Some(vec![0, 0, 100]));
    }

    #[test]
    fn pre_score_skips_without_preferred_terms() {
        let nodes = vec![node("n1", json!({}))];
        assert_eq!(scores(&plugin(json!(null)), &pod(json!({})), &nodes), None);
    }

    #[test]
    fn invalid_pod_preferred_terms_are_an_error() {
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}]}}}),
        );
        let s =
            plugin(json!(null)).pre_score(&mut CycleState::default(), &p, &[], &Cluster::default());
        assert_eq!(s.code, Code::Error);
        assert_eq!(
            s.reasons,
            vec![format!(
                "[0].matchExpressions[0].operator: Unsupported value: \"Bogus\": supported values: {LABEL_OPERATORS}"
            )]
        );
    }

    #[test]
    fn args_validation_uses_upstream_paths() {
        let err = build(&json!({"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}]}}}))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "addedAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values: Invalid value: []string{\"a\", \"b\"}: must have one element"
        );

        let err = build(&json!({"addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            {"weight": 1, "preference": {"matchFields": [{"key": "metadata.name", "operator": "Exists"}]}}]}}))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "[addedAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].matchExpressions[0].values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty, \
             addedAffinity.preferredDuringSchedulingIgnoredDuringExecution[1].matchFields[0].operator: Unsupported value: \"Exists\": supported values: \"In\", \"NotIn\"]"
        );

        // Zero weights and empty terms are not parsed, as upstream.
        assert!(build(&json!({"addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 0, "preference": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}]}}))
        .is_ok());
        assert!(build(&json!(null)).is_ok());
        assert!(build(&json!("nope")).is_err());
    }

    #[test]
    fn requirement_errors_get_the_path_each() {
        let mut out = Vec::new();
        prefix_requirement_errors(
            "[key: Invalid value: \"a b\": bad, values[0][k]: Invalid value: \"x, values\": bad]",
            "p",
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                "p.key: Invalid value: \"a b\": bad",
                "p.values[0][k]: Invalid value: \"x, values\": bad"
            ]
        );
    }

    #[test]
    fn registers_every_point_and_node_label_events() {
        let r = build(&json!(null)).unwrap();
        assert!(r.pre_filter.is_some() && r.filter.is_some());
        assert!(r.pre_score.is_some() && r.score.is_some());
        let label = ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_LABEL);
        let taint = ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_TAINT);
        assert!(r.events.iter().any(|e| e.covers(&label)));
        assert!(!r.events.iter().any(|e| e.covers(&taint)));
    }
}
