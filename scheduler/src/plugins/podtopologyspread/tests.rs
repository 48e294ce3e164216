use std::sync::Arc;

use ferrokube_common::labels::Selector;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::*;
use crate::cache::{pod_info, Cluster, OwnerSelector};
use crate::framework::{
    Code, CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterPlugin, PreScorePlugin, ScorePlugin,
};
use crate::plugins::testing::{filter_all, passing, place};

fn node(name: &str, labels: Value, spec: Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
            .unwrap(),
    )
}

fn zoned(name: &str, zone: &str) -> Arc<Node> {
    node(name, json!({LABEL_HOSTNAME: name, "zone": zone}), json!({}))
}

fn pod_in(name: &str, ns: &str, labels: Value, node: Option<&str>, spec: Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([]);
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "labels": labels},
        "spec": spec,
    }))
    .unwrap()
}

fn pod(name: &str, labels: Value, node: Option<&str>, spec: Value) -> Pod {
    pod_in(name, "default", labels, node, spec)
}

fn web(name: &str, node: &str) -> Pod {
    pod(name, json!({"app": "web"}), Some(node), json!({}))
}

fn spread(key: &str, max_skew: i32, action: &str) -> Value {
    json!({"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": action,
        "labelSelector": {"matchLabels": {"app": "web"}}})
}

fn incoming(constraints: Value) -> PodInfo {
    PodInfo::new(Arc::new(pod(
        "p",
        json!({"app": "web"}),
        None,
        json!({"topologySpreadConstraints": constraints}),
    )))
}

fn plugin(args: Value) -> PodTopologySpread {
    PodTopologySpread {
        args: Args::parse(&args).unwrap(),
    }
}

/// n1, n2 in zone a; n3 in zone b; n4 without a zone label.
fn cluster() -> Cluster {
    let mut c = Cluster::default();
    c.upsert_node(zoned("n1", "a"));
    c.upsert_node(zoned("n2", "a"));
    c.upsert_node(zoned("n3", "b"));
    c.upsert_node(node("n4", json!({LABEL_HOSTNAME: "n4"}), json!({})));
    c
}

#[test]
fn skew_decides_the_domains() {
    let mut c = cluster();
    place(&mut c, web("w1", "n1"));
    place(&mut c, web("w2", "n2"));
    let p = incoming(json!([spread("zone", 1, DO_NOT_SCHEDULE)]));
    let st = filter_all(&plugin(Value::Null), &c, &p).unwrap();
    assert_eq!(passing(&st), vec!["n3"]);
    assert_eq!(st["n1"].code, Code::Unschedulable);
    assert_eq!(st["n1"].reasons, vec![ERR_REASON_CONSTRAINTS_NOT_MATCH]);
    assert_eq!(st["n4"].code, Code::UnschedulableAndUnresolvable);
    assert_eq!(st["n4"].reasons, vec![ERR_REASON_NODE_LABEL_NOT_MATCH]);

    // 2 + 1 − 0 exceeds maxSkew 2 but not 3.
    let p = incoming(json!([spread("zone", 2, DO_NOT_SCHEDULE)]));
    let st = filter_all(&plugin(Value::Null), &c, &p).unwrap();
    assert_eq!(passing(&st), vec!["n3"]);
    let p = incoming(json!([spread("zone", 3, DO_NOT_SCHEDULE)]));
    let st = filter_all(&plugin(Value::Null), &c, &p).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3"]);

    // Only ScheduleAnyway constraints: nothing to filter.
    let p = incoming(json!([spread("zone", 1, SCHEDULE_ANYWAY)]));
    assert!(filter_all(&plugin(Value::Null), &c, &p).is_none());
}

