use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::*;
use crate::cache::{pod_info, Cluster};
use crate::framework::{
    Code, CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterPlugin, PreScorePlugin, ScorePlugin,
};
use crate::plugins::testing::{filter_all, passing, place};

fn node(name: &str, labels: Value) -> Arc<Node> {
    Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap())
}

fn zoned(name: &str, zone: &str) -> Arc<Node> {
    node(
        name,
        json!({"kubernetes.io/hostname": name, "zone": zone, "region": "r1"}),
    )
}

fn pod(name: &str, ns: &str, labels: Value, node: Option<&str>, affinity: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "labels": labels},
        "spec": {"containers": [], "nodeName": node, "affinity": affinity},
    }))
    .unwrap()
}

fn term(key: &str, labels: Value) -> Value {
    json!({"labelSelector": {"matchLabels": labels}, "topologyKey": key})
}

fn plugin(args: Value) -> InterPodAffinity {
    InterPodAffinity {
        args: Args::parse(&args).unwrap(),
    }
}

/// n1, n2 in zone a; n3 in zone b; n4 without a zone label.
fn cluster() -> Cluster {
    let mut c = Cluster::default();
    c.upsert_node(zoned("n1", "a"));
    c.upsert_node(zoned("n2", "a"));
    c.upsert_node(zoned("n3", "b"));
    c.upsert_node(node("n4", json!({"kubernetes.io/hostname": "n4"})));
    c
}

#[test]
fn skips_when_nothing_relates_to_the_pod() {
    let mut c = cluster();
    place(
        &mut c,
        pod(
            "web",
            "default",
            json!({"app": "web"}),
            Some("n1"),
            json!(null),
        ),
    );
    let incoming = PodInfo::new(Arc::new(pod(
        "p",
        "default",
        json!({"app": "x"}),
        None,
        json!(null),
    )));
    assert!(filter_all(&plugin(Value::Null), &c, &incoming).is_none());
}

#[test]
fn incoming_anti_affinity_rejects_nodes_sharing_the_topology() {
    let mut c = cluster();
    place(
        &mut c,
        pod(
            "web",
            "default",
            json!({"app": "web"}),
            Some("n1"),
            json!(null),
        ),
    );
    let aff = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term("zone", json!({"app": "web"}))]}});
    let incoming = PodInfo::new(Arc::new(pod("p", "default", json!({}), None, aff)));
    let st = filter_all(&plugin(Value::Null), &c, &incoming).unwrap();
    assert_eq!(passing(&st), vec!["n3", "n4"]);
    assert_eq!(st["n2"].code, Code::Unschedulable);
    assert_eq!(
        st["n2"].reasons,
        vec![ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH]
    );

    // Pods in another namespace are not selected by a term without namespaces.
    let aff = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term("zone", json!({"app": "web"}))]}});
    let other_ns = PodInfo::new(Arc::new(pod("p", "other", json!({}), None, aff)));
    let st = filter_all(&plugin(Value::Null), &c, &other_ns).unwrap();
    assert_eq!(passing(&st).len(), 4);
}

#[test]
fn namespace_selector_is_resolved_against_namespace_labels() {
    let mut c = cluster();
    c.namespaces.insert(
        "team-a".into(),
        BTreeMap::from([("team".into(), "a".into())]),
    );
    c.namespaces.insert("team-b".into(), BTreeMap::new());
    place(
        &mut c,
        pod(
            "w1",
            "team-a",
            json!({"app": "web"}),
            Some("n1"),
            json!(null),
        ),
    );
    place(
        &mut c,
        pod(
            "w2",
            "team-b",
            json!({"app": "web"}),
            Some("n3"),
            json!(null),
        ),
    );
    let mut t = term("kubernetes.io/hostname", json!({"app": "web"}));
    t["namespaceSelector"] = json!({"matchLabels": {"team": "a"}});
    let aff = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}});
    let incoming = PodInfo::new(Arc::new(pod("p", "default", json!({}), None, aff)));
    let st = filter_all(&plugin(Value::Null), &c, &incoming).unwrap();
    assert_eq!(passing(&st), vec!["n2", "n3", "n4"]);

    // An empty namespaceSelector selects every namespace.
    let mut t = term("kubernetes.io/hostname", json!({"app": "web"}));
    t["namespaceSelector"] = json!({});
    let aff = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}});
    let incoming = PodInfo::new(Arc::new(pod("p", "default", json!({}), None, aff)));
    let st = filter_all(&plugin(Value::Null), &c, &incoming).unwrap();
    assert_eq!(passing(&st), vec!["n2", "n4"]);
}

