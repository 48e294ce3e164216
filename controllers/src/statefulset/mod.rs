//! The StatefulSet controller: pods with stable ordinal names, hostnames and claims, created,
//! updated and removed in the order the set's pod management policy asks for, with revisions
//! recorded as ControllerRevisions (upstream's `pkg/controller/statefulset`).

mod identity;
mod status;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::Resource;

use crate::context::Context;

/// Upstream's controller name, used for metrics and as the events' reporting component.
pub const NAME: &str = "statefulset-controller";

pub(crate) struct Ctx {
    pub ctx: Arc<Context>,
    pub recorder: Recorder,
    /// Consecutive failed syncs per object, for exponential requeue backoff.
    pub failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Ctx {
    /// Records an event on the set; a failure to record never fails the sync.
    pub async fn event(&self, set: &StatefulSet, warning: bool, reason: &str, note: String) {
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
        if let Err(e) = self.recorder.publish(&ev, &set.object_ref(&())).await {
            tracing::debug!(error = %e, "recording statefulset event");
        }
    }
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let reporter = Reporter {
            controller: NAME.to_string(),
            instance: None,
        };
        let state = Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), reporter),
            ctx,
            failures: Default::default(),
        });
        Controller::new(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<PersistentVolumeClaim>::all(client),
            watcher::Config::default(),
        )
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
        Ok(())
    })
}

async fn reconcile(set: Arc<StatefulSet>, state: Arc<Ctx>) -> Result<Action, kube::Error> {
    state.ctx.metrics.inc("workqueue_adds_total", NAME);
    let result = sync::sync(&set, &state).await;
    if result.is_ok() {
        let key = format!("{:?}/{:?}", set.metadata.namespace, set.metadata.name);
        state
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
    result
}

fn error_policy(set: Arc<StatefulSet>, err: &kube::Error, state: Arc<Ctx>) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    tracing::warn!(statefulset = ?set.metadata.name, error = %err, "statefulset sync failed");
    let key = format!("{:?}/{:?}", set.metadata.namespace, set.metadata.name);
    let mut failures = state.failures.lock().unwrap_or_else(|e| e.into_inner());
    let n = failures.entry(key).or_insert(0);
    *n = n.saturating_add(1);
    // 5ms doubling up to about 16 minutes, upstream's workqueue rate limiter.
    let delay = Duration::from_millis(5u64.saturating_mul(1u64 << (*n - 1).min(18)));
    Action::requeue(delay.min(Duration::from_secs(1000)))
}
