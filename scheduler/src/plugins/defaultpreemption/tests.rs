use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use super::evaluator::{split_by_pdb, Attempt, Budget, Candidate};
use super::*;
use crate::cache::{pod_info, Cluster};
use crate::framework::{
    Code, CycleState, FilterPlugin, Framework, NodeInfo, NodeNames, NodeStatuses, Plugin, PodInfo,
    PreFilterPlugin, Status,
};

// ---- fixtures -------------------------------------------------------------------------

fn node(name: &str, cpu: &str) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"}}
        }))
        .unwrap(),
    )
}

/// A pod requesting `cpu`, bound to `node` unless it is empty, started at `started`
/// seconds past the epoch unless it is `None`.
fn pod_json(name: &str, node: &str, priority: i32, cpu: &str, started: Option<i64>) -> Value {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {
            "priority": priority,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]
        },
        "status": {}
    });
    if !node.is_empty() {
        v["spec"]["nodeName"] = json!(node);
    }
    if let Some(s) = started {
        v["status"]["startTime"] = json!(format!("1970-01-01T00:00:{:02}Z", s));
    }
    v
}

fn pod(v: Value) -> Arc<PodInfo> {
    pod_info(serde_json::from_value::<Pod>(v).unwrap())
}

fn bound(name: &str, node: &str, priority: i32, cpu: &str, started: i64) -> Arc<PodInfo> {
    pod(pod_json(name, node, priority, cpu, Some(started)))
}

fn preemptor(priority: i32, cpu: &str) -> Arc<PodInfo> {
    pod(pod_json("preemptor", "", priority, cpu, None))
}

fn pdb(name: &str, match_labels: Value, allowed: i32) -> Arc<PodDisruptionBudget> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": match_labels}},
            "status": {
                "disruptionsAllowed": allowed, "currentHealthy": 0, "desiredHealthy": 0,
                "expectedPods": 0
            }
        }))
        .unwrap(),
    )
}

fn cluster(nodes: &[(&str, &str)], pods: &[Arc<PodInfo>]) -> Cluster {
    let mut c = Cluster::default();
    for (name, cpu) in nodes {
        c.upsert_node(node(name, cpu));
    }
    for p in pods {
        c.upsert_bound_pod(p.clone());
    }
    c
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

// ---- test plugins ---------------------------------------------------------------------

/// A bare CPU fit check, standing in for NodeResourcesFit.
struct CpuFit;

impl Plugin for CpuFit {
    fn name(&self) -> &'static str {
        "CpuFit"
    }
}

impl FilterPlugin for CpuFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if node.requested.milli_cpu + pod.requests.milli_cpu > node.allocatable.milli_cpu {
            return Status::unschedulable("Insufficient cpu");
        }
        Status::success()
    }
}

/// A pod labelled `avoid` may not share a node with pods labelled `conflict`; the count of
/// those per node lives in the cycle state, so the plugin only sees removals through
/// `remove_pod`, as InterPodAffinity does.
struct Conflict;

#[derive(Clone, Default)]
struct ConflictState(HashMap<String, usize>);

fn is_conflicting(p: &PodInfo) -> bool {
    p.labels().contains_key("conflict")
}

impl Plugin for Conflict {
    fn name(&self) -> &'static str {
        "Conflict"
    }
}

impl PreFilterPlugin for Conflict {
    fn pre_filter(&self, state: &mut CycleState, _: &PodInfo, c: &Cluster) -> (Status, NodeNames) {
        let mut counts = ConflictState::default();
        for n in c.nodes() {
            let k = n.pods.iter().filter(|p| is_conflicting(p)).count();
            counts.0.insert(n.name.clone(), k);
        }
        state.write("Conflict", counts);
        (Status::success(), None)
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
        _: &Cluster,
    ) -> Status {
        if let Some(s) = state.read_mut::<ConflictState>("Conflict") {
            if is_conflicting(other) {
                *s.0.entry(node.name.clone()).or_default() += 1;
            }
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
        _: &Cluster,
    ) -> Status {
        if let Some(s) = state.read_mut::<ConflictState>("Conflict") {
            if is_conflicting(other) {
                *s.0.entry(node.name.clone()).or_default() -= 1;
            }
        }
        Status::success()
    }
}

impl FilterPlugin for Conflict {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let n = state
            .read::<ConflictState>("Conflict")
            .and_then(|s| s.0.get(&node.name).copied())
            .unwrap_or(0);
        if pod.labels().contains_key("avoid") && n > 0 {
            return Status::unschedulable("node(s) had conflicting pods");
        }
        Status::success()
    }
}

