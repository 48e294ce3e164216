//! Node lifecycle and taint eviction against a real apiserver, with the test playing the
//! kubelet (Ready heartbeats) on a grace period made short through Settings.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use kube_controller_manager::context::{Context, Settings};
use serde_json::json;

const HANG_GUARD: Duration = Duration::from_secs(60);

async fn start(grace: Duration) -> (TestServer, kube::Client) {
    let s = TestServer::start().await;
    let client = s.client().await;
    let ctx = Context::new(
        client.clone(),
        Settings {
            node_monitor_grace_period: grace,
            ..Settings::default()
        },
    );
    tokio::spawn(kube_controller_manager::nodelifecycle::run(ctx.clone()));
    tokio::spawn(kube_controller_manager::tainteviction::run(ctx));
    (s, client)
}

/// Posts a node status as a kubelet does, with a fresh heartbeat.
async fn heartbeat(api: &Api<Node>, name: &str, ready: &str) {
    // The controller writes taints concurrently; like a kubelet, retry on conflicts.
    loop {
        match try_heartbeat(api, name, ready).await {
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            other => return other.map(|_| ()).unwrap(),
        }
    }
}

async fn try_heartbeat(api: &Api<Node>, name: &str, ready: &str) -> kube::Result<Node> {
    let mut n = api.get(name).await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    n.status = Some(
        serde_json::from_value(json!({"conditions": [{
            "type": "Ready", "status": ready, "reason": "KubeletReady",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }]}))
        .unwrap(),
    );
    api.replace_status(name, &PostParams::default(), &n).await
}

fn has_taint(n: &Node, key: &str, effect: &str) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

async fn wait_node(
    api: &Api<Node>,
    name: &str,
    what: &str,
    f: impl Fn(&Node) -> bool + Send + 'static,
) -> Node {
    let cond = move |o: Option<&Node>| o.is_some_and(&f);
    match tokio::time::timeout(HANG_GUARD, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(n))) => n,
        _ => panic!(
            "node {name} never became {what}: {:?}",
            api.get(name).await.ok()
        ),
    }
}

fn ready_status(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn pod_on(name: &str, node: &str, toleration_seconds: Option<i64>) -> Pod {
    let mut spec = json!({"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]});
    if let Some(s) = toleration_seconds {
        spec["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": s}]);
    } else {
        spec["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute"}]);
    }
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_turns_unknown_and_tainted_then_recovers() {
    let (_s, client) = start(Duration::from_secs(2)).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    heartbeat(&nodes, "n1", "True").await;
    // The kubelet goes quiet: after the grace period Ready is Unknown and the node unreachable.
    let n = wait_node(&nodes, "n1", "unreachable", |n| {
        ready_status(n).as_deref() == Some("Unknown")
            && has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
    })
    .await;
    let ready = n
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

    // The kubelet is back: the taints go.
    heartbeat(&nodes, "n1", "True").await;
    wait_node(&nodes, "n1", "untainted", |n| {
        !has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
            && !has_taint(n, "node.kubernetes.io/not-ready", "NoExecute")
    })
    .await;

    // The kubelet reports NotReady: the not-ready taint, not the unreachable one.
    heartbeat(&nodes, "n1", "False").await;
    let n = wait_node(&nodes, "n1", "not-ready", |n| {
        has_taint(n, "node.kubernetes.io/not-ready", "NoExecute")
    })
    .await;
    assert!(!has_taint(
        &n,
        "node.kubernetes.io/unreachable",
        "NoExecute"
    ));
}

async fn wait_evicted(pods: &Api<Pod>, name: &str) {
    let cond = |o: Option<&Pod>| o.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
    let p = tokio::time::timeout(HANG_GUARD, await_condition(pods.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("{name} was never evicted"))
        .unwrap()
        .unwrap();
    let target = p
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget");
    assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
}

/// Adds a NoExecute taint as an administrator would, retrying on the controller's writes.
async fn add_taint(nodes: &Api<Node>, name: &str, key: &str) {
    loop {
        let mut n = nodes.get(name).await.unwrap();
        let spec = n.spec.get_or_insert_with(Default::default);
        spec.taints
            .get_or_insert_with(Vec::new)
            .push(serde_json::from_value(json!({"key": key, "effect": "NoExecute"})).unwrap());
        match nodes.replace(name, &PostParams::default(), &n).await {
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            other => return other.map(|_| ()).unwrap(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taint_eviction_honours_toleration_seconds() {
    let (_s, client) = start(Duration::from_secs(2)).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    heartbeat(&nodes, "n2", "True").await;
    // Finalizers keep the pods readable after deletion, so the test can tell evicted from not.
    // "intolerant" gets only the apiserver's default 300s not-ready/unreachable tolerations.
    let mut forever = pod_on("forever", "n2", None);
    forever.spec.as_mut().unwrap().tolerations =
        Some(vec![
            serde_json::from_value(json!({"operator": "Exists"})).unwrap()
        ]);
    let mut intolerant = pod_on("intolerant", "n2", None);
    intolerant.spec.as_mut().unwrap().tolerations = None;
    for mut p in [pod_on("brief", "n2", Some(1)), forever, intolerant] {
        p.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        pods.create(&PostParams::default(), &p).await.unwrap();
    }

    wait_node(&nodes, "n2", "unreachable", |n| {
        has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
    })
    .await;
    // "brief" tolerated unreachability for one second.
    wait_evicted(&pods, "brief").await;
    // A taint "intolerant" does not tolerate at all takes it at once.
    add_taint(&nodes, "n2", "example.com/drain").await;
    wait_evicted(&pods, "intolerant").await;
    // "forever" tolerates everything without limit and stays.
    assert!(pods
        .get("forever")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_none());
}
