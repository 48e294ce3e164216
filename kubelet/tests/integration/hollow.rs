//! Hollow nodes: the real kubelet over the in-memory runtime, many in one process.

use std::sync::Arc;
use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kubelet::agent::{self, Network, NodeOptions};
use kubelet::config::{Dirs, KubeletConfiguration};
use kubelet::node::machine::Machine;
use kubelet::runtime::hollow::HollowRuntime;
use serde_json::json;

use crate::support::{phase, ready, wait_list};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_run_pods() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let root = tempfile::tempdir().unwrap();
    let (services, _task) = agent::services(client.clone());
    let machine = Machine::read(root.path());
    let mut nodes = Vec::new();
    for i in 0..10 {
        let node = agent::start(
            client.clone(),
            Arc::new(HollowRuntime::new(&format!("10.128.{i}.0/24"))),
            NodeOptions {
                name: format!("hollow-{i}"),
                node_ip: Some(format!("192.0.2.{}", i + 1)),
                config: KubeletConfiguration {
                    node_status_update_frequency: Duration::from_secs(1),
                    ..Default::default()
                },
                dirs: Dirs::new(&root.path().join(format!("n{i}"))),
                network: Network::None,
                pleg_period: Duration::from_millis(200),
                machine: Some(machine.clone()),
                services: services.clone(),
                serve: false,
            },
        )
        .await
        .expect("hollow node");
        nodes.push(node);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..30 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p{i}")},
            "spec": {
                "nodeName": format!("hollow-{}", i % 10),
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            },
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create");
    }
    let running = wait_list(pods.clone(), "all pods Running", |items| {
        items.len() == 30 && items.iter().all(|p| phase(p) == "Running" && ready(p))
    })
    .await;
    assert!(running.iter().all(|p| p
        .status
        .as_ref()
        .unwrap()
        .pod_ip
        .as_deref()
        .unwrap()
        .starts_with("10.128.")));

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    assert_eq!(
        leases
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        10
    );
    let node_api: Api<Node> = Api::all(client.clone());
    let node_ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let nodes = wait_list(node_api, "nodes Ready", |items| {
        items.len() == 10 && items.iter().all(node_ready)
    })
    .await;
    for n in nodes {
        let st = n.status.unwrap();
        assert!(st
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"));
        assert_eq!(
            st.node_info.unwrap().container_runtime_version,
            format!("hollow://{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