/// A PreFilter whose preemption hooks fail.
struct Broken;

impl Plugin for Broken {
    fn name(&self) -> &'static str {
        "Broken"
    }
}

impl PreFilterPlugin for Broken {
    fn pre_filter(&self, _: &mut CycleState, _: &PodInfo, _: &Cluster) -> (Status, NodeNames) {
        (Status::success(), None)
    }

    fn remove_pod(
        &self,
        _: &mut CycleState,
        _: &PodInfo,
        _: &Arc<PodInfo>,
        _: &NodeInfo,
        _: &Cluster,
    ) -> Status {
        Status::error("boom")
    }
}

fn cpu_framework() -> Framework {
    Framework {
        filter: vec![Arc::new(CpuFit)],
        ..Default::default()
    }
}

fn conflict_framework() -> Framework {
    let conflict = Arc::new(Conflict);
    Framework {
        pre_filter: vec![conflict.clone()],
        filter: vec![Arc::new(CpuFit), conflict],
        ..Default::default()
    }
}

/// What the scheduling loop hands PostFilter: the cycle state after PreFilter and the
/// Filter status of every node.
fn filtered(fw: &Framework, c: &Cluster, p: &PodInfo) -> (CycleState, NodeStatuses) {
    let mut state = CycleState::default();
    let (s, _) = fw.run_pre_filter(&mut state, p, c);
    assert!(s.is_success(), "{s}");
    let mut statuses = NodeStatuses::new();
    for n in c.nodes() {
        let s = fw.run_filter_with_nominated(&state, p, n, c.nominated_on(&n.name), c);
        if !s.is_success() {
            statuses.insert(n.name.clone(), s);
        }
    }
    (state, statuses)
}

fn preempt_with(
    fw: &Framework,
    c: &Cluster,
    p: &PodInfo,
    args: &DefaultPreemptionArgs,
    offset: usize,
) -> (Status, PostFilterResult) {
    let (state, statuses) = filtered(fw, c, p);
    Attempt::new(fw, c, p).preempt(&state, &statuses, args, |_| offset)
}

fn preempt(fw: &Framework, c: &Cluster, p: &PodInfo) -> (Status, PostFilterResult) {
    preempt_with(fw, c, p, &DefaultPreemptionArgs::default(), 0)
}

// ---- victim selection -----------------------------------------------------------------

#[test]
fn evicts_only_what_the_preemptor_needs() {
    let c = cluster(
        &[("n1", "4")],
        &[
            bound("low1", "n1", 1, "1", 1),
            bound("low2", "n1", 2, "2", 1),
            bound("high", "n1", 100, "1", 1),
        ],
    );
    let (s, r) = preempt(&cpu_framework(), &c, &preemptor(50, "2"));
    assert!(s.is_success(), "{s}");
    assert_eq!(r.nominated_node.as_deref(), Some("n1"));
    // low2 is tried back first (higher priority) and does not fit; low1 does.
    assert_eq!(names(&r.victims), ["low2"]);
}

#[test]
fn victims_are_ordered_most_important_first() {
    let c = cluster(
        &[("n1", "3")],
        &[
            bound("a", "n1", 1, "1", 1),
            bound("b", "n1", 3, "1", 1),
            bound("c", "n1", 2, "1", 1),
        ],
    );
    let (s, r) = preempt(&cpu_framework(), &c, &preemptor(10, "3"));
    assert!(s.is_success(), "{s}");
    assert_eq!(names(&r.victims), ["b", "c", "a"]);
}

