//! The Deployment controller: rolling updates and recreates through replica sets, revision
//! history, pause/resume, proportional scaling and the Progressing/Available conditions.
//!
//! Triggers come from three shared reflectors: deployments, replica sets (mapped to their
//! controlling deployment, orphans to every deployment whose selector matches) and pods
//! (mapped through their RS, which Recreate needs to know when old pods are gone).

pub mod claim;
pub mod conditions;
pub mod newrs;
pub mod recreate;
pub mod rolling;
pub mod scale;
pub mod status;
pub mod util;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{applier, Action, Config as ControllerConfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::shared::ownership::controller_of;
use util::*;

const NAME: &str = "deployment";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

pub struct State {
    pub ctx: Arc<Context>,
    pub rss: Store<ReplicaSet>,
    pub pods: Store<Pod>,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
}

impl State {
    pub async fn event(&self, d: &Deployment, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &d.object_ref(&())).await {
            tracing::debug!("deployment: recording event: {e}");
        }
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

fn deployments_of_rs(
    rs: &ReplicaSet,
    deployments: &Store<Deployment>,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(r) = controller_of(&rs.metadata) {
        if r.kind == "Deployment" {
            return vec![ObjectRef::new(&r.name).within(&ns)];
        }
        return Vec::new();
    }
    let empty = Default::default();
    let labels = rs.metadata.labels.as_ref().unwrap_or(&empty);
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| claim::selector(d).is_some_and(|s| s.matches(labels)))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// Drives a reflector in the background, sending what `map` derives from each change.
fn watch_into<K, F>(
    api: Api<K>,
    tx: futures::channel::mpsc::UnboundedSender<ObjectRef<Deployment>>,
    map: F,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: Fn(&K) -> Vec<ObjectRef<Deployment>> + Send + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let task = tokio::spawn(events.for_each(move |ev| {
        match ev {
            Ok(
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o),
            ) => {
                for r in map(&o) {
                    let _ = tx.unbounded_send(r);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("deployment: watch of {}: {e}", K::kind(&())),
        }
        futures::future::ready(())
    }));
    (store, task)
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (d_store, d_writer) = reflector::store::<Deployment>();
        let d_events = reflector::reflector(
            d_writer,
            watcher(
                Api::<Deployment>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
        );
        let (tx, rx) = futures::channel::mpsc::unbounded::<ObjectRef<Deployment>>();
        let for_rs = d_store.clone();
        let (rss, rs_task) = watch_into(
            Api::<ReplicaSet>::all(client.clone()),
            tx.clone(),
            move |rs| deployments_of_rs(rs, &for_rs),
        );
        let (rss_for_pods, for_pods) = (rss.clone(), d_store.clone());
        let (pods, pod_task) = watch_into(Api::<Pod>::all(client.clone()), tx, move |p: &Pod| {
            let ns = p.namespace().unwrap_or_default();
            controller_of(&p.metadata)
                .filter(|r| r.kind == "ReplicaSet")
                .and_then(|r| rss_for_pods.get(&ObjectRef::new(&r.name).within(&ns)))
                .map(|rs| deployments_of_rs(&rs, &for_pods))
                .unwrap_or_default()
        });
        let _guard = AbortOnDrop(vec![rs_task, pod_task]);
        rss.wait_until_ready().await?;
        pods.wait_until_ready().await?;

        let state = Arc::new(State {
            ctx: ctx.clone(),
            rss,
            pods,
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: "deployment-controller".into(),
                    instance: None,
                },
            ),
            failures: Mutex::new(HashMap::new()),
        });
        let own = d_events.flat_map(|ev| {
            let refs: Vec<Result<ObjectRef<Deployment>, watcher::Error>> = match ev {
                Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => {
                    vec![Ok(ObjectRef::from_obj(&d))]
                }
                Ok(_) => Vec::new(),
                Err(e) => vec![Err(e)],
            };
            stream::iter(refs)
        });
        applier(
            |d, s| Box::pin(reconcile(d, s)),
            error_policy,
            state,
            d_store,
            stream::select(own, rx.map(Ok)),
            ControllerConfig::default(),
        )
        .for_each(|res| {
            match res {
                Ok(_) => ctx.metrics.inc("reconciles_total", NAME),
                Err(e) => {
                    ctx.metrics.inc("reconcile_errors_total", NAME);
                    tracing::warn!("deployment: {e}");
                }
            }
            futures::future::ready(())
        })
        .await;
        Ok(())
    })
}

