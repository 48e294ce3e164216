//! What every pod worker of one kubelet shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use tokio::sync::watch;

use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::Store;

use super::backoff::Backoff;
use super::status_manager::StatusManager;
use crate::config::Dirs;
use crate::container::resources::NodeResources;
use crate::events::Recorder;
use crate::images::ImageManager;
use crate::prober::ProbeManager;
use crate::runtime::Runtime;
use crate::volumes::VolumeContext;

/// Node-wide settings the pods are run with.
#[derive(Debug, Clone)]
pub struct PodSettings {
    pub dirs: Dirs,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub resolv_conf: PathBuf,
    pub cgroup_root: String,
    pub allowed_unsafe_sysctls: Vec<String>,
    /// How often a pod is synced when nothing happens to it (`syncFrequency`).
    pub resync: Duration,
}

pub struct Shared {
    pub client: kube::Client,
    pub runtime: Arc<dyn Runtime>,
    /// The scheme of container ids in statuses (`containerd://...`).
    pub runtime_name: String,
    pub node_name: String,
    pub node: watch::Receiver<Option<Node>>,
    pub status: Arc<StatusManager>,
    pub events: Recorder,
    pub backoff: Backoff,
    pub settings: PodSettings,
    pub probes: ProbeManager,
    pub images: ImageManager,
    pub volumes: VolumeContext,
    pub node_resources: NodeResources,
    /// Every Service, for the containers' service environment variables.
    pub services: Store<Service>,
    /// Pods admitted to the node, by uid: what a new pod must fit beside.
    pub admitted:
        std::sync::Mutex<std::collections::HashMap<String, k8s_openapi::api::core::v1::Pod>>,
    /// The node's pressure conditions, for admission.
    pub pressure: Arc<crate::eviction::Pressure>,
    /// The node-level samples of the Summary API.
    pub stats: crate::stats::NodeSampler,
    /// Pods the eviction manager chose, with the message their status will carry.
    pub evictions: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Shared {
    /// The node's addresses as pods see them (status.hostIPs).
    pub fn host_ips(&self) -> Vec<String> {
        self.node
            .borrow()
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.addresses.as_ref())
            .map(|a| {
                a.iter()
                    .filter(|a| a.type_ == "InternalIP")
                    .map(|a| a.address.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}