#[test]
fn equal_priority_older_pods_are_reprieved_first() {
    let c = cluster(
        &[("n1", "2")],
        &[
            bound("young", "n1", 1, "1", 30),
            bound("old", "n1", 1, "1", 10),
        ],
    );
    let (s, r) = preempt(&cpu_framework(), &c, &preemptor(10, "1"));
    assert!(s.is_success(), "{s}");
    assert_eq!(names(&r.victims), ["young"]);
}

#[test]
fn pdb_protected_pods_are_reprieved_first() {
    let mut a = pod_json("a", "n1", 1, "1", Some(30));
    a["metadata"]["labels"] = json!({"app": "a"});
    let mut b = pod_json("b", "n1", 1, "1", Some(10));
    b["metadata"]["labels"] = json!({"app": "b"});
    let mut c = cluster(&[("n1", "2")], &[pod(a), pod(b)]);
    let fw = cpu_framework();

    // Without a budget the older pod b is more important and kept.
    let (s, r) = preempt(&fw, &c, &preemptor(10, "1"));
    assert!(s.is_success(), "{s}");
    assert_eq!(names(&r.victims), ["a"]);

    // A budget that allows no disruption of a makes it the one to keep.
    c.pdbs
        .insert("default/pa".into(), pdb("pa", json!({"app": "a"}), 0));
    let (s, r) = preempt(&fw, &c, &preemptor(10, "1"));
    assert!(s.is_success(), "{s}");
    assert_eq!(names(&r.victims), ["b"]);
}

#[test]
fn pdb_violations_are_counted() {
    let mut v = pod_json("a", "n1", 1, "2", Some(1));
    v["metadata"]["labels"] = json!({"app": "a"});
    let mut c = cluster(&[("n1", "2")], &[pod(v)]);
    c.pdbs
        .insert("default/pa".into(), pdb("pa", json!({"app": "a"}), 0));
    let fw = cpu_framework();
    let p = preemptor(10, "2");
    let (state, _) = filtered(&fw, &c, &p);
    let budgets: Vec<Budget> = c
        .pdbs
        .values()
        .filter_map(|p| Budget::from_pdb(p))
        .collect();
    let n1 = c.node("n1").unwrap();
    let (victims, violations) = Attempt::new(&fw, &c, &p)
        .select_victims(&state, n1, &budgets)
        .unwrap();
    assert_eq!(victims.len(), 1);
    assert_eq!(violations, 1);
}

#[test]
fn split_by_pdb_draws_budgets_down() {
    let labelled = |name: &str, ns: &str, labels: Value| {
        let mut v = pod_json(name, "n1", 1, "1", Some(1));
        v["metadata"]["namespace"] = json!(ns);
        v["metadata"]["labels"] = labels;
        pod(v)
    };
    let mut budget = (*pdb("p", json!({"app": "x"}), 1)).clone();
    budget
        .status
        .as_mut()
        .unwrap()
        .disrupted_pods
        .get_or_insert_with(Default::default)
        .insert(
            "gone".into(),
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        );
    let everything = (*pdb("all", json!({}), 0)).clone();
    let budgets: Vec<Budget> = [budget, everything]
        .iter()
        .filter_map(Budget::from_pdb)
        .collect();
    // The empty selector matches nothing, as upstream.
    assert_eq!(budgets.len(), 1);

    let pods = vec![
        labelled("first", "default", json!({"app": "x"})),
        labelled("gone", "default", json!({"app": "x"})),
        labelled("second", "default", json!({"app": "x"})),
        labelled("elsewhere", "other", json!({"app": "x"})),
        labelled("plain", "default", json!(null)),
    ];
    let (violating, fine) = split_by_pdb(pods, &budgets);
    let n = |v: &[Arc<PodInfo>]| v.iter().map(|p| p.name().to_string()).collect::<Vec<_>>();
    assert_eq!(n(&violating), ["second"]);
    assert_eq!(n(&fine), ["first", "gone", "elsewhere", "plain"]);
}

#[test]
fn prefilter_state_follows_removed_and_reprieved_pods() {
    let mut x = pod_json("x", "n1", 1, "1", Some(1));
    x["metadata"]["labels"] = json!({"conflict": "yes"});
    let c = cluster(&[("n1", "10")], &[pod(x), bound("y", "n1", 1, "1", 1)]);
    let mut p = pod_json("preemptor", "", 10, "1", None);
    p["metadata"]["labels"] = json!({"avoid": "yes"});
    let (s, r) = preempt(&conflict_framework(), &c, &pod(p));
    assert!(s.is_success(), "{s}");
    assert_eq!(names(&r.victims), ["x"]);
}

