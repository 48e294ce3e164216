use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Value};

use super::*;
use crate::cache::{pod_info, Cluster};

fn client() -> kube::Client {
    let config = kube::Config::new("http://127.0.0.1:1".parse().expect("valid url"));
    kube::Client::try_from(config).expect("client")
}

fn plugin() -> VolumeBinding {
    VolumeBinding {
        client: client(),
        bind_timeout: Duration::from_secs(600),
        assumed: Mutex::new(Assumed::default()),
    }
}

fn node(name: &str, zone: &str) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}}}))
        .unwrap(),
    )
}

fn pod(name: &str, claims: &[&str]) -> Arc<PodInfo> {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    pod_info(
        serde_json::from_value::<Pod>(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes}}))
        .unwrap(),
    )
}

fn claim(name: &str, class: &str, size: &str, extra: Value) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "resourceVersion": "1"},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}},
        "status": {"phase": "Pending"}});
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn bound_claim(name: &str, pv: &str) -> PersistentVolumeClaim {
    claim(
        name,
        "local",
        "1Gi",
        json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}},
            "spec": {"volumeName": pv}, "status": {"phase": "Bound"}}),
    )
}

fn volume(name: &str, class: &str, size: &str, extra: Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": size}},
        "status": {"phase": "Available"}});
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn zone_affinity(zone: &str) -> Value {
    json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}]}}}})
}

fn class(name: &str, provisioner: &str, mode: &str, extra: Value) -> StorageClass {
    let mut v = json!({"metadata": {"name": name}, "provisioner": provisioner,
        "volumeBindingMode": mode});
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn cluster() -> Cluster {
    let mut c = Cluster::default();
    c.upsert_node(node("node-a", "a"));
    c.upsert_node(node("node-b", "b"));
    c.upsert_node(node("node-c", "c"));
    c.storage_classes.insert(
        "local".into(),
        Arc::new(class(
            "local",
            NOT_SUPPORTED_PROVISIONER,
            "WaitForFirstConsumer",
            json!({}),
        )),
    );
    c.storage_classes.insert(
        "immediate".into(),
        Arc::new(class(
            "immediate",
            "csi.example.com",
            "Immediate",
            json!({}),
        )),
    );
    c.storage_classes.insert(
        "dynamic".into(),
        Arc::new(class(
            "dynamic",
            "csi.example.com",
            "WaitForFirstConsumer",
            json!({"allowedTopologies": [{"matchLabelExpressions": [
                {"key": "topology.kubernetes.io/zone", "values": ["a", "b"]}]}]}),
        )),
    );
    c
}

fn add_claim(c: &mut Cluster, pvc: PersistentVolumeClaim) {
    c.pvcs
        .insert(crate::cache::key_of(&pvc.metadata), Arc::new(pvc));
}

fn add_volume(c: &mut Cluster, pv: PersistentVolume) {
    c.pvs
        .insert(pv.metadata.name.clone().unwrap_or_default(), Arc::new(pv));
}

/// PreFilter, then Filter on every node; the statuses by node name.
fn run(
    p: &VolumeBinding,
    c: &Cluster,
    pod: &PodInfo,
) -> (Status, CycleState, BTreeMap<String, Status>) {
    let mut state = CycleState::default();
    let (status, _) = p.pre_filter(&mut state, pod, c);
    let mut by_node = BTreeMap::new();
    if status.is_success() {
        for n in c.nodes() {
            by_node.insert(n.name.clone(), p.filter(&state, pod, n));
        }
    }
    (status, state, by_node)
}

fn reserved(state: &CycleState) -> Arc<Reserved> {
    state
        .read::<State>(NAME)
        .and_then(|s| s.reserved.clone())
        .expect("reserved volumes")
}

#[tokio::test]
async fn pods_without_claims_skip() {
    let p = plugin();
    let (status, _, _) = run(&p, &cluster(), &pod("p", &[]));
    assert!(status.is_skip());
}

#[tokio::test]
async fn prefilter_rejects_missing_deleted_and_unbound_immediate_claims() {
    let p = plugin();
    let mut c = cluster();
    let (status, _, _) = run(&p, &c, &pod("p", &["data"]));
    assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(
        status.reasons,
        vec![r#"persistentvolumeclaim "data" not found"#]
    );

    add_claim(
        &mut c,
        claim(
            "data",
            "local",
            "1Gi",
            json!({"metadata": {
            "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x"]}}),
        ),
    );
    let (status, _, _) = run(&p, &c, &pod("p", &["data"]));
    assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(
        status.reasons,
        vec![r#"persistentvolumeclaim "data" is being deleted"#]
    );

    add_claim(&mut c, claim("data", "immediate", "1Gi", json!({})));
    let (status, _, _) = run(&p, &c, &pod("p", &["data"]));
    assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(status.reasons, vec![REASON_UNBOUND_IMMEDIATE]);

    // A class the cache does not know is treated as immediate binding.
    add_claim(&mut c, claim("data", "nosuchclass", "1Gi", json!({})));
    let (status, _, _) = run(&p, &c, &pod("p", &["data"]));
    assert_eq!(status.reasons, vec![REASON_UNBOUND_IMMEDIATE]);
}

#[tokio::test]
async fn ephemeral_claims_wait_for_their_controller() {
    let p = plugin();
    let c = cluster();
    let pod = pod_info(
        serde_json::from_value::<Pod>(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [], "volumes": [{"name": "scratch", "ephemeral": {}}]}}))
        .unwrap(),
    );
    let (status, _, _) = run(&p, &c, &pod);
    assert_eq!(
        status.reasons,
        vec![
            r#"waiting for ephemeral volume controller to create the persistentvolumeclaim "p-scratch""#
        ]
    );
}

