//! Node IPAM against a real apiserver: each node gets its own pod range from the cluster
//! CIDR, and a deleted node's range is handed out again.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use kube_controller_manager::context::{Context, Settings};
use serde_json::json;

const HANG_GUARD: Duration = Duration::from_secs(60);

async fn create_and_wait(api: &Api<Node>, name: &str) -> String {
    let node: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &node).await.unwrap();
    let cond = |o: Option<&Node>| o.and_then(|n| n.spec.as_ref()?.pod_cidr.as_ref()).is_some();
    let n = tokio::time::timeout(HANG_GUARD, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("{name} never got a pod CIDR"))
        .unwrap()
        .unwrap();
    let spec = n.spec.unwrap();
    let cidr = spec.pod_cidr.unwrap();
    assert_eq!(spec.pod_cidrs, Some(vec![cidr.clone()]));
    cidr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_ranges_and_ranges_are_reused() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let settings = Settings {
        cluster_cidr: Some("10.244.0.0/16".into()),
        node_cidr_mask_size: 24,
        ..Settings::default()
    };
    tokio::spawn(kube_controller_manager::nodeipam::run(Context::new(
        client.clone(),
        settings,
    )));
    let nodes: Api<Node> = Api::all(client);
    let a = create_and_wait(&nodes, "a").await;
    let b = create_and_wait(&nodes, "b").await;
    assert_eq!(a, "10.244.0.0/24");
    assert_eq!(b, "10.244.1.0/24");

    nodes.delete("a", &DeleteParams::default()).await.unwrap();
    tokio::time::timeout(
        HANG_GUARD,
        await_condition(
            nodes.clone(),
            "a",
            kube::runtime::conditions::is_deleted(""),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    // The freed range is the lowest one again.
    assert_eq!(create_and_wait(&nodes, "c").await, "10.244.0.0/24");
}
