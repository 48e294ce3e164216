//! What this controller last wrote per Service, so that it never plans from a cache that
//! has not yet seen its own writes (which would create duplicate slices), as upstream's
//! EndpointSliceTracker does with generations. Ours compares resourceVersions.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

/// One reconcile's writes: slice name to the resourceVersion written, or None if deleted.
#[derive(Default)]
pub struct Writes(HashMap<String, Option<u64>>);

impl Writes {
    pub fn wrote(&mut self, slice: &EndpointSlice) {
        let rv = slice.resource_version().and_then(|v| v.parse().ok());
        self.0.insert(slice.name_any(), rv.or(Some(0)));
    }

    pub fn deleted(&mut self, name: &str) {
        self.0.insert(name.to_string(), None);
    }
}

#[derive(Default)]
pub struct Tracker {
    services: Mutex<HashMap<String, Writes>>,
}

impl Tracker {
    /// Whether `cached` (the store's slices for `key`) reflects every write recorded for it.
    /// Once it does, the record is dropped: later changes by others are just changes.
    pub fn fresh(&self, key: &str, cached: &[EndpointSlice]) -> bool {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let Some(writes) = services.get(key) else {
            return true;
        };
        let seen = writes.0.iter().all(|(name, want)| {
            let have = cached.iter().find(|s| &s.name_any() == name);
            match (want, have) {
                (None, have) => have.is_none(),
                (Some(_), None) => false,
                (Some(rv), Some(s)) => s
                    .resource_version()
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_none_or(|have| have >= *rv),
            }
        });
        if seen {
            services.remove(key);
        }
        seen
    }

    pub fn record(&self, key: &str, writes: Writes) {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        if writes.0.is_empty() {
            services.remove(key);
        } else {
            services.insert(key.to_string(), writes);
        }
    }

    pub fn forget(&self, key: &str) {
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}
