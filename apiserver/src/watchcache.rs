//! The watch cache: every stored object in memory, kept current by one storage watch.
//!
//! One watch over all of `/registry/` feeds a cache per storage prefix. Because every change
//! in the store passes through that one stream, the cache knows the store's latest revision
//! even for resources that did not change, which is what a consistent read from the cache
//! needs. Each event is serialised once, however many watchers it reaches.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use ferrokube_storage::{EventKind, KeyValue, ListOptions, Revision, Store};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::meta;

/// How many recent events each cache keeps, by default, for watches that resume from a
/// resourceVersion.
pub const DEFAULT_HISTORY: usize = 10_000;
/// How many events a watcher may fall behind before it is closed; it then resumes from its
/// last resourceVersion out of the history. The channel's ring is allocated up front for
/// every cache, so this stays modest.
const WATCHER_BACKLOG: usize = 4096;

/// One object as stored, decoded once, with its resourceVersion set.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub revision: Revision,
    pub value: Value,
    json: OnceLock<Bytes>,
}

impl CachedObject {
    pub fn new(key: String, revision: Revision, mut value: Value) -> Self {
        meta::set_resource_version(&mut value, revision);
        CachedObject {
            key,
            revision,
            value,
            json: OnceLock::new(),
        }
    }

    fn from_kv(kv: &KeyValue) -> Option<Self> {
        let value: Value = serde_json::from_slice(&kv.value).ok()?;
        Some(Self::new(kv.key.clone(), kv.mod_revision, value))
    }

    /// The object as JSON, serialised on first use and shared afterwards.
    pub fn json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Clone, Debug)]
pub struct CachedEvent {
    pub kind: EventType,
    pub revision: Revision,
    /// The new object; for a delete, the last state with the delete's resourceVersion.
    pub object: Arc<CachedObject>,
    /// The object before the change, when there was one.
    pub prev: Option<Arc<CachedObject>>,
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CachedEvent>>,
    /// Watches may resume from any revision at or after this one.
    oldest: Revision,
    /// The revision of the last event applied to this cache.
    applied: Revision,
}

/// The cache of one storage prefix.
pub struct Cache {
    prefix: String,
    history_size: usize,
    state: RwLock<State>,
    events: broadcast::Sender<Arc<CachedEvent>>,
}

/// A watch on one cache: the events to replay, then live ones.
pub struct Subscription {
    pub replay: Vec<Arc<CachedEvent>>,
    pub live: broadcast::Receiver<Arc<CachedEvent>>,
    /// Live events at or before this revision were already replayed.
    pub after: Revision,
}

impl Cache {
    fn new(prefix: String, revision: Revision, history_size: usize) -> Self {
        let (events, _) = broadcast::channel(WATCHER_BACKLOG);
        Cache {
            prefix,
            history_size: history_size.max(1),
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                oldest: revision,
                applied: revision,
            }),
            events,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every object under `prefix` (a sub-prefix of this cache's, e.g. one namespace).
    pub fn list(&self, prefix: &str) -> Vec<Arc<CachedObject>> {
        let state = self.state.read().unwrap();
        state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.state.read().unwrap().objects.get(key).cloned()
    }

    /// Starts a watch after `revision`. With `initial` the current objects come first as
    /// additions (a watch without a resourceVersion, or from "0"). Fails with the oldest
    /// revision still kept when `revision` is older than that.
    pub fn subscribe(&self, revision: Revision, initial: bool) -> Result<Subscription, Revision> {
        let state = self.state.read().unwrap();
        let live = self.events.subscribe();
        if initial {
            let replay = state
                .objects
                .values()
                .map(|o| {
                    Arc::new(CachedEvent {
                        kind: EventType::Added,
                        revision: o.revision,
                        object: o.clone(),
                        prev: None,
                    })
                })
                .collect();
            return Ok(Subscription {
                replay,
                live,
                after: state.applied,
            });
        }
        if revision < state.oldest {
            return Err(state.oldest);
        }
        let replay: Vec<_> = state
            .history
            .iter()
            .filter(|e| e.revision > revision)
            .cloned()
            .collect();
        Ok(Subscription {
            replay,
            live,
            after: state.applied,
        })
    }

    fn apply(&self, event: CachedEvent) {
        let event = Arc::new(event);
        {
            let mut state = self.state.write().unwrap();
            match event.kind {
                EventType::Deleted => {
                    state.objects.remove(&event.object.key);
                }
                _ => {
                    state
                        .objects
                        .insert(event.object.key.clone(), event.object.clone());
                }
            }
            state.applied = event.revision;
            state.history.push_back(event.clone());
            if state.history.len() > self.history_size {
                if let Some(dropped) = state.history.pop_front() {
                    state.oldest = dropped.revision;
                }
            }
            // Sending under the lock keeps subscribe()'s snapshot and the live stream gap-free.
            let _ = self.events.send(event);
        }
    }
}

/// All caches, fed by one storage watch.
pub struct WatchCache {
    store: Arc<dyn Store>,
    caches: RwLock<HashMap<String, Arc<Cache>>>,
    revision_tx: watch::Sender<Revision>,
    revision_rx: watch::Receiver<Revision>,
}

impl WatchCache {
    /// Loads every object under the given prefixes and starts following the store.
    pub async fn start(
        store: Arc<dyn Store>,
        prefixes: Vec<String>,
        history_size: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let loaded = store
            .list("/registry/", ListOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("loading the watch cache: {e}"))?;
        let revision = loaded.revision;
        let mut caches = HashMap::new();
        for prefix in prefixes {
            caches.insert(
                prefix.clone(),
                Arc::new(Cache::new(prefix, revision, history_size)),
            );
        }
        let (revision_tx, revision_rx) = watch::channel(revision);
        let this = Arc::new(WatchCache {
            store,
            caches: RwLock::new(caches),
            revision_tx,
            revision_rx,
        });
        for kv in &loaded.items {
            if let (Some(cache), Some(obj)) =
                (this.cache_for_key(&kv.key), CachedObject::from_kv(kv))
            {
                cache
                    .state
                    .write()
                    .unwrap()
                    .objects
                    .insert(kv.key.clone(), Arc::new(obj));
            }
        }
        let follower = this.clone();
        tokio::spawn(async move { follower.follow(revision).await });
        Ok(this)
    }