#[test]
fn existing_pods_anti_affinity_rejects_the_pod() {
    let mut c = cluster();
    let aff = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term("zone", json!({"app": "db"}))]}});
    place(&mut c, pod("guard", "default", json!({}), Some("n3"), aff));
    let incoming = PodInfo::new(Arc::new(pod(
        "db",
        "default",
        json!({"app": "db"}),
        None,
        json!(null),
    )));
    let st = filter_all(&plugin(Value::Null), &c, &incoming).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n4"]);
    assert_eq!(st["n3"].code, Code::Unschedulable);
    assert_eq!(
        st["n3"].reasons,
        vec![ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH]
    );

    // A pod the term does not select is unaffected (and nothing else matters: Skip).
    let other = PodInfo::new(Arc::new(pod(
        "x",
        "default",
        json!({"app": "x"}),
        None,
        json!(null),
    )));
    assert!(filter_all(&plugin(Value::Null), &c, &other).is_none());
}

#[test]
fn existing_anti_affinity_namespace_selector_reads_incoming_namespace_labels() {
    let mut c = cluster();
    c.namespaces.insert(
        "prod".into(),
        BTreeMap::from([("env".into(), "prod".into())]),
    );
    let mut t = term("kubernetes.io/hostname", json!({"app": "db"}));
    t["namespaceSelector"] = json!({"matchLabels": {"env": "prod"}});
    let aff = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}});
    place(&mut c, pod("guard", "default", json!({}), Some("n1"), aff));
    let in_prod = PodInfo::new(Arc::new(pod(
        "db",
        "prod",
        json!({"app": "db"}),
        None,
        json!(null),
    )));
    let st = filter_all(&plugin(Value::Null), &c, &in_prod).unwrap();
    assert_eq!(passing(&st), vec!["n2", "n3", "n4"]);
    let in_dev = PodInfo::new(Arc::new(pod(
        "db",
        "dev",
        json!({"app": "db"}),
        None,
        json!(null),
    )));
    assert!(filter_all(&plugin(Value::Null), &c, &in_dev).is_none());
}

#[test]
fn required_affinity_needs_a_matching_pod_in_the_domain() {
    let mut c = cluster();
    place(
        &mut c,
        pod(
            "cache",
            "default",
            json!({"app": "cache"}),
            Some("n3"),
            json!(null),
        ),
    );
    let aff = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term("zone", json!({"app": "cache"}))]}});
    let incoming = PodInfo::new(Arc::new(pod("p", "default", json!({}), None, aff)));
    let st = filter_all(&plugin(Value::Null), &c, &incoming).unwrap();
    assert_eq!(passing(&st), vec!["n3"]);
    assert_eq!(st["n1"].code, Code::UnschedulableAndUnresolvable);
    assert_eq!(st["n1"].reasons, vec![ERR_REASON_AFFINITY_RULES_NOT_MATCH]);
    // Missing topology label.
    assert_eq!(st["n4"].code, Code::UnschedulableAndUnresolvable);
}

#[test]
fn affinity_to_itself_allows_the_first_pod_anywhere_with_the_key() {
    let c = cluster();
    let aff = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term("zone", json!({"app": "web"}))]}});
    let first = PodInfo::new(Arc::new(pod(
        "p",
        "default",
        json!({"app": "web"}),
        None,
        aff.clone(),
    )));
    let st = filter_all(&plugin(Value::Null), &c, &first).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3"]);
    // A pod that does not match its own terms gets no such pass.
    let stranger = PodInfo::new(Arc::new(pod(
        "p",
        "default",
        json!({"app": "x"}),
        None,
        aff,
    )));
    let st = filter_all(&plugin(Value::Null), &c, &stranger).unwrap();
    assert!(passing(&st).is_empty());
}

