//! The garbage collector (upstream "garbage-collector"): an ownerReference graph over every
//! resource the server serves, fed by metadata-only watches, that deletes dependents whose
//! owners are gone (background), deletes dependents before their owner (foreground,
//! honouring blockOwnerDeletion), and releases dependents of an owner deleted with the
//! Orphan policy.
//!
//! Objects of every kind share one graph, so this is not one kube-runtime `Controller` per
//! kind: as upstream's GraphBuilder, watch events update the graph and the graph says which
//! uids need work; a de-duplicating queue with per-item exponential backoff runs that work.

pub mod graph;
pub mod process;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, ApiResource, Discovery, Scope};
use kube::runtime::{watcher, WatchStreamExt};

use crate::context::Context;
use graph::{Graph, Work};

const NAME: &str = "garbage-collector";
/// Upstream re-reads discovery this often to pick up new resources (custom resources).
const REDISCOVERY: Duration = Duration::from_secs(30);
const WORKERS: usize = 4;
/// How long the first sync of all watches may hold the workers back.
const SYNC_LIMIT: Duration = Duration::from_secs(60);

pub struct Collector {
    pub ctx: Arc<Context>,
    graph: Mutex<Graph>,
    /// (apiVersion, kind) → resource and whether it is namespaced, over every served version.
    kinds: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
    /// Resources with a running watch, by `plural.group/version`.
    watched: Mutex<HashSet<String>>,
    queue: mpsc::UnboundedSender<Work>,
    queued: Mutex<HashSet<Work>>,
    failures: Mutex<HashMap<Work, u32>>,
    rediscover: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Collector {
    pub fn graph(&self) -> MutexGuard<'_, Graph> {
        lock(&self.graph)
    }

    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
        lock(&self.kinds)
            .get(&(api_version.to_string(), kind.to_string()))
            .cloned()
    }

    pub fn enqueue(&self, work: Work) {
        if lock(&self.queued).insert(work.clone()) {
            let _ = self.queue.unbounded_send(work);
        }
    }

    fn enqueue_all(&self, work: Vec<Work>) {
        for w in work {
            self.enqueue(w);
        }
    }
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let (tx, rx) = mpsc::unbounded();
        let c = Arc::new(Collector {
            ctx,
            graph: Mutex::default(),
            kinds: Mutex::default(),
            watched: Mutex::default(),
            queue: tx,
            queued: Mutex::default(),
            failures: Mutex::default(),
            rediscover: tokio::sync::Notify::new(),
        });
        // As upstream, nothing is collected before every watch has listed once: a dependent
        // the graph has not seen yet would be missed by an orphaning owner.
        let mut synced = Vec::new();
        for _ in 0..5 {
            match discover(&c).await {
                Ok(s) => {
                    synced = s;
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector discovery failed"),
            }
        }
        if tokio::time::timeout(SYNC_LIMIT, futures::future::join_all(synced))
            .await
            .is_err()
        {
            tracing::warn!("garbage collector starting before every watch has synced");
        }
        let discovering = tokio::spawn(discover_forever(c.clone()));
        rx.for_each_concurrent(WORKERS, |work| {
            let c = c.clone();
            async move { process(c, work).await }
        })
        .await;
        discovering.abort();
        Ok(())
    })
}

async fn process(c: Arc<Collector>, work: Work) {
    lock(&c.queued).remove(&work);
    c.ctx.metrics.inc("reconcile_total", NAME);
    let result = match &work {
        Work::AttemptToDelete(uid) => process::attempt_to_delete(&c, uid).await,
        Work::AttemptToOrphan(uid) => process::attempt_to_orphan(&c, uid).await,
    };
    match result {
        Ok(()) => {
            lock(&c.failures).remove(&work);
        }
        Err(e) => {
            c.ctx.metrics.inc("reconcile_errors_total", NAME);
            let delay = {
                let mut failures = lock(&c.failures);
                let n = failures.entry(work.clone()).or_default();
                let d = Duration::from_millis(5).saturating_mul(1u32 << (*n).min(16));
                *n = n.saturating_add(1);
                d.min(Duration::from_secs(300))
            };
            tracing::warn!(?work, error = %e, ?delay, "garbage collection failed; retrying");
            // A retry after backoff, as a rate-limited workqueue does.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                c.enqueue(work);
            });
        }
    }
}