#[tokio::test]
async fn bound_claims_follow_their_volume_node_affinity() {
    let p = plugin();
    let mut c = cluster();
    add_claim(&mut c, bound_claim("data", "pv-a"));
    add_volume(&mut c, volume("pv-a", "local", "1Gi", zone_affinity("a")));
    let (status, state, by_node) = run(&p, &c, &pod("p", &["data"]));
    assert!(status.is_success());
    assert!(by_node["node-a"].is_success());
    assert_eq!(by_node["node-b"].code, Code::UnschedulableAndUnresolvable);
    assert_eq!(by_node["node-b"].reasons, vec![REASON_NODE_CONFLICT]);

    // Everything is bound: Reserve has nothing for PreBind to do.
    let mut state = state;
    assert!(p
        .reserve(&mut state, &pod("p", &["data"]), "node-a", &c)
        .is_success());
    assert!(state.read::<State>(NAME).unwrap().reserved.is_none());

    c.pvs.clear();
    let (_, _, by_node) = run(&p, &c, &pod("p", &["data"]));
    assert_eq!(by_node["node-a"].reasons, vec![REASON_PV_NOT_EXIST]);
}

#[tokio::test]
async fn unbound_claims_take_the_smallest_fitting_reachable_volume() {
    let p = plugin();
    let mut c = cluster();
    add_claim(&mut c, claim("data", "local", "2Gi", json!({})));
    add_volume(&mut c, volume("pv-tiny", "local", "1Gi", json!({})));
    add_volume(
        &mut c,
        volume("pv-small", "local", "5Gi", zone_affinity("a")),
    );
    add_volume(
        &mut c,
        volume("pv-big", "local", "10Gi", zone_affinity("b")),
    );
    add_volume(&mut c, volume("pv-other-class", "fast", "3Gi", json!({})));
    add_volume(
        &mut c,
        volume(
            "pv-released",
            "local",
            "3Gi",
            json!({"status": {"phase": "Released"}}),
        ),
    );
    add_volume(
        &mut c,
        volume(
            "pv-rwx",
            "local",
            "3Gi",
            json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
        ),
    );
    let pod = pod("p", &["data"]);
    let (status, mut state, by_node) = run(&p, &c, &pod);
    assert!(status.is_success());
    assert!(by_node["node-a"].is_success());
    assert!(by_node["node-b"].is_success());
    assert_eq!(by_node["node-c"].code, Code::UnschedulableAndUnresolvable);
    assert_eq!(by_node["node-c"].reasons, vec![REASON_BIND_CONFLICT]);

    assert!(p.reserve(&mut state, &pod, "node-a", &c).is_success());
    let r = reserved(&state);
    assert_eq!(r.bindings.len(), 1);
    let (pv, _) = &r.bindings[0];
    assert_eq!(pv.metadata.name.as_deref(), Some("pv-small"));
    let claim_ref = pv.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(claim_ref.name.as_deref(), Some("data"));
    assert_eq!(claim_ref.uid.as_deref(), Some("uid-data"));
    assert_eq!(
        annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER),
        Some("yes")
    );
    assert!(r.provisions.is_empty());

    // While reserved, the PV is this claim's: elsewhere the pod has nothing to bind.
    assert_eq!(
        run(&p, &c, &pod).2["node-b"].reasons,
        vec![REASON_BIND_CONFLICT]
    );
    p.unreserve(&mut state, &pod, "node-a");
    let mut state = run(&p, &c, &pod).1;
    assert!(p.reserve(&mut state, &pod, "node-b", &c).is_success());
    assert_eq!(
        reserved(&state).bindings[0].0.metadata.name.as_deref(),
        Some("pv-big")
    );
}