#[test]
fn add_and_remove_pod_update_the_counts() {
    let c = cluster();
    let aff = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term("kubernetes.io/hostname", json!({"app": "web"}))]}});
    let incoming = PodInfo::new(Arc::new(pod(
        "p",
        "default",
        json!({"app": "web"}),
        None,
        aff.clone(),
    )));
    let pl = plugin(Value::Null);
    let mut state = CycleState::default();
    assert!(pl.pre_filter(&mut state, &incoming, &c).0.is_success());
    let n2 = c.node("n2").unwrap().clone();
    assert!(pl.filter(&state, &incoming, &n2).is_success());

    // A nominated web pod on n2 blocks it; removing it again unblocks it.
    let other = pod_info(pod(
        "w",
        "default",
        json!({"app": "web"}),
        Some("n2"),
        json!(null),
    ));
    let mut with = (*n2).clone();
    with.add_pod(other.clone());
    assert!(pl
        .add_pod(&mut state, &incoming, &other, &with, &c)
        .is_success());
    let s = pl.filter(&state, &incoming, &with);
    assert_eq!(s.reasons, vec![ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH]);
    assert!(pl
        .remove_pod(&mut state, &incoming, &other, &n2, &c)
        .is_success());
    assert!(pl.filter(&state, &incoming, &n2).is_success());

    // A pod whose own anti-affinity selects the incoming pod counts as an existing rule.
    let guard = pod_info(pod("g", "default", json!({}), Some("n1"), aff));
    let mut with = (**c.node("n1").unwrap()).clone();
    with.add_pod(guard.clone());
    pl.add_pod(&mut state, &incoming, &guard, &with, &c);
    let s = pl.filter(&state, &incoming, &with);
    assert_eq!(
        s.reasons,
        vec![ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH]
    );
}

fn scores(pl: &InterPodAffinity, c: &Cluster, incoming: &PodInfo) -> Option<Vec<(String, i64)>> {
    let mut state = CycleState::default();
    let nodes: Vec<Arc<NodeInfo>> = c.nodes().to_vec();
    let s = pl.pre_score(&mut state, incoming, &nodes, c);
    if s.is_skip() {
        return None;
    }
    assert!(s.is_success(), "{s:?}");
    let mut raw: Vec<i64> = nodes
        .iter()
        .map(|n| pl.score(&state, incoming, n).unwrap())
        .collect();
    assert!(pl.normalize(&state, incoming, &mut raw).is_success());
    let mut out: Vec<(String, i64)> = nodes.iter().map(|n| n.name.clone()).zip(raw).collect();
    out.sort();
    Some(out)
}

fn named(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

#[test]
fn preferred_terms_of_the_incoming_pod_score_domains() {
    let mut c = cluster();
    place(
        &mut c,
        pod(
            "cache",
            "default",
            json!({"app": "cache"}),
            Some("n3"),
            json!(null),
        ),
    );
    place(
        &mut c,
        pod(
            "noisy",
            "default",
            json!({"app": "noisy"}),
            Some("n1"),
            json!(null),
        ),
    );
    let aff = json!({
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": term("zone", json!({"app": "cache"}))}]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "podAffinityTerm": term("kubernetes.io/hostname", json!({"app": "noisy"}))}]},
    });
    let incoming = PodInfo::new(Arc::new(pod("p", "default", json!({}), None, aff)));
    // Raw: n1 -5, n2 0, n3 10, n4 0 → (s+5)/15.
    assert_eq!(
        scores(&plugin(Value::Null), &c, &incoming).unwrap(),
        named(&[("n1", 0), ("n2", 33), ("n3", 100), ("n4", 33)])
    );
}

#[test]
fn existing_pods_terms_score_the_incoming_pod() {
    let mut c = cluster();
    let hard = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term("zone", json!({"app": "web"}))]}});
    place(&mut c, pod("a", "default", json!({}), Some("n1"), hard));
    let soft_anti = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 4, "podAffinityTerm": term("kubernetes.io/hostname", json!({"app": "web"}))}]}});
    place(
        &mut c,
        pod("b", "default", json!({}), Some("n3"), soft_anti),
    );
    let incoming = PodInfo::new(Arc::new(pod(
        "p",
        "default",
        json!({"app": "web"}),
        None,
        json!(null),
    )));

    // hardPodAffinityWeight 1: raw n1 1, n2 1, n3 -4, n4 0 → (s+4)/5.
    assert_eq!(
        scores(&plugin(Value::Null), &c, &incoming).unwrap(),
        named(&[("n1", 100), ("n2", 100), ("n3", 0), ("n4", 80)])
    );
    // Weight 6: raw 6, 6, -4, 0 → (s+4)/10.
    assert_eq!(
        scores(&plugin(json!({"hardPodAffinityWeight": 6})), &c, &incoming).unwrap(),
        named(&[("n1", 100), ("n2", 100), ("n3", 0), ("n4", 40)])
    );
    // Weight 0 drops the hard term: raw 0, 0, -4, 0.
    assert_eq!(
        scores(&plugin(json!({"hardPodAffinityWeight": 0})), &c, &incoming).unwrap(),
        named(&[("n1", 100), ("n2", 100), ("n3", 0), ("n4", 100)])
    );
    // Ignoring existing pods' preferences skips scoring for a pod without its own.
    let pl = plugin(json!({"ignorePreferredTermsOfExistingPods": true}));
    assert!(scores(&pl, &c, &incoming).is_none());
    // Nothing applies to an unrelated pod.
    let other = PodInfo::new(Arc::new(pod(
        "q",
        "default",
        json!({"app": "x"}),
        None,
        json!(null),
    )));
    assert!(scores(&plugin(Value::Null), &c, &other).is_none());
}

