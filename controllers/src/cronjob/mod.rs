//! The CronJob controller: starts a Job for each due activation of the schedule (in the
//! CronJob's time zone), honouring concurrencyPolicy, suspend and startingDeadlineSeconds,
//! tracks its running jobs, and prunes finished ones beyond the history limits.

pub mod schedule;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Resource};

use crate::context::Context;

pub const NAME: &str = "cronjob";
const COMPONENT: &str = "cronjob-controller";

/// The time the controller believes it is; tests move it to just before a minute boundary.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] anyhow::Error);

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error(e.into())
    }
}

pub(crate) struct State {
    ctx: Arc<Context>,
    recorder: Recorder,
    clock: Clock,
}

impl State {
    async fn event(&self, cj: &CronJob, warning: bool, reason: &str, note: String) {
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
        if let Err(e) = self.recorder.publish(&ev, &cj.object_ref(&())).await {
            tracing::warn!("cronjob event {reason}: {e}");
        }
    }
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    run_with_clock(ctx, Arc::new(Timestamp::now))
}

pub fn run_with_clock(ctx: Arc<Context>, clock: Clock) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: COMPONENT.into(),
                instance: None,
            },
        );
        let state = Arc::new(State {
            ctx,
            recorder,
            clock,
        });
        Controller::new(
            Api::<CronJob>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(Api::<Job>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
        Ok(())
    })
}

async fn reconcile(cj: Arc<CronJob>, state: Arc<State>) -> Result<Action, Error> {
    state.ctx.metrics.inc("reconciles_total", NAME);
    sync::sync(&cj, &state).await
}

fn error_policy(_cj: Arc<CronJob>, _err: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("reconcile_errors_total", NAME);
    Action::requeue(Duration::from_secs(1))
}
