//! The Node the kubelet keeps: registration, status from the machine, the Lease heartbeat,
//! and what the control plane concludes when the kubelet stops.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use kube_controller_manager::context::{Context, Settings};

use crate::support::{self, GUARD};

fn ready_status(n: Option<&Node>) -> Option<String> {
    n?.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_heartbeats_and_goes_not_ready_when_the_kubelet_stops() {
    let mut n = support::node().await;
    n.wait_pod_node_ready().await;
    let nodes: Api<Node> = Api::all(n.client.clone());
    let node = nodes.get(&n.name).await.expect("node");
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname"), Some(&n.name));
    assert_eq!(
        labels.get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    let status = node.status.clone().unwrap();
    let capacity = status.capacity.unwrap();
    for r in ["cpu", "memory", "ephemeral-storage", "pods"] {
        assert!(capacity.contains_key(r), "capacity lacks {r}: {capacity:?}");
    }
    let allocatable = status.allocatable.unwrap();
    assert_eq!(allocatable["pods"].0, "110");
    let info = status.node_info.unwrap();
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{info:?}"
    );
    assert_eq!(info.kubelet_version, "v1.33.0");
    let port = status
        .daemon_endpoints
        .unwrap()
        .kubelet_endpoint
        .unwrap()
        .port;
    assert!(port > 0);
    let types: Vec<String> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(
        types,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );

    let leases: Api<Lease> = Api::namespaced(n.client.clone(), "kube-node-lease");
    let lease = leases.get(&n.name).await.expect("lease");
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(n.name.as_str()));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owner = &lease.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", n.name.as_str())
    );

    // The node lifecycle controller, with a short grace period, watches the heartbeats.
    let ctx = Context::new(
        n.client.clone(),
        Settings {
            node_monitor_grace_period: Duration::from_secs(3),
            ..Default::default()
        },
    );
    let controller = tokio::spawn(kube_controller_manager::nodelifecycle::run(ctx));
    n.node.take().expect("running node").stop();
    let unknown = |node: Option<&Node>| ready_status(node).as_deref() == Some("Unknown");
    tokio::time::timeout(GUARD, await_condition(nodes.clone(), &n.name, unknown))
        .await
        .expect("node Ready=Unknown")
        .expect("watch");
    let node = nodes.get(&n.name).await.unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let printed = n
        .server
        .kubectl(&["get", "node", &n.name, "--no-headers"])
        .await
        .expect_ok("get node");
    assert!(printed.contains("NotReady"), "{printed}");
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_summary_reports_the_node_and_its_pods() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    n.create_pod(
        "default",
        serde_json::json!({
            "metadata": {"name": "busy"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/busybox:1.36.1-1", "command": ["sh", "-c", "exec sleep 3600"]}],
            },
        }),
    )
    .await;
    n.wait_pod("default", "busy", "Running", |p| {
        support::phase(p) == "Running"
    })
    .await;
    let raw = n
        .server
        .kubectl(&["get", "--raw", "/api/v1/nodes/node-1/proxy/stats/summary"])
        .await
        .expect_ok("stats/summary");
    let doc: serde_json::Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(doc["node"]["nodeName"], "node-1");
    assert!(doc["node"]["memory"]["availableBytes"].as_u64().unwrap() > 0);
    assert!(doc["node"]["fs"]["capacityBytes"].as_u64().unwrap() > 0);
    let pod = doc["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "busy")
        .expect("the pod in the summary");
    assert_eq!(pod["containers"][0]["name"], "c");
    assert!(
        pod["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{pod}"
    );
    let only = n
        .server
        .kubectl(&[
            "get",
            "--raw",
            "/api/v1/nodes/node-1/proxy/stats/summary?only_cpu_and_memory=true",
        ])
        .await
        .expect_ok("stats/summary cpu and memory");
    let only: serde_json::Value = serde_json::from_str(&only).unwrap();
    assert!(only["node"].get("fs").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_gc_removes_unused_images_but_not_the_sandbox_image() {
    // Thresholds any disk passes: every unused image goes.
    let n = support::node_with(|c| {
        c.image_gc_high_threshold_percent = 1;
        c.image_gc_low_threshold_percent = 0;
        c.image_minimum_gc_age = Duration::ZERO;
        c.image_gc_period = Duration::from_millis(300);
    })
    .await;
    // Subscribed first, so a removal after the look below is seen as an event.
    let mut events = n.containerd.events().await;
    let gone = async {
        loop {
            let list = n.containerd.ctr(&["images", "ls", "-q"]);
            if !list.contains("busybox") {
                return list;
            }
            events
                .until(|l| l.contains("/images/delete") && l.contains("busybox"))
                .await;
        }
    };
    let left = tokio::time::timeout(GUARD, gone)
        .await
        .expect("busybox removed");
    assert!(left.contains("registry.k8s.io/pause:3.10"), "{left}");
}