#[tokio::test]
async fn claim_selectors_and_prebound_volumes() {
    let p = plugin();
    let mut c = cluster();
    add_claim(
        &mut c,
        claim(
            "data",
            "local",
            "1Gi",
            json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}),
        ),
    );
    add_volume(&mut c, volume("pv-plain", "local", "1Gi", json!({})));
    let (_, _, by_node) = run(&p, &c, &pod("p", &["data"]));
    assert_eq!(by_node["node-a"].reasons, vec![REASON_BIND_CONFLICT]);
    add_volume(
        &mut c,
        volume(
            "pv-gold",
            "local",
            "1Gi",
            json!({"metadata": {"labels": {"tier": "gold"}}}),
        ),
    );
    let (_, _, by_node) = run(&p, &c, &pod("p", &["data"]));
    assert!(by_node["node-a"].is_success());

    // A PV pre-bound to another claim is never taken; one pre-bound to ours wins even
    // when bigger, but only where it is reachable.
    add_claim(&mut c, claim("other", "local", "1Gi", json!({})));
    add_volume(
        &mut c,
        volume(
            "pv-gold",
            "local",
            "1Gi",
            json!({"metadata": {"labels": {"tier": "gold"}},
            "spec": {"claimRef": {"name": "someone", "namespace": "ns"}}}),
        ),
    );
    add_volume(
        &mut c,
        volume("pv-mine", "local", "50Gi", {
            let mut v = zone_affinity("a");
            merge(
                &mut v,
                json!({"spec": {"claimRef": {"name": "other", "namespace": "ns"}}}),
            );
            v
        }),
    );
    let (_, _, by_node) = run(&p, &c, &pod("p", &["data"]));
    assert_eq!(by_node["node-a"].reasons, vec![REASON_BIND_CONFLICT]);
    let pod = pod("q", &["other"]);
    let (_, mut state, by_node) = run(&p, &c, &pod);
    assert!(by_node["node-a"].is_success());
    assert_eq!(by_node["node-b"].reasons, vec![REASON_BIND_CONFLICT]);
    assert!(p.reserve(&mut state, &pod, "node-a", &c).is_success());
    assert_eq!(
        reserved(&state).bindings[0].0.metadata.name.as_deref(),
        Some("pv-mine")
    );
}

