//! Resource arithmetic as the scheduler counts it: CPU in millicores, everything else in
//! units, with a pod's effective request computed as upstream's `resourcehelper` does
//! (init containers run one at a time, restartable init containers (sidecars) keep running
//! beside everything after them, and pod overhead comes on top).

use std::collections::BTreeMap;

use ferrokube_common::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// Requests counted for scoring when a container asks for none, as upstream.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    /// Extended and hugepage resources, by name.
    pub scalar: BTreeMap<String, i64>,
}

fn milli(q: &KQuantity) -> i64 {
    Quantity::parse(&q.0).map(|q| q.milli_value()).unwrap_or(0)
}

fn units(q: &KQuantity) -> i64 {
    Quantity::parse(&q.0).map(|q| q.value()).unwrap_or(0)
}

impl Resource {
    pub fn from_list(list: &BTreeMap<String, KQuantity>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &KQuantity) {
        match name {
            CPU => self.milli_cpu = milli(q),
            MEMORY => self.memory = units(q),
            EPHEMERAL_STORAGE => self.ephemeral_storage = units(q),
            PODS => self.allowed_pod_number = units(q),
            _ if is_scalar(name) => {
                self.scalar.insert(name.to_string(), units(q));
            }
            _ => {}
        }
    }

    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pod_number,
            _ => self.scalar.get(name).copied().unwrap_or(0),
        }
    }

    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each field the larger of the two.
    pub fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(other.allowed_pod_number);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The resource names this holds a non-zero amount of.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, v) in [
            (CPU, self.milli_cpu),
            (MEMORY, self.memory),
            (EPHEMERAL_STORAGE, self.ephemeral_storage),
        ] {
            if v != 0 {
                out.push(name.to_string());
            }
        }
        out.extend(
            self.scalar
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, _)| k.clone()),
        );
        out
    }
}

/// Extended resources (`example.com/foo`), hugepages and attachable volumes: everything
/// counted as a plain integer beside the native resources.
pub fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/')
            && !name.starts_with("kubernetes.io/")
            && !name.starts_with("requests."))
}

fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let empty = BTreeMap::new();
    let requests = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .unwrap_or(&empty);
    let mut r = Resource::from_list(requests);
    if non_zero {
        if !requests.contains_key(CPU) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !requests.contains_key(MEMORY) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// The pod's effective request: the sum of its containers, or the largest init container
/// (plus the sidecars started before it) when that is larger, plus overhead. With
/// `non_zero`, containers that request no CPU or memory count upstream's defaults, as the
/// scoring plugins do.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar runs for the pod's whole life, beside the regular containers and
            // the init containers that come after it.
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut with = sidecars.clone();
            with.add(&r);
            init_max.max_with(&with);
        }
    }
    reqs.add(&sidecars);
    reqs.max_with(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(overhead));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn sums_containers_and_takes_the_largest_init_container() {
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}}
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}}
            ],
            "overhead": {"cpu": "10m"}
        }));
        let r = pod_requests(&p, false);
        assert_eq!(r.milli_cpu, 1010);
        assert_eq!(r.memory, 1 << 30);
    }

    #[test]
    fn sidecars_add_to_the_regular_containers() {
        let p = pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "500m"}}}
            ]
        }));
        assert_eq!(pod_requests(&p, false).milli_cpu, 550);
    }

    #[test]
    fn non_zero_counts_defaults() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let r = pod_requests(&p, true);
        assert_eq!((r.milli_cpu, r.memory), (100, 200 * 1024 * 1024));
        assert_eq!(pod_requests(&p, false), Resource::default());
    }
}