#[test]
fn higher_priority_nominated_pods_are_counted() {
    let mut c = cluster(
        &[("n1", "4")],
        &[
            bound("a", "n1", 1, "1", 1),
            bound("b", "n1", 1, "1", 2),
            bound("c", "n1", 1, "1", 3),
        ],
    );
    let fw = cpu_framework();
    // A lower-priority nomination does not reserve room ahead of the preemptor.
    c.add_nominated(pod(pod_json("later", "", 5, "2", None)), "n1");
    let (s, r) = preempt(&fw, &c, &preemptor(50, "2"));
    assert!(s.is_success(), "{s}");
    assert_eq!(r.victims.len(), 1);

    c.add_nominated(pod(pod_json("ahead", "", 100, "2", None)), "n1");
    let (s, r) = preempt(&fw, &c, &preemptor(50, "2"));
    assert!(s.is_success(), "{s}");
    assert_eq!(r.victims.len(), 3);
}

#[test]
fn prefilter_hook_errors_are_errors() {
    let c = cluster(&[("n1", "1")], &[bound("a", "n1", 1, "1", 1)]);
    let fw = Framework {
        pre_filter: vec![Arc::new(Broken)],
        filter: vec![Arc::new(CpuFit)],
        ..Default::default()
    };
    let (s, r) = preempt(&fw, &c, &preemptor(10, "1"));
    assert_eq!(s.code, Code::Error);
    assert_eq!(
        s.to_string(),
        "preemption: running RemovePod on PreFilter plugin \"Broken\": boom"
    );
    assert!(r.nominated_node.is_none());
}

// ---- nodes and candidates -------------------------------------------------------------

#[test]
fn prefers_the_node_with_cheaper_victims() {
    let c = cluster(
        &[("n1", "1"), ("n2", "1")],
        &[
            bound("mid", "n1", 20, "1", 1),
            bound("low", "n2", 10, "1", 1),
        ],
    );
    let (s, r) = preempt(&cpu_framework(), &c, &preemptor(50, "1"));
    assert!(s.is_success(), "{s}");
    assert_eq!(r.nominated_node.as_deref(), Some("n2"));
    assert_eq!(names(&r.victims), ["low"]);
}

#[test]
fn prefers_the_node_without_pdb_violations() {
    let mut v = pod_json("guarded", "n1", 1, "1", Some(1));
    v["metadata"]["labels"] = json!({"app": "a"});
    let mut c = cluster(
        &[("n1", "1"), ("n2", "1")],
        &[pod(v), bound("pricier", "n2", 5, "1", 1)],
    );
    c.pdbs
        .insert("default/pa".into(), pdb("pa", json!({"app": "a"}), 0));
    let (s, r) = preempt(&cpu_framework(), &c, &preemptor(50, "1"));
    assert!(s.is_success(), "{s}");
    assert_eq!(r.nominated_node.as_deref(), Some("n2"));
}

fn candidate(node: &str, violations: usize, victims: &[(i32, Option<i64>)]) -> Candidate {
    Candidate {
        node: node.into(),
        victims: victims
            .iter()
            .enumerate()
            .map(|(i, (prio, started))| {
                pod(pod_json(&format!("{node}-{i}"), node, *prio, "1", *started))
            })
            .collect(),
        pdb_violations: violations,
    }
}