#[tokio::test]
async fn dynamic_provisioning_follows_allowed_topologies() {
    let p = plugin();
    let mut c = cluster();
    add_claim(&mut c, claim("data", "dynamic", "1Gi", json!({})));
    let pod = pod("p", &["data"]);
    let (status, mut state, by_node) = run(&p, &c, &pod);
    assert!(status.is_success());
    assert!(by_node["node-a"].is_success());
    assert!(by_node["node-b"].is_success());
    assert_eq!(by_node["node-c"].reasons, vec![REASON_BIND_CONFLICT]);

    assert!(p.reserve(&mut state, &pod, "node-b", &c).is_success());
    let r = reserved(&state);
    assert!(r.bindings.is_empty());
    assert_eq!(
        annotation(&r.provisions[0].metadata, ANN_SELECTED_NODE),
        Some("node-b")
    );

    // Another pod sharing the claim now sees it being provisioned for node-b.
    let other = pod_info(
        serde_json::from_value::<Pod>(json!({
            "metadata": {"name": "o", "namespace": "ns", "uid": "uid-o"},
            "spec": {"containers": [], "volumes": [
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}))
        .unwrap(),
    );
    let (_, _, by_node) = run(&p, &c, &other);
    assert!(by_node["node-b"].is_success());
    assert_eq!(by_node["node-a"].reasons, vec![REASON_BIND_CONFLICT]);

    p.unreserve(&mut state, &pod, "node-b");
    let (_, _, by_node) = run(&p, &c, &other);
    assert!(by_node["node-a"].is_success());
}

#[tokio::test]
async fn reserved_volumes_are_not_offered_to_the_next_pod() {
    let p = plugin();
    let mut c = cluster();
    add_claim(&mut c, claim("one", "local", "1Gi", json!({})));
    add_claim(&mut c, claim("two", "local", "1Gi", json!({})));
    add_volume(&mut c, volume("pv-1", "local", "1Gi", json!({})));
    let first = pod("first", &["one"]);
    let second = pod("second", &["two"]);

    let (_, mut state, by_node) = run(&p, &c, &first);
    assert!(by_node["node-a"].is_success());
    assert!(p.reserve(&mut state, &first, "node-a", &c).is_success());

    let (_, _, by_node) = run(&p, &c, &second);
    assert_eq!(by_node["node-a"].reasons, vec![REASON_BIND_CONFLICT]);

    // Once the cache holds a newer PV, it speaks for itself and the assumption goes.
    let mut newer = volume(
        "pv-1",
        "local",
        "1Gi",
        json!({"metadata": {"resourceVersion": "2"}}),
    );
    newer.spec.as_mut().unwrap().claim_ref = reserved(&state).bindings[0]
        .0
        .spec
        .as_ref()
        .unwrap()
        .claim_ref
        .clone();
    add_volume(&mut c, newer);
    let (_, _, by_node) = run(&p, &c, &second);
    assert_eq!(by_node["node-a"].reasons, vec![REASON_BIND_CONFLICT]);
    assert!(p.assumed().pvs.is_empty());

    // Unreserving hands the PV back.
    add_volume(&mut c, volume("pv-1", "local", "1Gi", json!({})));
    let (_, mut state, _) = run(&p, &c, &first);
    assert!(p.reserve(&mut state, &first, "node-a", &c).is_success());
    assert_eq!(
        run(&p, &c, &second).2["node-a"].reasons,
        vec![REASON_BIND_CONFLICT]
    );
    p.unreserve(&mut state, &first, "node-a");
    assert!(run(&p, &c, &second).2["node-a"].is_success());
}

#[tokio::test]
async fn bound_and_unbound_conflicts_are_reported_together() {
    let p = plugin();
    let mut c = cluster();
    add_claim(&mut c, bound_claim("data", "pv-a"));
    add_volume(&mut c, volume("pv-a", "local", "1Gi", zone_affinity("a")));
    add_claim(
        &mut c,
        claim(
            "logs",
            "local",
            "1Gi",
            json!({"metadata": {"annotations": {ANN_SELECTED_NODE: "node-a"}}}),
        ),
    );
    let (_, _, by_node) = run(&p, &c, &pod("p", &["data", "logs"]));
    // node-a: the claim is selected for it, but its class cannot provision.
    assert_eq!(by_node["node-a"].reasons, vec![REASON_BIND_CONFLICT]);
    assert_eq!(
        by_node["node-b"].reasons,
        vec![REASON_NODE_CONFLICT, REASON_BIND_CONFLICT]
    );
}

#[tokio::test]
async fn prebind_without_claims_to_bind_is_a_no_op() {
    let p = plugin();
    let state = CycleState::default();
    let pod = pod("p", &[]);
    assert!(p.pre_bind(&state, &pod.pod, "node-a").await.is_success());
}

#[test]
fn args_defaults_and_validation() {
    assert_eq!(parse_args(&Value::Null).unwrap(), Duration::from_secs(600));
    assert_eq!(
        parse_args(&json!({"bindTimeoutSeconds": 30})).unwrap(),
        Duration::from_secs(30)
    );
    assert_eq!(
        parse_args(&json!({"bindTimeoutSeconds": -1}))
            .unwrap_err()
            .to_string(),
        "bindTimeoutSeconds: Invalid value: -1: invalid BindTimeoutSeconds, should not be a negative value"
    );
    let err = parse_args(&json!({"shape": [{"utilization": 0, "score": 0}]}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("turn on the feature gate StorageCapacityScoring"),
        "{err}"
    );
}

#[test]
fn events_cover_storage_objects_and_node_labels() {
    let ev = events();
    let covers = |r, a| ev.iter().any(|e| e.covers(&ClusterEvent::new(r, a)));
    assert!(covers(EventResource::PersistentVolume, ActionType::ADD));
    assert!(covers(
        EventResource::PersistentVolumeClaim,
        ActionType::UPDATE_OTHER
    ));
    assert!(covers(EventResource::StorageClass, ActionType::ADD));
    assert!(covers(EventResource::CSINode, ActionType::UPDATE_OTHER));
    assert!(covers(EventResource::Node, ActionType::UPDATE_NODE_LABEL));
    assert!(!covers(EventResource::Node, ActionType::UPDATE_NODE_TAINT));
    assert!(!covers(EventResource::AssignedPod, ActionType::DELETE));
}

#[tokio::test]
async fn the_smallest_volume_that_fits_wins() {
    let p = plugin();
    let mut c = cluster();
    add_claim(&mut c, claim("data", "local", "2Gi", json!({})));
    for (name, size) in [
        ("pv-8", "8Gi"),
        ("pv-3", "3Gi"),
        ("pv-4", "4Gi"),
        ("pv-1", "1Gi"),
    ] {
        add_volume(&mut c, volume(name, "local", size, json!({})));
    }
    let pod = pod("p", &["data"]);
    let (_, mut state, _) = run(&p, &c, &pod);
    assert!(p.reserve(&mut state, &pod, "node-c", &c).is_success());
    assert_eq!(
        reserved(&state).bindings[0].0.metadata.name.as_deref(),
        Some("pv-3")
    );
}
