//! The Job controller: runs a job's pods to the requested number of completions, tracks each
//! finished pod through the `batch.kubernetes.io/job-tracking` finalizer (so a pod can never be
//! counted twice, nor lost before it is counted), and sets the conditions upstream does.

mod conditions;
pub mod indexes;
mod manage;
pub mod pods;
pub mod policy;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{self, applier, trigger_self, Action, ReconcileRequest};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};

use crate::context::Context;
use crate::shared::informer::watch_and_map;
use crate::shared::ownership::controller_of;

pub const NAME: &str = "job";
const COMPONENT: &str = "job-controller";

/// Timing knobs; tests shorten the failure backoff, which upstream fixes at 10s doubling to 6m.
#[derive(Clone, Debug)]
pub struct Tuning {
    pub failure_backoff: Duration,
    pub max_failure_backoff: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            failure_backoff: Duration::from_secs(10),
            max_failure_backoff: Duration::from_secs(360),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] anyhow::Error);

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error(e.into())
    }
}

/// Creations and deletions asked for but not yet seen in the pod cache; until they are, the
/// cache is too old to decide how many pods to add or remove.
#[derive(Default)]
struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Option<Instant>,
}

pub(crate) struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    recorder: Recorder,
    tuning: Tuning,
    /// Pods whose finalizer this controller removed, until the cache shows it gone, so that a
    /// stale cached copy is never counted a second time.
    released: Mutex<HashSet<String>>,
    pending: Mutex<HashMap<String, Pending>>,
    /// Per job: the failure count last seen and when, to space out replacements.
    failures: Mutex<HashMap<String, (i32, Instant)>>,
}

impl State {
    async fn event(&self, job: &Job, warning: bool, reason: &str, note: String) {
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
        if let Err(e) = self.recorder.publish(&ev, &job.object_ref(&())).await {
            tracing::warn!("job event {reason}: {e}");
        }
    }
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    run_with(ctx, Tuning::default())
}

pub fn run_with(ctx: Arc<Context>, tuning: Tuning) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (pods, pod_triggers) = watch_and_map(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            |pod: &Pod| owner_job(pod),
        );
        let (jobs, writer) = reflector::store();
        let job_events = reflector::reflector(
            writer,
            watcher(Api::<Job>::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .applied_objects();
        let triggers = futures::stream::select(
            trigger_self(job_events, ()).boxed(),
            pod_triggers.map(|r| Ok(ReconcileRequest::from(r))).boxed(),
        );
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: COMPONENT.into(),
                instance: None,
            },
        );
        let state = Arc::new(State {
            ctx,
            pods,
            recorder,
            tuning,
            released: Mutex::default(),
            pending: Mutex::default(),
            failures: Mutex::default(),
        });
        applier(
            |job, st| Box::pin(reconcile(job, st)),
            error_policy,
            state,
            jobs,
            triggers,
            controller::Config::default(),
        )
        .for_each(|_| async {})
        .await;
        Ok(())
    })
}

fn owner_job(pod: &Pod) -> Option<ObjectRef<Job>> {
    let r = controller_of(&pod.metadata)?;
    (r.kind == "Job" && r.api_version == "batch/v1")
        .then(|| ObjectRef::new(&r.name).within(pod.metadata.namespace.as_deref().unwrap_or("")))
}

async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action, Error> {
    state.ctx.metrics.inc("reconciles_total", NAME);
    sync::sync(&job, &state).await
}

fn error_policy(job: Arc<Job>, err: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("reconcile_errors_total", NAME);
    tracing::debug!("job {:?}: {err:#}", job.metadata.name);
    Action::requeue(Duration::from_millis(500))
}
