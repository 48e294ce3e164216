//! Pod GC against a real apiserver: the test plays the kubelet and scheduler by writing pod
//! status and node names.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::podgc;
use serde_json::json;

/// A hang guard only; nothing asserts on how long things take.
const GUARD: Duration = Duration::from_secs(60);

fn pod_json(name: &str, node: Option<&str>, finalizer: bool) -> Pod {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    if finalizer {
        p["metadata"]["finalizers"] = json!(["example.com/hold"]);
    }
    serde_json::from_value(p).expect("pod")
}

async fn set_phase(api: &Api<Pod>, name: &str, phase: &str) {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .expect("pod status");
}

async fn wait_pod(api: &Api<Pod>, name: &str, f: impl Fn(Option<&Pod>) -> bool + Send + 'static) {
    tokio::time::timeout(GUARD, await_condition(api.clone(), name, f))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for pod {name}"))
        .expect("watch");
}

async fn start(threshold: usize) -> (TestServer, kube::Client) {
    let server = TestServer::start().await;
    let client = server.client().await;
    let settings = Settings {
        terminated_pod_gc_threshold: threshold,
        ..Default::default()
    };
    tokio::spawn(podgc::run(Context::new(client.clone(), settings)));
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_pods_beyond_the_threshold_go_oldest_first() {
    let (_server, client) = start(2).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Creation timestamps have second resolution; names break ties in the same order.
    let names = ["a-1", "a-2", "a-3", "a-4"];
    for n in names {
        pods.create(&PostParams::default(), &pod_json(n, None, false))
            .await
            .expect("create pod");
    }
    // A running pod never counts.
    pods.create(&PostParams::default(), &pod_json("runner", None, false))
        .await
        .expect("create pod");
    set_phase(&pods, "runner", "Running").await;
    for n in names {
        set_phase(&pods, n, if n == "a-2" { "Failed" } else { "Succeeded" }).await;
    }
    for gone in ["a-1", "a-2"] {
        wait_pod(&pods, gone, |p| p.is_none()).await;
    }
    for kept in ["a-3", "a-4", "runner"] {
        assert!(
            pods.get_opt(kept).await.expect("get").is_some(),
            "{kept} kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_and_unscheduled_terminating_pods() {
    let (_server, client) = start(100).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
            )
            .expect("node"),
        )
        .await
        .expect("create node");
    // The finalizer keeps the orphan visible after its deletion, to read what was written.
    pods.create(&PostParams::default(), &pod_json("bound", Some("n1"), true))
        .await
        .expect("create pod");
    set_phase(&pods, "bound", "Running").await;
    pods.create(
        &PostParams::default(),
        &pod_json("ghost", Some("nowhere"), true),
    )
    .await
    .expect("create pod");

    // The pod on a node that never existed is failed and force-deleted.
    wait_pod(&pods, "ghost", |p| {
        p.is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    let ghost = pods.get("ghost").await.expect("get");
    let st = ghost.status.clone().unwrap_or_default();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    let cond = st
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("DeletionByPodGC"))
    );
    assert_eq!(ghost.metadata.deletion_grace_period_seconds, Some(0));

    // Deleting the node orphans the pod bound to it.
    nodes
        .delete("n1", &DeleteParams::default())
        .await
        .expect("delete node");
    wait_pod(&pods, "bound", |p| {
        p.is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    let bound = pods.get("bound").await.expect("get");
    assert_eq!(
        bound.status.and_then(|s| s.phase).as_deref(),
        Some("Failed")
    );

    // A terminating pod that was never scheduled is failed and force-deleted; once its
    // finalizer goes, the apiserver removes it.
    pods.create(&PostParams::default(), &pod_json("limbo", None, true))
        .await
        .expect("create pod");
    pods.delete("limbo", &DeleteParams::default())
        .await
        .expect("delete pod");
    wait_pod(&pods, "limbo", |p| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Failed")
    })
    .await;
    for n in ["ghost", "bound", "limbo"] {
        pods.patch(
            n,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("drop finalizer");
        wait_pod(&pods, n, |p| p.is_none()).await;
    }
}
