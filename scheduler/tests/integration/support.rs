//! Helpers the scheduler tests share: an in-process scheduler against a real apiserver,
//! Node and Pod builders, and waits on watches with a hang guard.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_component::metrics::Registry;
use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube_scheduler::config::Configuration;
use kube_scheduler::profile;
use kube_scheduler::scheduler::Scheduler;
use serde_json::{json, Value};

/// Only a guard against hangs; nothing asserts on time.
pub const GUARD: Duration = Duration::from_secs(90);

pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A scheduler running in this process; dropping it stops it.
pub struct Running(tokio::task::JoinHandle<()>, pub Arc<Registry>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub const NO_PROFILES: &str =
    "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

/// Starts a scheduler with this KubeSchedulerConfiguration (YAML).
pub async fn start_with(s: &TestServer, config: &str) -> Running {
    let client = s.client().await;
    let config = Configuration::parse(config).expect("configuration");
    let frameworks = profile::build_all(&config, &client).expect("profiles");
    let metrics = Arc::new(Registry::default());
    let scheduler = Scheduler::new(client, &config, frameworks, metrics.clone());
    Running(
        tokio::spawn(async move {
            if let Err(e) = scheduler.run().await {
                panic!("scheduler failed: {e:#}");
            }
        }),
        metrics,
    )
}

pub async fn start(s: &TestServer) -> Running {
    start_with(s, NO_PROFILES).await
}

/// A Ready node with this much cpu/memory/pods and these labels; `extra` is merged into the
/// object (taints, images, ...).
pub fn node(name: &str, cpu: &str, memory: &str, extra: Value) -> Node {
    let mut v = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("node")
}

/// A pod with one container requesting `cpu`; `extra` is merged into the object.
pub fn pod(name: &str, cpu: &str, extra: Value) -> Pod {
    let mut v = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu}}}]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("pod")
}

fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

pub async fn create_nodes(client: &kube::Client, nodes: Vec<Node>) {
    let api: Api<Node> = Api::all(client.clone());
    for n in nodes {
        // Status is not written on create; set it through the status subresource.
        let created = api
            .create(&PostParams::default(), &n)
            .await
            .expect("create node");
        let mut with_status = created.clone();
        with_status.status = n.status.clone();
        api.replace_status(
            created.metadata.name.as_deref().unwrap_or_default(),
            &PostParams::default(),
            &with_status,
        )
        .await
        .expect("node status");
    }
}

pub async fn create_pod(client: &kube::Client, ns: &str, pod: Pod) -> Pod {
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

/// Waits until the pod is bound and returns its node.
pub async fn bound_node(client: &kube::Client, ns: &str, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let cond = |p: Option<&Pod>| {
        p.and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let pod = within(
        &format!("{name} to be bound"),
        await_condition(api, name, cond),
    )
    .await
    .expect("watch")
    .expect("pod");
    pod.spec.and_then(|s| s.node_name).unwrap_or_default()
}

/// Waits until the pod's PodScheduled condition is False and returns its message.
pub async fn unschedulable_message(client: &kube::Client, ns: &str, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let message = |p: Option<&Pod>| -> Option<String> {
        p?.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .and_then(|c| c.message.clone())
    };
    let pod = within(
        &format!("{name} to be unschedulable"),
        await_condition(api, name, move |p: Option<&Pod>| message(p).is_some()),
    )
    .await
    .expect("watch");
    message(pod.as_ref()).unwrap_or_default()
}

/// The notes of the events.k8s.io events about a pod with this reason.
pub async fn event_notes(client: &kube::Client, ns: &str, pod: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// Waits for an event about `pod` with `reason` and returns its note.
pub async fn wait_event(client: &kube::Client, ns: &str, pod: &str, reason: &str) -> String {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    within(&format!("a {reason} event for {pod}"), async {
        loop {
            if let Some(note) = event_notes(client, ns, pod, reason)
                .await
                .into_iter()
                .next()
            {
                return note;
            }
            // Re-check after each change to the events.
            let _ = stream.next().await;
        }
    })
    .await
}
