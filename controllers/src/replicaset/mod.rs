//! The ReplicaSet controller, written once over [`owner::ReplicaOwner`] so that the
//! ReplicationController controller is the same code over another kind.
//!
//! Triggers come from two shared reflectors: the owners themselves, and pods mapped to their
//! controlling owner (or, for orphans, to every owner whose selector matches). The pod cache
//! is complete before the first sync, so a restarted manager sees every pod it made before.

pub mod claim;
pub mod manage;
pub mod owner;
pub mod podutil;
pub mod status;
pub mod tracker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{applier, Action, Config as ControllerConfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;

use crate::context::Context;
use crate::shared::ownership::controller_of;
use owner::ReplicaOwner;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

pub struct State<O: ReplicaOwner> {
    pub ctx: Arc<Context>,
    pub pods: Store<Pod>,
    pub tracker: tracker::Tracker,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    kind: std::marker::PhantomData<fn() -> O>,
}

impl<O: ReplicaOwner> State<O> {
    /// Records an event on the owner; a failure to record never fails the sync.
    pub async fn event(&self, owner: &O, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &owner.object_ref(&())).await {
            tracing::debug!("{}: recording event: {e}", O::CONTROLLER);
        }
    }
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    run_for::<ReplicaSet>(ctx)
}

fn key_of<O: ReplicaOwner>(o: &O) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// The owners a pod event concerns: its controller if that is one of ours, else (an
/// orphan) every owner in its namespace whose selector matches it.
fn owners_of_pod<O: ReplicaOwner>(pod: &Pod, owners: &Store<O>) -> Vec<ObjectRef<O>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = controller_of(&pod.metadata) {
        if r.kind == O::kind(&()) {
            return vec![ObjectRef::new(&r.name).within(&ns)];
        }
        return Vec::new();
    }
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    owners
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| o.selector().is_some_and(|s| s.matches(labels)))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

pub fn run_for<O: ReplicaOwner>(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (owner_store, owner_writer) = reflector::store::<O>();
        let (pod_store, pod_writer) = reflector::store::<Pod>();
        let owner_events = reflector::reflector(
            owner_writer,
            watcher(Api::<O>::all(client.clone()), watcher::Config::default()).default_backoff(),
        );
        let pod_events = reflector::reflector(
            pod_writer,
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff(),
        );
        let (tx, rx) = futures::channel::mpsc::unbounded::<ObjectRef<O>>();
        let owners_for_pods = owner_store.clone();
        let pod_task = tokio::spawn(pod_events.for_each(move |ev| {
            match ev {
                Ok(
                    watcher::Event::Apply(p)
                    | watcher::Event::InitApply(p)
                    | watcher::Event::Delete(p),
                ) => {
                    for r in owners_of_pod(&p, &owners_for_pods) {
                        let _ = tx.unbounded_send(r);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("{}: pod watch: {e}", O::CONTROLLER),
            }
            futures::future::ready(())
        }));
        let _abort_pods = AbortOnDrop(pod_task);
        pod_store.wait_until_ready().await?;

        let state = Arc::new(State::<O> {
            ctx: ctx.clone(),
            pods: pod_store,
            tracker: tracker::Tracker::default(),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: O::COMPONENT.to_string(),
                    instance: None,
                },
            ),
            failures: Mutex::new(HashMap::new()),
            kind: std::marker::PhantomData,
        });
        let forget = state.clone();
        let owner_triggers = owner_events.flat_map(move |ev| {
            let refs: Vec<Result<ObjectRef<O>, watcher::Error>> = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    vec![Ok(ObjectRef::from_obj(&o))]
                }
                Ok(watcher::Event::Delete(o)) => {
                    forget.tracker.forget(&key_of(&o));
                    Vec::new()
                }
                Ok(_) => Vec::new(),
                Err(e) => vec![Err(e)],
            };
            stream::iter(refs)
        });
        let queue = stream::select(owner_triggers, rx.map(Ok));
        applier(
            |o, s| Box::pin(reconcile(o, s)),
            error_policy,
            state,
            owner_store,
            queue,
            ControllerConfig::default(),
        )
        .for_each(|res| {
            match res {
                Ok(_) => ctx.metrics.inc("reconciles_total", O::CONTROLLER),
                Err(e) => {
                    ctx.metrics.inc("reconcile_errors_total", O::CONTROLLER);
                    tracing::warn!("{}: {e}", O::CONTROLLER);
                }
            }
            futures::future::ready(())
        })
        .await;
        Ok(())
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Retries a failing owner after 1s, 2s, 4s ... up to five minutes, as upstream's
/// rate-limited work queue does.
fn error_policy<O: ReplicaOwner>(owner: Arc<O>, _e: &Error, state: Arc<State<O>>) -> Action {
    let mut failures = state.failures.lock().unwrap_or_else(|e| e.into_inner());
    let n = failures.entry(key_of(owner.as_ref())).or_default();
    *n = (*n + 1).min(9);
    Action::requeue(Duration::from_millis(500 << *n).min(Duration::from_secs(300)))
}

async fn reconcile<O: ReplicaOwner>(owner: Arc<O>, state: Arc<State<O>>) -> Result<Action, Error> {
    let key = key_of(owner.as_ref());
    let ns = owner.namespace().unwrap_or_default();
    let owners: Api<O> = Api::namespaced(state.ctx.client.clone(), &ns);
    let Some(selector) = owner.selector() else {
        // Validation keeps these out; an odd object is left alone rather than matching all.
        return Ok(Action::await_change());
    };
    let needs_sync = state.tracker.satisfied(&key, &ns, &state.pods);
    let candidates: Vec<Pod> = state
        .pods
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && podutil::is_active(p))
        .map(|p| p.as_ref().clone())
        .collect();
    let pods_api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
    let pods = claim::claim(&owners, &pods_api, owner.as_ref(), &selector, candidates).await?;
    let failure = if needs_sync && owner.meta().deletion_timestamp.is_none() {
        manage::manage(&state, owner.as_ref(), &key, &pods).await
    } else {
        None
    };
    let now = Timestamp::now();
    status::update(&owners, owner.as_ref(), &pods, failure.as_ref(), now).await?;
    if let Some(f) = failure {
        // Surface as an error so the owner is retried with backoff.
        return Err(Error::Kube(kube::Error::Api(
            kube::core::Status::failure(&f.message, f.reason).boxed(),
        )));
    }
    state
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    // Pods that are Ready but not yet past minReadySeconds become available with no event
    // to announce it: come back when the first of them does.
    let min_ready = owner.min_ready_seconds();
    let next = pods
        .iter()
        .filter_map(|p| podutil::until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(d) if min_ready > 0 => Action::requeue(d + Duration::from_millis(100)),
        _ => Action::await_change(),
    })
}