#[test]
fn args_defaults_and_validation() {
    assert_eq!(Args::parse(&Value::Null).unwrap(), Args::default());
    let a = Args::parse(
        &json!({"kind": "InterPodAffinityArgs", "apiVersion": "kubescheduler.config.k8s.io/v1",
        "hardPodAffinityWeight": 5, "ignorePreferredTermsOfExistingPods": true}),
    )
    .unwrap();
    assert_eq!(a.hard_pod_affinity_weight, 5);
    assert!(a.ignore_preferred_terms_of_existing_pods);
    let err = Args::parse(&json!({"hardPodAffinityWeight": 101})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hardPodAffinityWeight: Invalid value: 101: not in valid range [0, 100]"
    );
    assert!(Args::parse(&json!({"hardPodAffinityWeight": -1})).is_err());
    assert!(Args::parse(&json!({"bogus": 1})).is_err());
}

#[test]
fn registers_every_point_and_events() {
    let r = build(&Value::Null).unwrap();
    assert!(r.pre_filter.is_some() && r.filter.is_some());
    assert!(r.pre_score.is_some() && r.score.is_some());
    let pod_delete = ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE);
    let node_label = ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_LABEL);
    let node_alloc = ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_ALLOCATABLE);
    assert!(r.events.iter().any(|e| e.covers(&pod_delete)));
    assert!(r.events.iter().any(|e| e.covers(&node_label)));
    assert!(!r.events.iter().any(|e| e.covers(&node_alloc)));
}

/// Enough nodes and pods for the walks to be split over threads on a multi-core machine;
/// the merged counts must equal what one walk would find.
#[test]
fn large_cluster_counts_merge_across_threads() {
    let mut c = Cluster::default();
    for i in 0..200 {
        c.upsert_node(zoned(&format!("n{i}"), &format!("z{}", i % 4)));
    }
    // 8,000 pods; app-k sits on nodes ≡ k (mod 8), so only zones z(k mod 4) hold it.
    for i in 0..8000 {
        let app = format!("app-{}", i % 8);
        place(
            &mut c,
            pod(
                &format!("p{i}"),
                "default",
                json!({"app": app}),
                Some(&format!("n{}", i % 200)),
                json!(null),
            ),
        );
    }
    assert!(c.nodes().len() + c.pod_count() >= 2 * MIN_COST_PER_THREAD);
    let aff = json!({
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", json!({"app": "app-1"}))]},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("kubernetes.io/hostname", json!({"app": "app-5"}))]},
    });
    let incoming = PodInfo::new(Arc::new(pod("p", "default", json!({}), None, aff)));
    let st = filter_all(&plugin(Value::Null), &c, &incoming).unwrap();
    // Zone z1 (nodes ≡ 1 mod 4) has app-1; of those, nodes ≡ 5 mod 8 hold app-5.
    let expected: Vec<String> = (0..200)
        .filter(|i| i % 8 == 1)
        .map(|i| format!("n{i}"))
        .collect();
    let mut got: Vec<String> = passing(&st).into_iter().map(String::from).collect();
    got.sort();
    let mut expected_sorted = expected;
    expected_sorted.sort();
    assert_eq!(got, expected_sorted);

    // Preferred affinity to app-2 (zone z2): z2 nodes get the top score, the rest 0.
    let aff = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 3, "podAffinityTerm": term("zone", json!({"app": "app-2"}))}]}});
    let incoming = PodInfo::new(Arc::new(pod("q", "default", json!({}), None, aff)));
    for (name, score) in scores(&plugin(Value::Null), &c, &incoming).unwrap() {
        let zone2 = name[1..].parse::<usize>().unwrap() % 4 == 2;
        assert_eq!(score, if zone2 { 100 } else { 0 }, "{name}");
    }
}