#[test]
fn other_namespaces_terminating_pods_and_non_matching_pods_do_not_count() {
    let mut c = cluster();
    place(
        &mut c,
        pod_in("o", "other", json!({"app": "web"}), Some("n1"), json!({})),
    );
    place(&mut c, pod("x", json!({"app": "x"}), Some("n1"), json!({})));
    let mut leaving = web("gone", "n2");
    leaving.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2024-01-01T00:00:00Z")).unwrap());
    place(&mut c, leaving);
    let p = incoming(json!([spread("zone", 1, DO_NOT_SCHEDULE)]));
    let st = filter_all(&plugin(Value::Null), &c, &p).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3"]);

    // An incoming pod the selector doesn't select adds no skew of its own.
    place(&mut c, web("w1", "n1"));
    let stranger = PodInfo::new(Arc::new(pod(
        "s",
        json!({"app": "other"}),
        None,
        json!({"topologySpreadConstraints": [spread("zone", 1, DO_NOT_SCHEDULE)]}),
    )));
    let st = filter_all(&plugin(Value::Null), &c, &stranger).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3"]);
}

#[test]
fn min_domains_treats_the_global_minimum_as_zero() {
    let mut c = cluster();
    place(&mut c, web("w1", "n1"));
    place(&mut c, web("w3", "n3"));
    let mut con = spread("zone", 1, DO_NOT_SCHEDULE);
    let st = filter_all(&plugin(Value::Null), &c, &incoming(json!([con.clone()]))).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3"]);
    con["minDomains"] = json!(3);
    let st = filter_all(&plugin(Value::Null), &c, &incoming(json!([con]))).unwrap();
    assert!(passing(&st).is_empty());
}

#[test]
fn node_inclusion_policies() {
    let mut c = cluster();
    c.upsert_node(node(
        "n5",
        json!({LABEL_HOSTNAME: "n5", "zone": "c", "pool": "gpu"}),
        json!({"taints": [{"key": "gpu", "effect": "NoSchedule"}]}),
    ));
    place(&mut c, web("w1", "n1"));
    place(&mut c, web("w3", "n3"));
    // Zone c is empty, so with it counted the minimum is 0 and zones a/b are full.
    let base = spread("zone", 1, DO_NOT_SCHEDULE);
    let st = filter_all(&plugin(Value::Null), &c, &incoming(json!([base.clone()]))).unwrap();
    assert_eq!(passing(&st), vec!["n5"]);

    // Honouring taints drops zone c (its only node is tainted) from the domains.
    let mut honor = base.clone();
    honor["nodeTaintsPolicy"] = json!("Honor");
    let st = filter_all(&plugin(Value::Null), &c, &incoming(json!([honor]))).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3", "n5"]);

    // Required node affinity excluding zone c drops it too (Honor by default)...
    let excluding_c = |con: Value| {
        PodInfo::new(Arc::new(pod(
            "p",
            json!({"app": "web"}),
            None,
            json!({"topologySpreadConstraints": [con], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "DoesNotExist"}]}]}}}}),
        )))
    };
    let st = filter_all(&plugin(Value::Null), &c, &excluding_c(base.clone())).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3", "n5"]);
    // ...unless the constraint ignores node affinity.
    let mut ignore = base;
    ignore["nodeAffinityPolicy"] = json!("Ignore");
    let st = filter_all(&plugin(Value::Null), &c, &excluding_c(ignore)).unwrap();
    assert_eq!(passing(&st), vec!["n5"]);
}

#[test]
fn match_label_keys_narrow_the_selector_to_the_pods_values() {
    let mut c = cluster();
    place(
        &mut c,
        pod(
            "old1",
            json!({"app": "web", "rev": "1"}),
            Some("n1"),
            json!({}),
        ),
    );
    place(
        &mut c,
        pod(
            "old2",
            json!({"app": "web", "rev": "1"}),
            Some("n2"),
            json!({}),
        ),
    );
    let mut con = spread("zone", 1, DO_NOT_SCHEDULE);
    con["matchLabelKeys"] = json!(["rev"]);
    let new_rev = PodInfo::new(Arc::new(pod(
        "p",
        json!({"app": "web", "rev": "2"}),
        None,
        json!({"topologySpreadConstraints": [con.clone()]}),
    )));
    let st = filter_all(&plugin(Value::Null), &c, &new_rev).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3"]);
    let same_rev = PodInfo::new(Arc::new(pod(
        "p",
        json!({"app": "web", "rev": "1"}),
        None,
        json!({"topologySpreadConstraints": [con]}),
    )));
    let st = filter_all(&plugin(Value::Null), &c, &same_rev).unwrap();
    assert_eq!(passing(&st), vec!["n3"]);
}

