//! The namespace controller (upstream "namespace"): once a namespace is being deleted it
//! empties it of every namespaced resource, reports progress in upstream's deletion
//! conditions, and finally drops the `kubernetes` spec finalizer through `/finalize`, which
//! lets the apiserver remove the namespace.

pub mod conditions;
pub mod content;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use conditions::Findings;

const NAME: &str = "namespace";
/// The spec finalizer this controller is responsible for.
const FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] anyhow::Error);

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error(e.into())
    }
}

struct State {
    ctx: Arc<Context>,
    /// Consecutive failures per namespace, for exponential retry delays.
    failures: Mutex<HashMap<String, u32>>,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let api: Api<Namespace> = Api::all(ctx.client.clone());
        let state = Arc::new(State {
            ctx,
            failures: Mutex::default(),
        });
        Controller::new(api, watcher::Config::default())
            .run(reconcile, error_policy, state)
            .for_each(|_| async {})
            .await;
        Ok(())
    })
}

fn error_policy(ns: Arc<Namespace>, err: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("reconcile_errors_total", NAME);
    tracing::warn!(namespace = %ns.name_any(), error = %err, "namespace deletion failed");
    let mut failures = state.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures.entry(ns.name_any()).or_default();
    let delay = Duration::from_millis(5).saturating_mul(1u32 << (*n).min(16));
    *n = n.saturating_add(1);
    Action::requeue(delay.min(Duration::from_secs(300)))
}

fn has_spec_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action, Error> {
    state.ctx.metrics.inc("reconcile_total", NAME);
    let name = ns.name_any();
    if ns.metadata.deletion_timestamp.is_none() || !has_spec_finalizer(&ns) {
        state
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        return Ok(Action::await_change());
    }
    let client = state.ctx.client.clone();
    let api: Api<Namespace> = Api::all(client.clone());

    let mut findings = Findings::default();
    let resources = content::deletable_resources(&client, &mut findings).await;
    for (ar, caps) in &resources {
        content::delete_all_of(&client, &name, ar, caps, &mut findings).await;
    }

    // Conditions are written against the latest copy so a concurrent writer is not undone;
    // a conflict just retries the whole (idempotent) pass.
    let mut latest = ns.as_ref().clone();
    let mut status = latest.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Terminating") {
        status.phase = Some("Terminating".into());
        conditions::apply(&mut status, &findings);
        latest.status = Some(status);
        latest = api
            .replace_status(&name, &PostParams::default(), &latest)
            .await?;
    } else if conditions::apply(&mut status, &findings) {
        latest.status = Some(status);
        latest = api
            .replace_status(&name, &PostParams::default(), &latest)
            .await?;
    }

    if findings.discovery_error.is_some()
        || findings.parsing_error.is_some()
        || !findings.delete_errors.is_empty()
    {
        return Err(anyhow::anyhow!(
            "namespace {name} not emptied: {:?} {:?}",
            findings.discovery_error,
            findings.delete_errors
        )
        .into());
    }
    if !findings.remaining.is_empty() {
        // Content goes away on its own schedule (graceful deletion, other finalizers);
        // upstream re-checks after about a second, as here.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    if let Some(spec) = latest.spec.as_mut() {
        if let Some(f) = spec.finalizers.as_mut() {
            f.retain(|f| f != FINALIZER);
        }
    }
    let finalized: Namespace = api
        .replace_subresource("finalize", &name, &PostParams::default(), &latest)
        .await?;
    // The apiserver removes a namespace whose finalizers are all gone when /finalize empties
    // them; should one still be here with nothing holding it, delete it again.
    let spec_empty = finalized
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_none_or(|f| f.is_empty());
    if spec_empty
        && finalized.finalizers().is_empty()
        && finalized.metadata.deletion_timestamp.is_some()
    {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    state
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&name);
    Ok(Action::await_change())
}
