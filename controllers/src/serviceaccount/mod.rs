//! The serviceaccount controller: every active namespace has a `default` ServiceAccount,
//! recreated if someone deletes it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::shared::informer::{run as run_controller, watch_and_map, watch_main};
use crate::shared::retry::{is_status, Backoff, ReconcileError};

const NAME: &str = "serviceaccount";
/// The accounts every namespace gets; upstream's default list is just this one.
const ACCOUNTS: &[&str] = &["default"];

struct State {
    ctx: Arc<Context>,
    accounts: Store<ServiceAccount>,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        // Only the accounts this controller keeps matter: their deletion is what re-triggers.
        let (accounts, triggers) = watch_and_map(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default().fields("metadata.name=default"),
            |sa: &ServiceAccount| sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
        );
        accounts.wait_until_ready().await?;
        let state = Arc::new(State {
            ctx,
            accounts,
            backoff: Backoff::default(),
        });
        let (namespaces, main) =
            watch_main(Api::<Namespace>::all(client), watcher::Config::default());
        run_controller(
            namespaces,
            main,
            vec![triggers],
            reconcile,
            error_policy,
            state,
        )
        .await;
        Ok(())
    })
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action, ReconcileError> {
    state.ctx.metrics.inc("workqueue_adds_total", NAME);
    let name = ns.name_any();
    let active = ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Active")
            == "Active";
    if !active {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(state.ctx.client.clone(), &name);
    for account in ACCOUNTS {
        if state
            .accounts
            .get(&ObjectRef::new(account).within(&name))
            .is_some()
        {
            continue;
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(account.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            // Already there (our cache lags), or the namespace is gone or going: nothing to do.
            Err(e) if is_status(&e, 409) || is_status(&e, 404) || is_terminating(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    state.backoff.succeeded(&name);
    Ok(Action::await_change())
}

/// Creation refused because the namespace is being deleted (upstream's NamespaceTerminating
/// cause on a Forbidden error).
pub(crate) fn is_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403
        && (s.message.contains("being terminated")
            || s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))))
}

fn error_policy(ns: Arc<Namespace>, err: &ReconcileError, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    tracing::warn!("serviceaccount: syncing namespace {}: {err}", ns.name_any());
    let delay: Duration = state.backoff.failed(&ns.name_any());
    Action::requeue(delay)
}