#[test]
fn pick_applies_upstream_criteria_in_order() {
    let c = Cluster::default();
    let fw = Framework::default();
    let p = preemptor(1000, "1");
    let attempt = Attempt::new(&fw, &c, &p);
    let pick = |cs: Vec<Candidate>| attempt.pick(&cs).map(|c| c.node.clone());

    // Budget violations beat everything else.
    assert_eq!(
        pick(vec![
            candidate("a", 1, &[(1, Some(1))]),
            candidate("b", 0, &[(500, Some(1)), (500, Some(1))]),
        ])
        .as_deref(),
        Some("b")
    );
    // Then the lowest top priority, whatever the count.
    assert_eq!(
        pick(vec![
            candidate("a", 0, &[(10, Some(1))]),
            candidate("b", 0, &[(5, Some(1)), (5, Some(1)), (5, Some(1))]),
        ])
        .as_deref(),
        Some("b")
    );
    // Then the smallest sum.
    assert_eq!(
        pick(vec![
            candidate("a", 0, &[(5, Some(1)), (4, Some(1))]),
            candidate("b", 0, &[(5, Some(1)), (3, Some(1))]),
        ])
        .as_deref(),
        Some("b")
    );
    // Negative priorities do not make more victims look cheaper.
    assert_eq!(
        pick(vec![
            candidate("a", 0, &[(-5, Some(1)), (-5, Some(1))]),
            candidate("b", 0, &[(-5, Some(1))]),
        ])
        .as_deref(),
        Some("b")
    );
    // Then the latest start among the top-priority victims.
    assert_eq!(
        pick(vec![
            candidate("a", 0, &[(5, Some(20)), (1, Some(50))]),
            candidate("b", 0, &[(5, Some(30)), (1, Some(1))]),
        ])
        .as_deref(),
        Some("b")
    );
    // A victim that has not started counts as starting now.
    assert_eq!(
        pick(vec![
            candidate("a", 0, &[(5, Some(59))]),
            candidate("b", 0, &[(5, None)]),
        ])
        .as_deref(),
        Some("b")
    );
    // Then the first.
    assert_eq!(
        pick(vec![
            candidate("a", 0, &[(5, Some(1))]),
            candidate("b", 0, &[(5, Some(1))]),
        ])
        .as_deref(),
        Some("a")
    );
}

#[test]
fn only_unschedulable_nodes_are_tried() {
    let c = cluster(
        &[("n1", "1"), ("n2", "1")],
        &[
            bound("high", "n1", 100, "1", 1),
            bound("low", "n2", 1, "1", 1),
        ],
    );
    let fw = cpu_framework();
    let p = preemptor(50, "1");
    let (state, mut statuses) = filtered(&fw, &c, &p);
    statuses.insert(
        "n2".into(),
        Status::unresolvable("node(s) didn't match Pod's node affinity/selector"),
    );
    let (s, r) = Attempt::new(&fw, &c, &p).preempt(
        &state,
        &statuses,
        &DefaultPreemptionArgs::default(),
        |_| 0,
    );
    assert_eq!(s.code, Code::Unschedulable);
    assert_eq!(
        s.to_string(),
        "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
         1 Preemption is not helpful for scheduling."
    );
    // Preemption cannot help: the pod's nomination is to be cleared.
    assert_eq!(r.nominated_node.as_deref(), Some(""));
    assert!(r.victims.is_empty());
}

#[test]
fn node_too_small_even_when_emptied() {
    let c = cluster(&[("n1", "4")], &[bound("low", "n1", 1, "1", 1)]);
    let (s, _) = preempt(&cpu_framework(), &c, &preemptor(50, "8"));
    assert_eq!(s.code, Code::Unschedulable);
    assert_eq!(
        s.to_string(),
        "preemption: 0/1 nodes are available: 1 Insufficient cpu."
    );
}

#[test]
fn candidate_count_and_offset_limit_the_dry_run() {
    let c = cluster(
        &[("n1", "1"), ("n2", "1"), ("n3", "1")],
        &[
            bound("p30", "n1", 30, "1", 1),
            bound("p20", "n2", 20, "1", 1),
            bound("p10", "n3", 10, "1", 1),
        ],
    );
    let fw = cpu_framework();
    let p = preemptor(50, "1");
    let one = DefaultPreemptionArgs {
        min_candidate_nodes_percentage: 0,
        min_candidate_nodes_absolute: 1,
    };
    let nominated = |args: &DefaultPreemptionArgs, offset: usize| {
        let (s, r) = preempt_with(&fw, &c, &p, args, offset);
        assert!(s.is_success(), "{s}");
        r.nominated_node.unwrap_or_default()
    };
    assert_eq!(nominated(&one, 0), "n1");
    assert_eq!(nominated(&one, 1), "n2");
    assert_eq!(nominated(&one, 2), "n3");
    // With the defaults every node is tried.
    assert_eq!(nominated(&DefaultPreemptionArgs::default(), 0), "n3");
}