fn key(d: &Deployment) -> String {
    format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any())
}

fn error_policy(d: Arc<Deployment>, _e: &Error, state: Arc<State>) -> Action {
    let mut failures = state.failures.lock().unwrap_or_else(|e| e.into_inner());
    let n = failures.entry(key(&d)).or_default();
    *n = (*n + 1).min(9);
    Action::requeue(Duration::from_millis(500 << *n).min(Duration::from_secs(300)))
}

async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action, Error> {
    let action = sync(d.as_ref().clone(), &state).await?;
    state
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key(&d));
    Ok(action)
}

async fn sync(mut d: Deployment, state: &State) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(selector) = claim::selector(&d) else {
        // An empty selector would take every RS in the namespace; upstream refuses it too.
        state
            .event(
                &d,
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
        return Ok(Action::await_change());
    };
    let ns = d.namespace();
    let candidates: Vec<ReplicaSet> = state
        .rss
        .state()
        .iter()
        .filter(|r| r.namespace() == ns)
        .map(|r| r.as_ref().clone())
        .collect();
    let rss = claim::claim(&d, &selector, candidates, &state.ctx.client).await?;
    let now = Timestamp::now();
    if let Some(st) = status::pause_conditions(&d, now) {
        newrs::write_status(state, &d, &st).await?;
        d.status = Some(st);
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let want = replicas(&d).to_string();
    let scaling = rss.iter().filter(|r| rs_replicas(r) > 0).any(|r| {
        r.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESIRED_REPLICAS))
            .is_some_and(|v| *v != want)
    });
    if paused || scaling {
        let (new_rs, old) = newrs::sync_revision(state, &mut d, rss, false).await?;
        scale::scale(state, &d, new_rs.as_ref(), &old).await?;
        if paused {
            scale::cleanup(state, &d, &old).await?;
        }
        let all: Vec<&ReplicaSet> = new_rs.iter().chain(old.iter()).collect();
        let st = status::calculate(&d, new_rs.as_ref(), &all, now);
        newrs::write_status(state, &d, &st).await?;
        return Ok(Action::await_change());
    }
    let (new_rs, old) = if is_recreate(&d) {
        let (new_rs, old) = newrs::sync_revision(state, &mut d, rss, false).await?;
        if recreate::old_still_running(state, &d, &old, &state.pods).await? {
            return finish(state, &d, new_rs.as_ref(), &old, now).await;
        }
        let (new_rs, old) = match new_rs {
            Some(n) => (Some(n), old),
            None => {
                let mut all = old;
                all.extend(new_rs);
                newrs::sync_revision(state, &mut d, all, true).await?
            }
        };
        if let Some(n) = &new_rs {
            scale::scale_rs(state, &d, n, replicas(&d)).await?;
        }
        (new_rs, old)
    } else {
        let (new_rs, old) = newrs::sync_revision(state, &mut d, rss, true).await?;
        if let Some(n) = &new_rs {
            if rolling::step(state, &d, n, &old).await? {
                return finish(state, &d, new_rs.as_ref(), &old, now).await;
            }
        }
        (new_rs, old)
    };
    let all: Vec<&ReplicaSet> = new_rs.iter().chain(old.iter()).collect();
    if status::complete(&d, &status::calculate(&d, new_rs.as_ref(), &all, now)) {
        scale::cleanup(state, &d, &old).await?;
    }
    finish(state, &d, new_rs.as_ref(), &old, now).await
}

async fn finish(
    state: &State,
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    now: Timestamp,
) -> Result<Action, Error> {
    let all: Vec<&ReplicaSet> = new_rs.into_iter().chain(old.iter()).collect();
    let (st, requeue) = status::rollout(d, new_rs, &all, now);
    newrs::write_status(state, d, &st).await?;
    Ok(match requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}