    async fn follow(self: Arc<Self>, mut revision: Revision) {
        loop {
            let mut stream = match self.store.watch("/registry/", revision).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("watch cache lost the store: {e}; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => {
                        revision = ev.revision;
                        self.dispatch(ev);
                        let _ = self.revision_tx.send(revision);
                    }
                    Err(e) => {
                        tracing::warn!("watch cache stream ended: {e}; resuming from {revision}");
                        break;
                    }
                }
            }
        }
    }

    fn dispatch(&self, ev: ferrokube_storage::Event) {
        let Some(cache) = self.cache_for_key(&ev.key) else {
            return;
        };
        let prev = cache.get(&ev.key);
        let event = match ev.kind {
            EventKind::Put => {
                let Ok(value) = serde_json::from_slice::<Value>(&ev.value) else {
                    tracing::warn!("undecodable object at {}", ev.key);
                    return;
                };
                CachedEvent {
                    kind: if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    revision: ev.revision,
                    object: Arc::new(CachedObject::new(ev.key.clone(), ev.revision, value)),
                    prev,
                }
            }
            EventKind::Delete => {
                let last = prev
                    .as_ref()
                    .map(|p| p.value.clone())
                    .or_else(|| serde_json::from_slice(&ev.value).ok())
                    .unwrap_or(Value::Null);
                CachedEvent {
                    kind: EventType::Deleted,
                    revision: ev.revision,
                    object: Arc::new(CachedObject::new(ev.key.clone(), ev.revision, last)),
                    prev,
                }
            }
        };
        cache.apply(event);
    }

    /// The cache holding `key`: the longest registered prefix of it.
    fn cache_for_key(&self, key: &str) -> Option<Arc<Cache>> {
        let caches = self.caches.read().unwrap();
        caches
            .iter()
            .filter(|(p, _)| key.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, c)| c.clone())
    }

    pub fn cache(&self, prefix: &str) -> Option<Arc<Cache>> {
        self.caches.read().unwrap().get(prefix).cloned()
    }

    /// The latest store revision the caches have applied.
    pub fn revision(&self) -> Revision {
        *self.revision_rx.borrow()
    }

    /// Waits until the caches have applied everything up to `revision`.
    pub async fn wait_for(&self, revision: Revision) -> Result<(), ferrokube_storage::Error> {
        let mut rx = self.revision_rx.clone();
        let reached = tokio::time::timeout(std::time::Duration::from_secs(3), async {
            rx.wait_for(|r| *r >= revision).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            _ => Err(ferrokube_storage::Error::Unavailable(format!(
                "watch cache did not reach revision {revision} in time"
            ))),
        }
    }

    /// Waits until the caches reflect every write acknowledged before this call.
    pub async fn sync(&self) -> Result<Revision, ferrokube_storage::Error> {
        let current = self.store.current_revision().await?;
        self.wait_for(current).await?;
        Ok(current.max(self.revision()))
    }
}