#[test]
fn add_and_remove_pod_move_the_counts() {
    let mut c = cluster();
    place(&mut c, web("w1", "n1"));
    let pl = plugin(Value::Null);
    let p = incoming(json!([spread("zone", 1, DO_NOT_SCHEDULE)]));
    let mut state = CycleState::default();
    assert!(pl.pre_filter(&mut state, &p, &c).0.is_success());
    let n1 = c.node("n1").unwrap().clone();
    let n3 = c.node("n3").unwrap().clone();
    assert!(!pl.filter(&state, &p, &n1).is_success());
    assert!(pl.filter(&state, &p, &n3).is_success());

    // Preempting w1 evens the zones out.
    let w1 = c.pod("uid-default-w1").unwrap().clone();
    let mut without = state.clone();
    assert!(pl.remove_pod(&mut without, &p, &w1, &n1, &c).is_success());
    assert!(pl.filter(&without, &p, &n1).is_success());

    // A nominated web pod in zone b: now both zones have one.
    let other = pod_info(web("w9", "n3"));
    assert!(pl.add_pod(&mut state, &p, &other, &n3, &c).is_success());
    assert!(pl.filter(&state, &p, &n1).is_success());
    assert!(pl.filter(&state, &p, &n3).is_success());
    // Pods of another namespace are ignored.
    let foreign = pod_info(pod_in(
        "f",
        "other",
        json!({"app": "web"}),
        Some("n1"),
        json!({}),
    ));
    pl.add_pod(&mut state, &p, &foreign, &n1, &c);
    pl.add_pod(&mut state, &p, &foreign, &n1, &c);
    assert!(pl.filter(&state, &p, &n1).is_success());
}

fn scores(pl: &PodTopologySpread, c: &Cluster, p: &PodInfo) -> Option<Vec<(String, i64)>> {
    let mut state = CycleState::default();
    let nodes: Vec<Arc<NodeInfo>> = c.nodes().to_vec();
    let s = pl.pre_score(&mut state, p, &nodes, c);
    if s.is_skip() {
        return None;
    }
    assert!(s.is_success(), "{s:?}");
    let mut raw: Vec<i64> = nodes
        .iter()
        .map(|n| pl.score(&state, p, n).unwrap())
        .collect();
    assert!(pl.normalize(&state, p, &mut raw).is_success());
    let mut out: Vec<(String, i64)> = nodes.iter().map(|n| n.name.clone()).zip(raw).collect();
    out.sort();
    Some(out)
}

