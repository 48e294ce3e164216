//! The TTL-after-finished controller: deletes a finished Job (Complete or Failed) once
//! `ttlSecondsAfterFinished` has passed since it finished, cascading to its pods.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::context::Context;
use crate::shared::retry::{is_status, Backoff, ReconcileError};

pub const NAME: &str = "ttl-after-finished";

struct State {
    ctx: Arc<Context>,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let jobs = Api::<Job>::all(ctx.client.clone());
        let state = Arc::new(State {
            ctx,
            backoff: Backoff::default(),
        });
        Controller::new(jobs, watcher::Config::default())
            .run(reconcile, error_policy, state)
            .for_each(|_| async {})
            .await;
        Ok(())
    })
}

/// When the job finished: the transition time of its True Complete or Failed condition.
fn finished_at(job: &Job) -> Option<Timestamp> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// How long until the job may be deleted (zero when it may be now), or None when it is
/// not for this controller: no TTL, not finished, or already being deleted.
fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let expires = finished_at(job)?.checked_add(jiff_secs(ttl)).ok()?;
    Some(if expires <= now {
        Duration::ZERO
    } else {
        now.duration_until(expires).unsigned_abs()
    })
}

fn jiff_secs(s: i32) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::from_secs(i64::from(s))
}

async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action, ReconcileError> {
    state.ctx.metrics.inc("reconciles_total", NAME);
    let key = format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or(""),
        job.metadata.name.as_deref().unwrap_or("")
    );
    let action = clean_up(&job, &state).await?;
    state.backoff.succeeded(&key);
    Ok(action)
}

async fn clean_up(job: &Job, state: &State) -> Result<Action, ReconcileError> {
    match time_left(job, Timestamp::now()) {
        None => return Ok(Action::await_change()),
        Some(left) if !left.is_zero() => return Ok(Action::requeue(left)),
        Some(_) => {}
    }
    let ns = job.metadata.namespace.as_deref().unwrap_or("");
    let name = job.metadata.name.as_deref().unwrap_or("");
    let api: Api<Job> = Api::namespaced(state.ctx.client.clone(), ns);
    // The cached copy may predate a TTL change (or the job may have been recreated), so the
    // decision is taken again on the live object before anything is deleted.
    let Some(fresh) = api.get_opt(name).await? else {
        return Ok(Action::await_change());
    };
    match time_left(&fresh, Timestamp::now()) {
        None => return Ok(Action::await_change()),
        Some(left) if !left.is_zero() => return Ok(Action::requeue(left)),
        Some(_) => {}
    }
    // Foreground, as upstream: the Job stays visible until its pods are gone. The uid
    // precondition keeps a newer Job of the same name safe.
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

fn error_policy(job: Arc<Job>, err: &ReconcileError, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("reconcile_errors_total", NAME);
    let key = format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or(""),
        job.metadata.name.as_deref().unwrap_or("")
    );
    tracing::debug!("ttl-after-finished {key}: {err:#}");
    Action::requeue(state.backoff.failed(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, cond: Option<(&str, &str)>) -> Job {
        let mut j = json!({"metadata": {"name": "j"}, "spec": {"template": {}}});
        if let Some(t) = ttl {
            j["spec"]["ttlSecondsAfterFinished"] = json!(t);
        }
        if let Some((type_, time)) = cond {
            j["status"] = json!({"conditions": [
                {"type": type_, "status": "True", "lastTransitionTime": time}
            ]});
        }
        serde_json::from_value(j).expect("job")
    }

    #[test]
    fn expiry_from_the_finish_condition() {
        let now: Timestamp = "2024-01-01T00:00:10Z".parse().expect("ts");
        let at = "2024-01-01T00:00:00Z";
        assert_eq!(time_left(&job(None, Some(("Complete", at))), now), None);
        assert_eq!(time_left(&job(Some(5), None), now), None);
        assert_eq!(time_left(&job(Some(5), Some(("Suspended", at))), now), None);
        assert_eq!(
            time_left(&job(Some(5), Some(("Failed", at))), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            time_left(&job(Some(30), Some(("Complete", at))), now),
            Some(Duration::from_secs(20))
        );
    }
}
