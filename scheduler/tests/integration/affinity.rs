//! InterPodAffinity and PodTopologySpread against a real apiserver.

use crate::support::*;
use ferrokube_testkit::TestServer;
use serde_json::json;

fn zoned(name: &str, zone: &str) -> k8s_openapi::api::core::v1::Node {
    node(
        name,
        "8",
        "16Gi",
        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}}),
    )
}

#[tokio::test]
async fn pod_affinity_and_anti_affinity() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(
        &client,
        vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
    )
    .await;
    create_pod(
        &client,
        "default",
        pod(
            "db",
            "100m",
            json!({"metadata": {"labels": {"app": "db"}}, "spec": {"nodeName": "b1"}}),
        ),
    )
    .await;

    // Required affinity to the db's zone.
    let near = json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}}});
    create_pod(&client, "default", pod("near", "100m", near)).await;
    assert_eq!(bound_node(&client, "default", "near").await, "b1");

    // Required anti-affinity per host among web pods: three webs take three nodes, the
    // fourth has nowhere to go.
    for i in 0..4 {
        let web = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}});
        create_pod(&client, "default", pod(&format!("web-{i}"), "100m", web)).await;
        if i < 3 {
            bound_node(&client, "default", &format!("web-{i}")).await;
        }
    }
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(bound_node(&client, "default", &format!("web-{i}")).await);
    }
    nodes.sort();
    assert_eq!(nodes, ["a1", "a2", "b1"]);
    let message = unschedulable_message(&client, "default", "web-3").await;
    assert!(
        message.starts_with(
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
        ),
        "{message}"
    );

    // Affinity to something that does not exist.
    let lonely = json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "ghost"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}}});
    create_pod(&client, "default", pod("lonely", "100m", lonely)).await;
    let message = unschedulable_message(&client, "default", "lonely").await;
    assert!(
        message.starts_with("0/3 nodes are available: 3 node(s) didn't match pod affinity rules."),
        "{message}"
    );
}

#[tokio::test]
async fn topology_spread_keeps_zones_even() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(
        &client,
        vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
    )
    .await;
    let spread = json!({"metadata": {"labels": {"app": "s"}}, "spec": {"topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app": "s"}}}]}});
    let mut zones = Vec::new();
    for i in 0..4 {
        create_pod(
            &client,
            "default",
            pod(&format!("s-{i}"), "100m", spread.clone()),
        )
        .await;
        let n = bound_node(&client, "default", &format!("s-{i}")).await;
        zones.push(if n == "b1" { "b" } else { "a" });
    }
    let a = zones.iter().filter(|z| **z == "a").count();
    assert_eq!(a, 2, "zones: {zones:?}");

    // A node without the zone label cannot take a spread pod.
    create_nodes(&client, vec![node("bare", "8", "16Gi", json!({}))]).await;
    let pinned = json!({"metadata": {"labels": {"app": "s"}}, "spec": {"nodeName": null, "nodeSelector": {"kubernetes.io/hostname": "bare"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "s"}}}]}});
    create_pod(&client, "default", pod("pinned", "100m", pinned)).await;
    let message = unschedulable_message(&client, "default", "pinned").await;
    assert!(
        message.contains(
            "node(s) didn't match pod topology spread constraints (missing required label)"
        ),
        "{message}"
    );
}