fn named(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

#[test]
fn soft_constraints_score_emptier_domains_higher() {
    let mut c = cluster();
    place(&mut c, web("w1", "n1"));
    place(&mut c, web("w2", "n2"));
    let pl = plugin(Value::Null);
    // Zone weight ln(2 + 2): n1, n2 → round(2·1.386) = 3; n3 → 0; n4 lacks the key.
    let p = incoming(json!([spread("zone", 1, SCHEDULE_ANYWAY)]));
    assert_eq!(
        scores(&pl, &c, &p).unwrap(),
        named(&[("n1", 0), ("n2", 0), ("n3", 100), ("n4", 0)])
    );
    // Plus hostname with maxSkew 2 (weight ln(3 + 2)): n1 = round(2.773 + 1.609 + 1) = 5,
    // n3 = 1; normalised 100·(5 + 1 − s)/5.
    let p = incoming(json!([
        spread("zone", 1, SCHEDULE_ANYWAY),
        spread(LABEL_HOSTNAME, 2, SCHEDULE_ANYWAY)
    ]));
    assert_eq!(
        scores(&pl, &c, &p).unwrap(),
        named(&[("n1", 20), ("n2", 20), ("n3", 100), ("n4", 0)])
    );
    // No matching pods anywhere: every scored node gets the maximum.
    let empty = cluster();
    let p = incoming(json!([spread("zone", 1, SCHEDULE_ANYWAY)]));
    assert_eq!(
        scores(&pl, &empty, &p).unwrap(),
        named(&[("n1", 100), ("n2", 100), ("n3", 100), ("n4", 0)])
    );
}

fn owners(c: &mut Cluster, list: &[(&str, &str)]) {
    c.owner_selectors.insert(
        "default".into(),
        list.iter()
            .map(|(owner, sel)| OwnerSelector {
                owner: owner.to_string(),
                selector: Selector::parse(sel).unwrap(),
            })
            .collect(),
    );
}

#[test]
fn system_defaults_spread_pods_of_the_same_service() {
    let mut c = Cluster::default();
    let zone = |name: &str, z: Option<&str>| {
        let mut labels = json!({LABEL_HOSTNAME: name});
        if let Some(z) = z {
            labels[LABEL_ZONE] = json!(z);
        }
        node(name, labels, json!({}))
    };
    c.upsert_node(zone("s1", Some("z1")));
    c.upsert_node(zone("s2", Some("z1")));
    c.upsert_node(zone("s3", Some("z2")));
    c.upsert_node(zone("s4", None));
    place(&mut c, web("w1", "s1"));
    place(&mut c, web("w2", "s1"));
    place(&mut c, web("w3", "s3"));
    let pl = plugin(Value::Null);
    let p = PodInfo::new(Arc::new(pod("p", json!({"app": "web"}), None, json!({}))));

    // Nothing selects the pod: no default constraints.
    assert!(scores(&pl, &c, &p).is_none());

    owners(
        &mut c,
        &[("Service/web", "app=web"), ("Service/db", "app=db")],
    );
    // The defaults are ScheduleAnyway only: nothing to filter.
    assert!(filter_all(&pl, &c, &p).is_none());
    // Hostname weight ln(6), zone weight ln(5) (z1, z2 and s4's missing value):
    // s1 = round(2·1.792 + 2 + 2·1.609 + 4) = 13, s2 = round(2 + 7.219) = 9,
    // s3 = round(3.792 + 5.609) = 9, s4 = 2 (hostname only); then 100·(13 + 2 − s)/13.
    assert_eq!(
        scores(&pl, &c, &p).unwrap(),
        named(&[("s1", 15), ("s2", 46), ("s3", 46), ("s4", 100)])
    );
}

#[test]
fn list_defaults_use_the_controller_selector() {
    let mut c = cluster();
    place(&mut c, web("w1", "n1"));
    owners(&mut c, &[("ReplicaSet/web-1", "app=web")]);
    let pl = plugin(json!({"defaultingType": "List", "defaultConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}));
    let owned = |owner: Value| {
        let mut p = pod("p", json!({"app": "web"}), None, json!({}));
        p.metadata.owner_references = Some(serde_json::from_value(owner).unwrap());
        PodInfo::new(Arc::new(p))
    };
    let p = owned(
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
        "uid": "rs", "controller": true}]),
    );
    let st = filter_all(&pl, &c, &p).unwrap();
    assert_eq!(passing(&st), vec!["n3"]);
    assert_eq!(st["n4"].reasons, vec![ERR_REASON_NODE_LABEL_NOT_MATCH]);
    // Another controller, or none: no defaults.
    let p = owned(
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-2",
        "uid": "rs", "controller": true}]),
    );
    assert!(filter_all(&pl, &c, &p).is_none());
    let p = PodInfo::new(Arc::new(pod("p", json!({"app": "web"}), None, json!({}))));
    assert!(filter_all(&pl, &c, &p).is_none());
    // A pod with constraints of its own never gets the defaults.
    let p = incoming(json!([spread("zone", 5, DO_NOT_SCHEDULE)]));
    let st = filter_all(&pl, &c, &p).unwrap();
    assert_eq!(passing(&st), vec!["n1", "n2", "n3"]);
}

