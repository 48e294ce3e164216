//! The pods bound to this node: a watch on them feeds one worker per pod; a relist of the
//! runtime (upstream's PLEG) wakes the worker of any pod whose containers changed, and
//! removes what the runtime still runs for pods the node no longer has.

pub mod admission;
pub mod api_status;
pub mod assemble;
pub mod backoff;
pub mod context;
pub mod kill;
pub mod labels;
pub mod node_view;
pub mod runtime_state;
pub mod static_pods;
pub mod status_manager;
pub mod sync;
pub mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::{watch, Notify};

use crate::runtime::api;
use context::Shared;
use worker::Handle;

pub struct PodManager {
    pub shared: Arc<Shared>,
    workers: Mutex<HashMap<String, Handle>>,
    /// Set once the first list of the node's pods arrived, so that the relist does not take
    /// pods it has not heard of yet for orphans.
    listed: watch::Sender<bool>,
    /// The uids of the static pods from the manifest directory.
    statics: Mutex<HashSet<String>>,
    /// Wakes the static pod loop: the manifest directory or a mirror pod changed.
    static_wake: Arc<Notify>,
    /// The uid of every pod whose sandboxes or containers the relist saw change.
    changes: tokio::sync::broadcast::Sender<String>,
}

impl PodManager {
    pub fn new(shared: Arc<Shared>) -> Arc<PodManager> {
        Arc::new(PodManager {
            shared,
            workers: Mutex::new(HashMap::new()),
            listed: watch::channel(false).0,
            statics: Mutex::new(HashSet::new()),
            changes: tokio::sync::broadcast::channel(1024).0,
            static_wake: Arc::new(Notify::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pods this kubelet runs, as the apiserver last described them.
    pub fn pods(&self) -> Vec<Pod> {
        self.lock()
            .values()
            .filter_map(|h| h.pod.borrow().as_ref().map(|p| (**p).clone()))
            .collect()
    }

    /// The pod with this namespace and name, if it runs here.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.lock().values().find_map(|h| {
            let p = h.pod.borrow().clone()?;
            (p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(name))
            .then_some(p)
        })
    }

    /// Follows the relist's reports of pods whose containers changed.
    pub fn runtime_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// The pod with this uid, if it runs here.
    pub fn by_uid(&self, uid: &str) -> Option<Arc<Pod>> {
        self.lock().get(uid).and_then(|h| h.pod.borrow().clone())
    }

    /// Pods that are running or about to: not finished, not being deleted.
    pub fn active_pods(&self) -> Vec<Pod> {
        self.pods()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                let uid = p.metadata.uid.as_deref().unwrap_or("");
                let phase = self.shared.status.get(uid).and_then(|s| s.phase);
                !matches!(phase.as_deref(), Some("Succeeded") | Some("Failed"))
            })
            .collect()
    }

    /// Ends a pod for the eviction manager: its worker stops it and fails it as Evicted.
    pub fn evict(&self, uid: &str, message: String) {
        self.shared
            .evictions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string(), message);
        self.poke(uid);
    }

    /// Wakes a pod's worker.
    pub fn poke(&self, uid: &str) {
        if let Some(h) = self.lock().get(uid) {
            h.poke.notify_one();
        }
    }

    fn upsert(&self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut workers = self.lock();
        if let Some(h) = workers.get(&uid) {
            h.pod.send_replace(Some(Arc::new(pod)));
            return;
        }
        let (tx, rx) = watch::channel(Some(Arc::new(pod)));
        let poke = Arc::new(Notify::new());
        tokio::spawn(worker::run(self.shared.clone(), rx, poke.clone()));
        workers.insert(uid, Handle { pod: tx, poke });
    }

    fn remove(&self, uid: &str) {
        if let Some(h) = self.lock().remove(uid) {
            h.pod.send_replace(None);
        }
    }

    /// Follows the pods bound to this node until dropped.
    pub async fn run_source(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.shared.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.shared.node_name));
        let mut events = std::pin::pin!(watcher(api, config).default_backoff());
        let mut relisting: HashSet<String> = HashSet::new();
        while let Some(ev) = events.next().await {
            match ev {
                // Mirror pods are the API's copies of static pods, which run from their files;
                // a change to one (a deletion, say) is the static pod loop's to repair.
                Ok(Event::Apply(pod) | Event::InitApply(pod) | Event::Delete(pod))
                    if static_pods::is_mirror(&pod) =>
                {
                    self.static_wake.notify_one();
                }
                Ok(Event::Apply(pod)) => self.upsert(pod),
                Ok(Event::Delete(pod)) => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        self.remove(uid);
                    }
                }
                Ok(Event::Init) => relisting.clear(),
                Ok(Event::InitApply(pod)) => {
                    if let Some(uid) = pod.metadata.uid.clone() {
                        relisting.insert(uid);
                    }
                    self.upsert(pod);
                }
                Ok(Event::InitDone) => {
                    let statics = self
                        .statics
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    let gone: Vec<String> = self
                        .lock()
                        .keys()
                        .filter(|k| !relisting.contains(*k) && !statics.contains(*k))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.remove(&uid);
                    }
                    self.listed.send_replace(true);
                }
                Err(e) => tracing::warn!(error = %e, "watching this node's pods"),
            }
        }
    }

    /// Runs the pods of the manifest directory, rereading it every `period`, and keeps their
    /// mirror pods in the API.
    pub async fn run_static(self: Arc<Self>, dir: std::path::PathBuf, period: Duration) {
        // Changes in the directory wake the loop at once; the period stays as upstream's
        // fileCheckFrequency for what inotify cannot see (e.g. a directory created later).
        let wake = self.static_wake.clone();
        let _watcher = match notify::recommended_watcher(move |_| wake.notify_one()) {
            Ok(mut w) => {
                if let Err(e) =
                    notify::Watcher::watch(&mut w, &dir, notify::RecursiveMode::NonRecursive)
                {
                    tracing::warn!(dir = %dir.display(), error = %e, "watching the static pod directory");
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; static pods are reread every period");
                None
            }
        };
        loop {
            let pods = static_pods::read_dir(&dir, &self.shared.node_name);
            let uids: HashSet<String> =
                pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
            let old = std::mem::replace(
                &mut *self.statics.lock().unwrap_or_else(|e| e.into_inner()),
                uids.clone(),
            );
            for uid in old.difference(&uids) {
                self.remove(uid);
            }
            for p in &pods {
                let unchanged = p
                    .metadata
                    .uid
                    .as_deref()
                    .and_then(|u| self.by_uid(u))
                    .is_some_and(|cur| {
                        cur.spec == p.spec && cur.metadata.labels == p.metadata.labels
                    });
                if !unchanged {
                    self.upsert(p.clone());
                }
            }
            let node = self.shared.node.borrow().clone();
            if let Some(node) = node {
                if let Err(e) = static_pods::sync_mirrors(&self.shared.client, &node, &pods).await {
                    tracing::warn!(error = %e, "syncing mirror pods");
                }
            }
            tokio::select! {
                _ = self.static_wake.notified() => {}
                _ = tokio::time::sleep(period) => {}
            }
        }
    }

    /// Relists the runtime every `period`, waking the workers of pods whose sandboxes or
    /// containers changed and removing those of pods this node no longer has.
    pub async fn run_pleg(self: Arc<Self>, period: Duration) {
        let mut previous: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
        loop {
            tokio::time::sleep(period).await;
            let Some(now) = self.relist().await else {
                continue;
            };
            let known: HashSet<String> = self.lock().keys().cloned().collect();
            for (uid, state) in &now {
                if previous.get(uid) != Some(state) {
                    self.poke(uid);
                    let _ = self.changes.send(uid.clone());
                }
            }
            for uid in previous.keys() {
                if !now.contains_key(uid) {
                    self.poke(uid);
                    let _ = self.changes.send(uid.clone());
                }
            }
            if *self.listed.borrow() {
                for uid in now.keys().filter(|u| !known.contains(*u)) {
                    self.remove_orphan(uid).await;
                }
            }
            previous = now;
        }
    }

    /// Each pod's sandboxes and containers with their states.
    async fn relist(&self) -> Option<BTreeMap<String, Vec<(String, i32)>>> {
        let rt = &self.shared.runtime;
        let sandboxes = rt
            .list_pod_sandbox(api::ListPodSandboxRequest::default())
            .await
            .ok()?;
        let containers = rt
            .list_containers(api::ListContainersRequest::default())
            .await
            .ok()?;
        let mut out: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
        let managed = |l: &HashMap<String, String>| l.contains_key(labels::KUBELET_MANAGED);
        for s in sandboxes.items.iter().filter(|s| managed(&s.labels)) {
            if let Some(uid) = s.labels.get(labels::POD_UID) {
                out.entry(uid.clone())
                    .or_default()
                    .push((s.id.clone(), s.state));
            }
        }
        for c in containers.containers.iter().filter(|c| managed(&c.labels)) {
            if let Some(uid) = c.labels.get(labels::POD_UID) {
                out.entry(uid.clone())
                    .or_default()
                    .push((c.id.clone(), c.state));
            }
        }
        for v in out.values_mut() {
            v.sort();
        }
        Some(out)
    }

    /// Stops and removes what the runtime runs for a pod this node does not have.
    async fn remove_orphan(&self, uid: &str) {
        let Ok(rt) = runtime_state::read(self.shared.runtime.as_ref(), uid).await else {
            return;
        };
        tracing::info!(
            pod_uid = uid,
            "removing containers of a pod this node no longer has"
        );
        for c in rt
            .containers
            .iter()
            .filter(|c| runtime_state::is_running(c))
        {
            let _ = self
                .shared
                .runtime
                .stop_container(api::StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: 2,
                })
                .await;
        }
        for s in &rt.sandboxes {
            let _ = self
                .shared
                .runtime
                .stop_pod_sandbox(api::StopPodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await;
        }
        kill::remove_pod(&self.shared, &rt).await;
    }
}
