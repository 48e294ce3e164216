//! NodeAffinity, NodeName, NodeUnschedulable, TaintToleration, NodePorts, NodeResourcesFit,
//! BalancedAllocation and ImageLocality, each shown choosing or refusing nodes.

use crate::support::*;
use ferrokube_testkit::TestServer;
use serde_json::json;

#[tokio::test]
async fn node_affinity_and_selector() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(
        &client,
        vec![
            node(
                "a",
                "4",
                "8Gi",
                json!({"metadata": {"labels": {"disk": "ssd", "gen": "3"}}}),
            ),
            node(
                "b",
                "4",
                "8Gi",
                json!({"metadata": {"labels": {"disk": "hdd", "gen": "5"}}}),
            ),
            node(
                "c",
                "4",
                "8Gi",
                json!({"metadata": {"labels": {"disk": "ssd", "gen": "5"}}}),
            ),
        ],
    )
    .await;
    // Required: ssd and gen > 4 → only c.
    let required = json!({"spec": {"nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}]}}}}});
    create_pod(&client, "default", pod("req", "100m", required)).await;
    assert_eq!(bound_node(&client, "default", "req").await, "c");

    // Preferred: the heavier term wins (hdd, weight 80, over gen 3, weight 20).
    let preferred = json!({"spec": {"affinity": {"nodeAffinity": {
    "preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}},
        {"weight": 20, "preference": {"matchExpressions": [{"key": "gen", "operator": "In", "values": ["3"]}]}}
    ]}}}});
    create_pod(&client, "default", pod("pref", "100m", preferred)).await;
    assert_eq!(bound_node(&client, "default", "pref").await, "b");

    // Nothing matches.
    let none = json!({"spec": {"nodeSelector": {"disk": "nvme"}}});
    create_pod(&client, "default", pod("none", "100m", none)).await;
    let message = unschedulable_message(&client, "default", "none").await;
    assert!(
        message.starts_with(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        ),
        "{message}"
    );
}

#[tokio::test]
async fn taints_tolerations_and_unschedulable_nodes() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(
        &client,
        vec![
            node("tainted", "4", "8Gi", json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}})),
            node("cordoned", "4", "8Gi", json!({"spec": {"unschedulable": true}})),
            node("soft", "4", "8Gi", json!({"spec": {"taints": [{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]}})),
        ],
    )
    .await;
    // No tolerations: only the PreferNoSchedule node is possible.
    create_pod(&client, "default", pod("plain", "100m", json!({}))).await;
    assert_eq!(bound_node(&client, "default", "plain").await, "soft");

    // Tolerating gpu: both tainted and soft are feasible, and the soft taint scores lower.
    let tolerant = json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}});
    create_pod(&client, "default", pod("gpu", "100m", tolerant)).await;
    assert_eq!(bound_node(&client, "default", "gpu").await, "tainted");

    // A pod no node accepts names each reason.
    let none = json!({"spec": {"nodeSelector": {"x": "y"}, "tolerations": []}});
    create_pod(&client, "default", pod("none", "100m", none)).await;
    let message = unschedulable_message(&client, "default", "none").await;
    assert!(message.starts_with("0/3 nodes are available:"), "{message}");
    assert!(
        message.contains("node(s) didn't match Pod's node affinity/selector"),
        "{message}"
    );
}

