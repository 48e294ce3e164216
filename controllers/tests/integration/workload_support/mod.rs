//! Helpers the workload tests share: starting controllers in-process, playing the kubelet,
//! and waiting on watches with a hang guard.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_testkit::TestServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::registry::RunFn;
use serde_json::json;

/// Only a guard against hangs; nothing asserts on time.
pub const GUARD: Duration = Duration::from_secs(90);

pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A controller running in this process; dropping it stops it, as a killed manager would.
pub struct Running(Option<tokio::task::JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

impl Running {
    /// Stops it abruptly, requests in flight included, and waits until it is gone.
    pub async fn kill(mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

pub async fn start(s: &TestServer, run: RunFn) -> Running {
    let ctx: Arc<Context> = Context::new(s.client().await, Settings::default());
    Running(Some(tokio::spawn(async move {
        if let Err(e) = run(ctx).await {
            panic!("controller failed: {e:#}");
        }
    })))
}

/// Marks a pod Running and Ready, as a kubelet would once its containers started.
pub async fn make_ready(pods: &Api<Pod>, name: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
        ],
        "containerStatuses": [{
            "name": "app", "ready": true, "restartCount": 0, "image": "busybox", "imageID": "",
            "started": true, "state": {"running": {"startedAt": now}},
        }],
    }});
    let _ = pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await;
}

/// A pretend kubelet: every pod that appears in `ns` is made Ready, until dropped.
pub fn kubelet(client: kube::Client, ns: &str) -> Running {
    let pods: Api<Pod> = Api::namespaced(client, ns);
    Running(Some(tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(pods.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects());
        while let Some(ev) = events.next().await {
            let Ok(pod) = ev else { continue };
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if !ready && pod.metadata.deletion_timestamp.is_none() {
                make_ready(&pods, &pod.name_any()).await;
            }
        }
    })))
}

pub async fn create_namespace(client: &kube::Client, name: &str) {
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nss.create(&Default::default(), &ns)
        .await
        .expect("create namespace");
}

/// Live (not terminating) pods in `ns` matching `selector`.
pub async fn live_pods(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until `cond` holds for the named object.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, cond: impl Fn(&K) -> bool)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let cond = move |o: Option<&K>| o.is_some_and(&cond);
    within(what, await_condition(api.clone(), name, cond))
        .await
        .expect("watch");
}

/// Waits until the pods matching `selector` satisfy `cond`, re-checking on every pod event.
pub async fn wait_pods(
    pods: &Api<Pod>,
    selector: &str,
    what: &str,
    cond: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    within(what, async {
        let mut events = std::pin::pin!(watcher(
            pods.clone(),
            watcher::Config::default().labels(selector)
        )
        .default_backoff()
        .touched_objects());
        loop {
            let now = live_pods(pods, selector).await;
            if cond(&now) {
                return now;
            }
            let _ = events.next().await;
        }
    })
    .await
}
