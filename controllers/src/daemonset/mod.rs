//! The DaemonSet controller: one pod on every node the template admits, replaced node by node
//! on template changes within maxUnavailable/maxSurge, with revisions recorded as
//! ControllerRevisions (upstream's `pkg/controller/daemon`).

mod eligibility;
mod pod;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;

use crate::context::Context;

/// Upstream's controller name, used for metrics and as the events' reporting component.
pub const NAME: &str = "daemonset-controller";

pub(crate) struct Ctx {
    pub ctx: Arc<Context>,
    pub recorder: Recorder,
    /// Consecutive failed syncs per object, for exponential requeue backoff.
    pub failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Every node, from one shared watch.
    pub nodes: Store<Node>,
}

impl Ctx {
    /// Records an event on the DaemonSet; a failure to record never fails the sync.
    pub async fn event(&self, ds: &DaemonSet, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &ds.object_ref(&())).await {
            tracing::debug!(error = %e, "recording daemonset event");
        }
    }
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (nodes, writer) = reflector::store::<Node>();
        let node_events = reflector::reflector(
            writer,
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .touched_objects();
        let state = Arc::new(Ctx {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: NAME.to_string(),
                    instance: None,
                },
            ),
            ctx,
            failures: Default::default(),
            nodes,
        });
        let controller = Controller::new(
            Api::<DaemonSet>::all(client.clone()),
            watcher::Config::default(),
        );
        // A node change can change where every DaemonSet belongs.
        let node_changed = node_events.filter_map(|n| futures::future::ready(n.ok().map(|_| ())));
        controller
            .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .owns(
                Api::<ControllerRevision>::all(client),
                watcher::Config::default(),
            )
            .reconcile_all_on(node_changed)
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await;
        Ok(())
    })
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<Ctx>) -> Result<Action, kube::Error> {
    state.ctx.metrics.inc("workqueue_adds_total", NAME);
    // Until the first node list arrives, "no nodes" would mean "delete every pod".
    if state.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let result = sync::sync(&ds, &state).await;
    if result.is_ok() {
        let key = format!("{:?}/{:?}", ds.metadata.namespace, ds.metadata.name);
        state
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
    result
}

fn error_policy(ds: Arc<DaemonSet>, err: &kube::Error, state: Arc<Ctx>) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    tracing::warn!(daemonset = ?ds.metadata.name, error = %err, "daemonset sync failed");
    let key = format!("{:?}/{:?}", ds.metadata.namespace, ds.metadata.name);
    let mut failures = state.failures.lock().unwrap_or_else(|e| e.into_inner());
    let n = failures.entry(key).or_insert(0);
    *n = n.saturating_add(1);
    // 5ms doubling up to about 16 minutes, upstream's workqueue rate limiter.
    let delay = Duration::from_millis(5u64.saturating_mul(1u64 << (*n - 1).min(18)));
    Action::requeue(delay.min(Duration::from_secs(1000)))
}