#[test]
fn args_defaults_and_validation() {
    let a = Args::parse(&Value::Null).unwrap();
    assert!(a.system_defaulted);
    assert_eq!(a.default_constraints.len(), 2);
    assert_eq!(a.default_constraints[0].topology_key, LABEL_HOSTNAME);
    assert_eq!(a.default_constraints[0].max_skew, 3);
    assert_eq!(a.default_constraints[1].topology_key, LABEL_ZONE);
    assert_eq!(a.default_constraints[1].max_skew, 5);
    let a = Args::parse(&json!({"defaultingType": "List"})).unwrap();
    assert!(!a.system_defaulted && a.default_constraints.is_empty());

    let err = |v: Value| Args::parse(&v).unwrap_err().to_string();
    assert_eq!(
        err(json!({"defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]})),
        "defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty"
    );
    assert_eq!(
        err(json!({"defaultingType": "Other"})),
        "defaultingType: Unsupported value: \"Other\": supported values: \"System\", \"List\""
    );
    assert_eq!(
        err(json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 0, "topologyKey": "", "whenUnsatisfiable": "Sometimes",
             "labelSelector": {"matchLabels": {"a": "b"}}}]})),
        "[defaultConstraints[0].maxSkew: Invalid value: 0: not in valid range (0, inf), \
         defaultConstraints[0].topologyKey: Required value: can not be empty, \
         defaultConstraints[0].whenUnsatisfiable: Unsupported value: \"Sometimes\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\", \
         defaultConstraints[0].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod]"
    );
    assert_eq!(
        err(json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
            {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]})),
        "defaultConstraints[1]: Duplicate value: \"{zone, DoNotSchedule}\""
    );
    assert!(err(json!({"defaultingType": "List", "defaultConstraints": [
        {"maxSkew": 1, "topologyKey": "bad key", "whenUnsatisfiable": "DoNotSchedule"}]}))
    .starts_with(
        "defaultConstraints[0].topologyKey: Invalid value: \"bad key\": name part must consist of"
    ));
}

#[test]
fn registers_every_point_and_events() {
    let r = build(&Value::Null).unwrap();
    assert!(r.pre_filter.is_some() && r.filter.is_some());
    assert!(r.pre_score.is_some() && r.score.is_some());
    let node_delete = ClusterEvent::new(EventResource::Node, ActionType::DELETE);
    let pod_label = ClusterEvent::new(EventResource::AssignedPod, ActionType::UPDATE_POD_LABEL);
    let pod_scale = ClusterEvent::new(
        EventResource::AssignedPod,
        ActionType::UPDATE_POD_SCALE_DOWN,
    );
    assert!(r.events.iter().any(|e| e.covers(&node_delete)));
    assert!(r.events.iter().any(|e| e.covers(&pod_label)));
    assert!(!r.events.iter().any(|e| e.covers(&pod_scale)));
}

/// Enough nodes and pods for the walks to be split over threads on a multi-core machine;
/// the merged counts must equal what one walk would find.
#[test]
fn large_cluster_counts_merge_across_threads() {
    let mut c = Cluster::default();
    for i in 0..200 {
        c.upsert_node(zoned(&format!("n{i}"), &format!("z{}", i % 4)));
    }
    // 8,000 web pods, 2,000 per zone; then 40 more in zone z0.
    for i in 0..8040 {
        let node = if i < 8000 { i % 200 } else { (i % 50) * 4 };
        place(&mut c, web(&format!("w{i}"), &format!("n{node}")));
    }
    assert!(c.nodes().len() + c.pod_count() >= 2 * MIN_COST_PER_THREAD);
    let p = incoming(json!([spread("zone", 40, DO_NOT_SCHEDULE)]));
    let st = filter_all(&plugin(Value::Null), &c, &p).unwrap();
    // z0: 2040 + 1 − 2000 > 40; the other zones pass.
    assert_eq!(passing(&st).len(), 150);
    assert!(passing(&st)
        .iter()
        .all(|n| n[1..].parse::<usize>().unwrap() % 4 != 0));

    // Scores: zone weight ln(6), so z0 nodes score round(2040·1.79) and the rest
    // round(2000·1.79); 100·(max + min − s)/max.
    let p = incoming(json!([spread("zone", 1, SCHEDULE_ANYWAY)]));
    let nodes: Vec<Arc<NodeInfo>> = c.nodes().to_vec();
    let pl = plugin(Value::Null);
    let mut state = CycleState::default();
    assert!(pl.pre_score(&mut state, &p, &nodes, &c).is_success());
    let w = 6f64.ln();
    let (hi, lo) = ((2040.0 * w).round() as i64, (2000.0 * w).round() as i64);
    for n in &nodes {
        let expected = if n.name[1..].parse::<usize>().unwrap() % 4 == 0 {
            hi
        } else {
            lo
        };
        assert_eq!(pl.score(&state, &p, n).unwrap(), expected, "{}", n.name);
    }
}
