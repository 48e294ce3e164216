//! The endpoint controller: the legacy Endpoints object of every Service with a selector,
//! named as the Service, listing its pods as ready or not-ready addresses.

mod subsets;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;

use crate::context::Context;
use crate::endpointslice::{desired, pod_mapper, HEADLESS, TRIGGER_TIME};
use crate::shared::informer::{run as run_controller, watch_and_map, watch_main};
use crate::shared::retry::{is_status, Backoff, ReconcileError};

const NAME: &str = "endpoint";
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (services, main) = watch_main(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        );
        let (pods, pod_triggers) = watch_and_map(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            pod_mapper(services.clone()),
        );
        let (endpoints, ep_triggers) = watch_and_map(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
            |e: &Endpoints| {
                e.namespace()
                    .map(|ns| ObjectRef::<Service>::new(&e.name_any()).within(&ns))
            },
        );
        pods.wait_until_ready().await?;
        endpoints.wait_until_ready().await?;
        tokio::spawn(remove_on_service_deletion(client));
        let state = Arc::new(State {
            ctx,
            pods,
            endpoints,
            backoff: Backoff::default(),
        });
        run_controller(
            services,
            main,
            vec![pod_triggers, ep_triggers],
            reconcile,
            error_policy,
            state,
        )
        .await;
        Ok(())
    })
}

/// A deleted Service takes its Endpoints with it (they carry no owner reference).
async fn remove_on_service_deletion(client: kube::Client) {
    let events = watcher::watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Ok(Event::Delete(svc)) = event else {
            continue;
        };
        let api: Api<Endpoints> =
            Api::namespaced(client.clone(), &svc.namespace().unwrap_or_default());
        match api.delete(&svc.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => tracing::warn!("{NAME}: deleting endpoints of {}: {e}", svc.name_any()),
        }
    }
}

async fn reconcile(svc: Arc<Service>, state: Arc<State>) -> Result<Action, ReconcileError> {
    state.ctx.metrics.inc("workqueue_adds_total", NAME);
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    if desired::selector(&svc).is_none() {
        // Hand-managed Endpoints: not ours to touch.
        return Ok(Action::await_change());
    }
    let pods: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| desired::selects(&svc, p))
        .collect();
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let (subsets, truncated) = subsets::build(&svc, &pod_refs);

    let mut labels: BTreeMap<String, String> = svc.labels().clone();
    labels.remove(HEADLESS);
    if desired::is_headless(&svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    let current = state.endpoints.get(&ObjectRef::new(&name).within(&ns));
    let mut annotations = current
        .as_ref()
        .map(|c| c.annotations().clone())
        .unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    let unchanged = current.as_ref().is_some_and(|c| {
        c.subsets.clone().unwrap_or_default() == subsets
            && c.labels() == &labels
            && c.annotations().get(OVER_CAPACITY) == annotations.get(OVER_CAPACITY)
    });
    if unchanged {
        state.backoff.succeeded(&format!("{ns}/{name}"));
        return Ok(Action::await_change());
    }
    if let Some(t) = trigger_time(&svc, &pods) {
        annotations.insert(TRIGGER_TIME.into(), t);
    }
    let mut want = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            ..Default::default()
        },
        subsets: Some(subsets).filter(|s| !s.is_empty()),
    };
    let api: Api<Endpoints> = Api::namespaced(state.ctx.client.clone(), &ns);
    let result = match current {
        None => api.create(&PostParams::default(), &want).await.map(|_| ()),
        Some(cur) => {
            want.metadata.resource_version = cur.resource_version();
            want.metadata.uid = cur.metadata.uid.clone();
            api.replace(&name, &PostParams::default(), &want)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => {}
        // The cache was behind (its event re-triggers us) or the namespace is going away.
        Err(e) if is_status(&e, 409) || crate::serviceaccount::is_terminating(&e) => {}
        Err(e) => return Err(e.into()),
    }
    state.backoff.succeeded(&format!("{ns}/{name}"));
    Ok(Action::await_change())
}

fn trigger_time(svc: &Service, pods: &[Arc<Pod>]) -> Option<String> {
    let ready_change = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| p.metadata.creation_timestamp.clone())
    };
    pods.iter()
        .filter_map(|p| ready_change(p))
        .chain(svc.metadata.creation_timestamp.clone())
        .max_by_key(|t| t.0)
        .map(|t| crate::endpointslice::format_time(&t))
}

fn error_policy(svc: Arc<Service>, err: &ReconcileError, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
    tracing::warn!("{NAME}: syncing service {key}: {err}");
    Action::requeue(state.backoff.failed(&key))
}