#[test]
fn dry_run_goes_on_past_violating_candidates() {
    let mut v = pod_json("guarded", "n1", 1, "1", Some(1));
    v["metadata"]["labels"] = json!({"app": "a"});
    let mut c = cluster(
        &[("n1", "1"), ("n2", "1"), ("n3", "1")],
        &[
            pod(v),
            bound("free", "n2", 1, "1", 1),
            bound("never-tried", "n3", 1, "1", 1),
        ],
    );
    c.pdbs
        .insert("default/pa".into(), pdb("pa", json!({"app": "a"}), 0));
    let fw = cpu_framework();
    let p = preemptor(50, "1");
    let (state, _) = filtered(&fw, &c, &p);
    let budgets: Vec<Budget> = c
        .pdbs
        .values()
        .filter_map(|p| Budget::from_pdb(p))
        .collect();
    let potential: Vec<&Arc<NodeInfo>> = c.nodes().iter().collect();
    let (candidates, statuses, errors) =
        Attempt::new(&fw, &c, &p).dry_run(&state, &potential, &budgets, 0, 1);
    let got: Vec<(&str, usize)> = candidates
        .iter()
        .map(|c| (c.node.as_str(), c.pdb_violations))
        .collect();
    // The non-violating candidate comes first; n3 is never needed.
    assert_eq!(got, [("n2", 0), ("n1", 1)]);
    assert!(statuses.is_empty());
    assert!(errors.is_empty());
}

// ---- eligibility ----------------------------------------------------------------------

#[test]
fn preemption_policy_never_is_not_eligible() {
    let c = cluster(&[("n1", "1")], &[bound("low", "n1", 1, "1", 1)]);
    let mut p = pod_json("preemptor", "", 50, "1", None);
    p["spec"]["preemptionPolicy"] = json!("Never");
    let (s, r) = preempt(&cpu_framework(), &c, &pod(p));
    assert_eq!(s.code, Code::Unschedulable);
    assert_eq!(
        s.to_string(),
        "preemption: not eligible due to preemptionPolicy=Never."
    );
    assert!(r.nominated_node.is_none());
}

#[test]
fn waits_for_victims_terminating_on_the_nominated_node() {
    let terminating = |by_scheduler: bool| {
        let mut v = pod_json("victim", "n1", 1, "1", Some(1));
        v["metadata"]["deletionTimestamp"] = json!("1970-01-01T00:01:00Z");
        if by_scheduler {
            v["status"]["conditions"] = json!([{
                "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"
            }]);
        }
        pod(v)
    };
    let mut p = pod_json("preemptor", "", 50, "1", None);
    p["status"]["nominatedNodeName"] = json!("n1");
    let p = pod(p);
    let fw = cpu_framework();

    let c = cluster(&[("n1", "1")], &[terminating(true)]);
    let (state, mut statuses) = filtered(&fw, &c, &p);
    let attempt = Attempt::new(&fw, &c, &p);
    assert_eq!(
        attempt.eligible(&statuses),
        Err("not eligible due to a terminating pod on the nominated node.")
    );
    let (s, _) = attempt.preempt(&state, &statuses, &DefaultPreemptionArgs::default(), |_| 0);
    assert_eq!(
        s.to_string(),
        "preemption: not eligible due to a terminating pod on the nominated node."
    );
    // A nominated node the pod can no longer use at all is no reason to wait.
    statuses.insert("n1".into(), Status::unresolvable("gone"));
    assert_eq!(attempt.eligible(&statuses), Ok(()));

    // Pods deleted for other reasons do not hold the preemptor back.
    let c = cluster(&[("n1", "1")], &[terminating(false)]);
    let (_, statuses) = filtered(&fw, &c, &p);
    assert_eq!(Attempt::new(&fw, &c, &p).eligible(&statuses), Ok(()));
}