#[tokio::test]
async fn host_ports_conflict() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(
        &client,
        vec![
            node("n1", "4", "8Gi", json!({})),
            node("n2", "4", "8Gi", json!({})),
        ],
    )
    .await;
    let with_port = |name: &str| {
        pod(
            name,
            "100m",
            json!({"spec": {"containers": [{"name": "c", "image": "busybox",
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
        )
    };
    create_pod(&client, "default", with_port("a")).await;
    create_pod(&client, "default", with_port("b")).await;
    let (a, b) = (
        bound_node(&client, "default", "a").await,
        bound_node(&client, "default", "b").await,
    );
    assert_ne!(a, b, "two pods with hostPort 8080 must not share a node");
    create_pod(&client, "default", with_port("c")).await;
    let message = unschedulable_message(&client, "default", "c").await;
    assert!(
        message.starts_with("0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."),
        "{message}"
    );
}

#[tokio::test]
async fn resources_fit_and_least_allocated_scoring() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(
        &client,
        vec![
            node("small", "2", "4Gi", json!({})),
            node("big", "8", "16Gi", json!({})),
        ],
    )
    .await;
    // LeastAllocated: the emptier node after placement wins.
    create_pod(&client, "default", pod("first", "1", json!({}))).await;
    assert_eq!(bound_node(&client, "default", "first").await, "big");
    // Only big can hold 3 cpus.
    create_pod(&client, "default", pod("wide", "3", json!({}))).await;
    assert_eq!(bound_node(&client, "default", "wide").await, "big");
    // Extended resources count too.
    create_pod(
        &client,
        "default",
        pod("gpu", "100m", json!({"spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "1"}}}]}})),
    )
    .await;
    let message = unschedulable_message(&client, "default", "gpu").await;
    assert!(
        message.starts_with("0/2 nodes are available: 2 Insufficient example.com/gpu."),
        "{message}"
    );
}

#[tokio::test]
async fn image_locality_prefers_nodes_with_the_image() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    let image = json!({"status": {"images": [{"names": ["docker.io/library/big:1"], "sizeBytes": 900_000_000}]}});
    create_nodes(
        &client,
        vec![
            node("without", "4", "8Gi", json!({})),
            node("with", "4", "8Gi", image),
            node("without2", "4", "8Gi", json!({})),
        ],
    )
    .await;
    create_pod(
        &client,
        "default",
        pod(
            "p",
            "100m",
            json!({"spec": {"containers": [{"name": "c", "image": "docker.io/library/big:1"}]}}),
        ),
    )
    .await;
    assert_eq!(bound_node(&client, "default", "p").await, "with");
}

#[tokio::test]
async fn profiles_by_scheduler_name_and_scheduling_gates() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let config = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources: [{name: cpu, weight: 1}]
"#;
    let _sched = start_with(&s, config).await;
    create_nodes(
        &client,
        vec![
            node("small", "2", "4Gi", json!({})),
            node("big", "8", "16Gi", json!({})),
        ],
    )
    .await;
    // MostAllocated packs onto the fuller node.
    create_pod(
        &client,
        "default",
        pod("packed", "1", json!({"spec": {"schedulerName": "packer"}})),
    )
    .await;
    assert_eq!(bound_node(&client, "default", "packed").await, "small");
    let note = wait_event(&client, "default", "packed", "Scheduled").await;
    assert_eq!(note, "Successfully assigned default/packed to small");

    // A pod for a scheduler that does not exist stays pending and untouched.
    create_pod(
        &client,
        "default",
        pod(
            "other",
            "100m",
            json!({"spec": {"schedulerName": "nobody"}}),
        ),
    )
    .await;

    // A gated pod waits until its gates are removed.
    create_pod(
        &client,
        "default",
        pod(
            "gated",
            "100m",
            json!({"spec": {"schedulingGates": [{"name": "wait"}]}}),
        ),
    )
    .await;
    // A pod created after it is scheduled while the gated one is held.
    create_pod(&client, "default", pod("after", "100m", json!({}))).await;
    let _ = bound_node(&client, "default", "after").await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), "default");
    let held = pods.get("gated").await.expect("gated");
    assert!(held
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none());
    pods.patch(
        "gated",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"schedulingGates": null}})),
    )
    .await
    .expect("ungate");
    let _ = bound_node(&client, "default", "gated").await;
    let other = pods.get("other").await.expect("other");
    assert!(other.spec.and_then(|s| s.node_name).is_none());
}
