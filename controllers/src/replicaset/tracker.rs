//! Expectations kept by pod identity rather than by count: a creation is expected until the
//! pod's name shows up in the pod cache, a deletion until its uid is gone from it (or marked
//! for deletion). Checking the cache itself keeps this level-based, so a lost or duplicated
//! watch event can never leave a count off by one. Entries expire after five minutes so a
//! pod that vanished before it was ever seen cannot wedge its owner.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};

const TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<(String, String)>,
    since: Option<Instant>,
}

#[derive(Default)]
pub struct Tracker {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Tracker {
    fn with<R>(&self, key: &str, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = all.entry(key.to_string()).or_default();
        p.since = Some(Instant::now());
        f(p)
    }

    pub fn created(&self, key: &str, pod_name: &str) {
        self.with(key, |p| p.creates.insert(pod_name.to_string()));
    }

    pub fn deleted(&self, key: &str, pod_name: &str, uid: &str) {
        self.with(key, |p| {
            p.deletes.insert((pod_name.to_string(), uid.to_string()))
        });
    }

    /// Whether everything asked for in `namespace` is visible in `pods`.
    pub fn satisfied(&self, key: &str, namespace: &str, pods: &Store<Pod>) -> bool {
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = all.get_mut(key) else {
            return true;
        };
        if p.since.is_some_and(|s| s.elapsed() > TTL) {
            all.remove(key);
            return true;
        }
        let lookup = |name: &str| pods.get(&ObjectRef::new(name).within(namespace));
        p.creates.retain(|name| lookup(name).is_none());
        p.deletes.retain(|(name, uid)| {
            lookup(name).is_some_and(|pod| {
                pod.metadata.uid.as_deref() == Some(uid)
                    && pod.metadata.deletion_timestamp.is_none()
            })
        });
        let done = p.creates.is_empty() && p.deletes.is_empty();
        if done {
            all.remove(key);
        }
        done
    }

    pub fn forget(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}
