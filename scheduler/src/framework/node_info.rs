//! Everything the scheduler knows about one node: the Node object and the pods on it
//! (bound and assumed), with the sums plugins read on every cycle kept up to date as pods
//! come and go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use super::pod_info::PodInfo;
use super::resource::Resource;

/// A host port in use: (hostIP, protocol, port). An empty or 0.0.0.0 IP means every address.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while pods are bound to a node the scheduler has not seen (or has seen deleted).
    pub node: Option<Arc<Node>>,
    pub pods: Vec<Arc<PodInfo>>,
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    pub used_ports: HashSet<HostPort>,
    pub requested: Resource,
    pub non_zero_requested: Resource,
    pub allocatable: Resource,
    /// Image sizes in bytes by every name the node knows the image by; how many nodes hold
    /// each image is `Cluster::image_node_count`.
    pub images: HashMap<String, i64>,
    /// `namespace/claim` → number of pods on the node using it.
    pub pvc_ref_counts: HashMap<String, usize>,
    /// Bumped on every change; lets callers tell whether a node changed.
    pub generation: u64,
}

impl NodeInfo {
    pub fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resource::from_list)
            .unwrap_or_default();
        self.node = Some(node);
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&EMPTY)
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        for port in host_ports(&pod) {
            self.used_ports.insert(port);
        }
        for claim in claims(&pod) {
            *self.pvc_ref_counts.entry(claim).or_default() += 1;
        }
        if pod.has_affinity() {
            self.pods_with_affinity.push(pod.clone());
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
    }

    /// Removes the pod with this uid; false when it was not here.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(at) = self.pods.iter().position(|p| p.uid() == uid) else {
            return false;
        };
        let pod = self.pods.swap_remove(at);
        self.pods_with_affinity.retain(|p| p.uid() != uid);
        self.pods_with_required_anti_affinity
            .retain(|p| p.uid() != uid);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        // Ports are a set; rebuild it, since two pods may not share a port but the same
        // pod may list one twice.
        self.used_ports = self.pods.iter().flat_map(|p| host_ports(p)).collect();
        for claim in claims(&pod) {
            if let Some(n) = self.pvc_ref_counts.get_mut(&claim) {
                *n -= 1;
                if *n == 0 {
                    self.pvc_ref_counts.remove(&claim);
                }
            }
        }
        true
    }
}

/// The host ports a pod's containers ask for, with upstream's defaults (TCP, 0.0.0.0).
pub fn host_ports(pod: &PodInfo) -> Vec<HostPort> {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return Vec::new();
    };
    let restartable_inits = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(restartable_inits)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| HostPort {
            ip: match p.host_ip.as_deref() {
                None | Some("") => "0.0.0.0".to_string(),
                Some(ip) => ip.to_string(),
            },
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

/// `namespace/claim` for every PVC the pod mounts.
pub fn claims(pod: &PodInfo) -> Vec<String> {
    let ns = pod.namespace();
    pod.pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(format!("{ns}/{}", c.claim_name))
            } else if v.ephemeral.is_some() {
                Some(format!("{ns}/{}-{}", pod.name(), v.name))
            } else {
                None
            }
        })
        .collect()
}