/// Keeps discovery current: at start, every REDISCOVERY, and as soon as a
/// CustomResourceDefinition changes; each newly served resource gets a watch.
async fn discover_forever(c: Arc<Collector>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REDISCOVERY) => {}
            _ = c.rediscover.notified() => {}
        }
        if let Err(e) = discover(&c).await {
            tracing::warn!(error = %e, "garbage collector discovery failed");
        }
    }
}

/// Refreshes the kinds table and starts watches for resources not yet watched; returns
/// receivers that complete when each new watch has listed once.
async fn discover(c: &Arc<Collector>) -> anyhow::Result<Vec<oneshot::Receiver<()>>> {
    let client = c.ctx.client.clone();
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(_) => Discovery::new(client.clone()).run().await?,
    };
    let mut kinds = HashMap::new();
    let mut to_watch = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (ar, caps) in group.versioned_resources(version) {
                kinds.insert(
                    (ar.api_version.clone(), ar.kind.clone()),
                    (ar.clone(), caps.scope == Scope::Namespaced),
                );
            }
        }
        for (ar, caps) in group.recommended_resources() {
            // Events are never owners worth tracking, and upstream leaves them out.
            if ar.plural == "events" {
                continue;
            }
            if [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v))
            {
                to_watch.push(ar);
            }
        }
    }
    *lock(&c.kinds) = kinds;
    let mut synced = Vec::new();
    for ar in to_watch {
        let key = format!("{}.{}/{}", ar.plural, ar.group, ar.version);
        if lock(&c.watched).insert(key) {
            let (tx, rx) = oneshot::channel();
            synced.push(rx);
            tokio::spawn(watch_resource(c.clone(), ar, tx));
        }
    }
    Ok(synced)
}

async fn watch_resource(c: Arc<Collector>, ar: ApiResource, synced: oneshot::Sender<()>) {
    let mut synced = Some(synced);
    // Metadata-only list and watch keep the graph's memory to what it needs.
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(c.ctx.client.clone(), &ar);
    let is_crd = ar.group == "apiextensions.k8s.io" && ar.plural == "customresourcedefinitions";
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        let work = match event {
            Ok(watcher::Event::Init) => {
                seen.clear();
                Vec::new()
            }
            Ok(watcher::Event::InitApply(o)) => {
                if let Some(uid) = &o.metadata.uid {
                    seen.insert(uid.clone());
                }
                c.graph().upsert(&ar, &o.metadata)
            }
            Ok(watcher::Event::InitDone) => {
                // Whatever a relist no longer shows was deleted while the watch was down.
                let mut g = c.graph();
                let gone: Vec<String> = g
                    .uids_of(&ar)
                    .into_iter()
                    .filter(|u| !seen.contains(u))
                    .collect();
                let mut work = Vec::new();
                for uid in gone {
                    work.extend(g.remove(&uid));
                }
                seen.clear();
                if let Some(s) = synced.take() {
                    let _ = s.send(());
                }
                work
            }
            Ok(watcher::Event::Apply(o)) => c.graph().upsert(&ar, &o.metadata),
            Ok(watcher::Event::Delete(o)) => match &o.metadata.uid {
                Some(uid) => c.graph().remove(uid),
                None => Vec::new(),
            },
            Err(e) => {
                tracing::debug!(resource = %ar.plural, error = %e, "metadata watch error");
                continue;
            }
        };
        c.enqueue_all(work);
        if is_crd {
            c.rediscover.notify_one();
        }
    }
}
