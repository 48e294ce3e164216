//! ClusterRole aggregation (upstream's `pkg/controller/clusterroleaggregation`): a ClusterRole
//! with an aggregationRule gets, as its rules, the union of the rules of every ClusterRole its
//! selectors match, taken in name order without duplicates.
//!
//! Any ClusterRole change may change what an aggregating role should hold, so every change
//! wakes all aggregating roles; they are read from the same reflector whose stream wakes them,
//! so a sync never runs on a store older than its trigger.

use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Future, StreamExt};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{applier, trigger_with, Action, Config};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};

use crate::context::Context;
use crate::disruption::backoff::Backoff;
use crate::disruption::SyncError;

pub const NAME: &str = "clusterrole-aggregation";

struct State {
    ctx: Arc<Context>,
    roles: Store<ClusterRole>,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (store, writer) = reflector::store::<ClusterRole>();
        let events = reflector::reflector(
            writer,
            watcher(Api::<ClusterRole>::all(client), watcher::Config::default()).default_backoff(),
        )
        .touched_objects();
        let aggregators = store.clone();
        let queue = trigger_with(events, move |_: ClusterRole| {
            aggregators
                .state()
                .iter()
                .filter(|r| r.aggregation_rule.is_some())
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        });
        let state = Arc::new(State {
            ctx,
            roles: store.clone(),
            backoff: Backoff::default(),
        });
        applier(
            |role, st| -> Pin<Box<dyn Future<Output = Result<Action, SyncError>> + Send>> {
                Box::pin(reconcile(role, st))
            },
            error_policy,
            state,
            store,
            queue,
            Config::default(),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
        Ok(())
    })
}

fn selected(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Vec<Arc<ClusterRole>> {
    let Some(rule) = &role.aggregation_rule else {
        return Vec::new();
    };
    let selectors: Vec<ferrokube_common::labels::Selector> = rule
        .cluster_role_selectors
        .iter()
        .flatten()
        .filter_map(|s| serde_json::to_value(s).ok())
        .filter_map(|v| ferrokube_common::labels::Selector::from_label_selector(&v).ok())
        .collect();
    let mut out: Vec<Arc<ClusterRole>> = all
        .iter()
        .filter(|r| r.metadata.name != role.metadata.name)
        .filter(|r| {
            let labels = r.metadata.labels.clone().unwrap_or_default();
            selectors.iter().any(|s| s.matches(&labels))
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// The aggregated rules: each distinct rule once, in the order first met.
pub fn aggregate(sources: &[Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let mut rules: Vec<PolicyRule> = Vec::new();
    for r in sources {
        for rule in r.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    rules
}

async fn reconcile(role: Arc<ClusterRole>, st: Arc<State>) -> Result<Action, SyncError> {
    st.ctx.metrics.inc("workqueue_adds_total", NAME);
    if role.aggregation_rule.is_none() {
        return Ok(Action::await_change());
    }
    let all = st.roles.state();
    let rules = aggregate(&selected(&role, &all));
    if role.rules.clone().unwrap_or_default() == rules {
        return Ok(Action::await_change());
    }
    let mut updated = role.as_ref().clone();
    updated.rules = Some(rules);
    let name = role.metadata.name.clone().unwrap_or_default();
    Api::<ClusterRole>::all(st.ctx.client.clone())
        .replace(&name, &PostParams::default(), &updated)
        .await?;
    st.backoff.reset(&name);
    Ok(Action::await_change())
}

fn error_policy(role: Arc<ClusterRole>, err: &SyncError, st: Arc<State>) -> Action {
    st.ctx.metrics.inc("workqueue_retries_total", NAME);
    let name = role.metadata.name.clone().unwrap_or_default();
    tracing::warn!(clusterrole = %name, error = %err, "clusterrole aggregation failed");
    Action::requeue(st.backoff.next(&name))
}