#[test]
fn lower_priority_nominations_are_listed() {
    let mut c = Cluster::default();
    c.add_nominated(pod(pod_json("low", "", 5, "1", None)), "n1");
    c.add_nominated(pod(pod_json("same", "", 50, "1", None)), "n1");
    c.add_nominated(pod(pod_json("high", "", 80, "1", None)), "n1");
    c.add_nominated(pod(pod_json("other", "", 1, "1", None)), "n2");
    let got: Vec<String> = lower_priority_nominated(&c, "n1", 50)
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    assert_eq!(got, ["low"]);
    assert!(lower_priority_nominated(&c, "n3", 50).is_empty());
}

// ---- args and registration ------------------------------------------------------------

#[test]
fn args_defaults_and_validation() {
    let parse = |v: Value| DefaultPreemptionArgs::from_value(&v).map_err(|e| format!("{e:#}"));
    assert_eq!(
        parse(Value::Null).unwrap(),
        DefaultPreemptionArgs::default()
    );
    assert_eq!(
        parse(json!({"kind": "DefaultPreemptionArgs", "minCandidateNodesAbsolute": 5})).unwrap(),
        DefaultPreemptionArgs {
            min_candidate_nodes_percentage: 10,
            min_candidate_nodes_absolute: 5
        }
    );
    assert_eq!(
        parse(json!({"minCandidateNodesPercentage": 101})).unwrap_err(),
        "minCandidateNodesPercentage: Invalid value: 101: not in valid range [0, 100]"
    );
    assert_eq!(
        parse(json!({"minCandidateNodesAbsolute": -1})).unwrap_err(),
        "minCandidateNodesAbsolute: Invalid value: -1: not in valid range [0, inf)"
    );
    assert_eq!(
        parse(json!({"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0}))
            .unwrap_err(),
        "[minCandidateNodesPercentage: Invalid value: 0: cannot be zero at the same time as \
         minCandidateNodesAbsolute, minCandidateNodesAbsolute: Invalid value: 0: cannot be zero \
         at the same time as minCandidateNodesPercentage]"
    );
    let unknown = parse(json!({"minCandidateNodes": 3})).unwrap_err();
    assert!(
        unknown.starts_with("decoding DefaultPreemptionArgs: unknown field `minCandidateNodes`"),
        "{unknown}"
    );
}

#[test]
fn number_of_candidates() {
    let args = |pct, abs| DefaultPreemptionArgs {
        min_candidate_nodes_percentage: pct,
        min_candidate_nodes_absolute: abs,
    };
    let d = DefaultPreemptionArgs::default();
    assert_eq!(d.num_candidates(10), 10);
    assert_eq!(d.num_candidates(1000), 100);
    assert_eq!(d.num_candidates(5000), 500);
    assert_eq!(args(50, 1).num_candidates(10), 5);
    assert_eq!(args(0, 3).num_candidates(10), 3);
    assert_eq!(args(100, 0).num_candidates(7), 7);
}

#[tokio::test]
async fn registers_a_post_filter() {
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
    let ctx = PluginContext {
        client,
        scheduler_name: "default-scheduler".into(),
    };
    let r = register(&json!({"minCandidateNodesAbsolute": 7}), &ctx).unwrap();
    let pf = r.post_filter.expect("a PostFilter plugin");
    assert_eq!(pf.name(), NAME);
    assert!(r.filter.is_none() && r.pre_filter.is_none() && r.events.is_empty());
    assert!(register(&json!({"minCandidateNodesPercentage": -1}), &ctx).is_err());

    // Through the framework, as the scheduling loop calls it.
    let c = cluster(&[("n1", "1")], &[bound("low", "n1", 1, "1", 1)]);
    let fw = Framework {
        post_filter: vec![pf],
        ..cpu_framework()
    };
    let p = preemptor(50, "1");
    let (state, statuses) = filtered(&fw, &c, &p);
    let (s, r) = fw.run_post_filter(&state, &p, &c, &statuses);
    assert!(s.is_success(), "{s}");
    assert_eq!(r.nominated_node.as_deref(), Some("n1"));
    assert_eq!(names(&r.victims), ["low"]);
}
