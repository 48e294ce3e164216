//! The scheduler's view of the cluster, kept up to date from watches by the scheduling
//! loop itself: nodes with the pods on them (bound and assumed), and the other objects
//! plugins read. The loop is its only writer and applies watch events between cycles, so a
//! cycle reads it directly instead of copying a snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ferrokube_common::labels::Selector;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};

use crate::framework::{NodeInfo, PodInfo};

/// Objects keyed by `namespace/name` (or `name` when cluster-scoped).
pub type Objects<T> = HashMap<String, Arc<T>>;

pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        _ => meta.name.clone().unwrap_or_default(),
    }
}

/// The selector of a Service, ReplicaSet, ReplicationController or StatefulSet.
#[derive(Clone, Debug)]
pub struct OwnerSelector {
    /// `Kind/name`, to replace or drop it on updates.
    pub owner: String,
    pub selector: Selector,
}

struct PodEntry {
    node: String,
    assumed: bool,
}

#[derive(Default)]
pub struct Cluster {
    nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PodEntry>,
    /// How many nodes hold each image (ImageLocality's spread).
    image_nodes: HashMap<String, usize>,
    /// Placed pods with any (anti-)affinity terms, and with required anti-affinity: when
    /// there are none, the affinity plugins have nothing to walk.
    with_affinity: usize,
    with_required_anti_affinity: usize,
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    pub pvcs: Objects<PersistentVolumeClaim>,
    pub pvs: Objects<PersistentVolume>,
    pub storage_classes: Objects<StorageClass>,
    pub csi_nodes: Objects<CSINode>,
    pub pdbs: Objects<PodDisruptionBudget>,
    /// Selectors of Services, ReplicaSets, ReplicationControllers and StatefulSets by
    /// namespace: the default topology spread constraints select a pod's siblings with them.
    pub owner_selectors: HashMap<String, Vec<OwnerSelector>>,
    /// Pods waiting for a node preemption made room on, by node.
    pub nominated: HashMap<String, Vec<Arc<PodInfo>>>,
}

impl Cluster {
    /// Every node the scheduler knows of, in a stable order; entries whose Node object has
    /// not been seen (pods bound to an unknown node) have `node: None`.
    pub fn nodes(&self) -> &[Arc<NodeInfo>] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    pub fn nominated_on(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map(Vec::as_slice).unwrap_or(&[])
    }

    fn slot(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.nodes.push(Arc::new(NodeInfo::new(name)));
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        let info = Arc::make_mut(&mut self.nodes[i]);
        info.generation += 1;
        info
    }

    fn drop_slot_if_empty(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        let info = &self.nodes[i];
        if info.node.is_some() || !info.pods.is_empty() {
            return;
        }
        self.index.remove(name);
        self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name.clone();
            self.index.insert(moved, i);
        }
    }

    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let images = images_of(&node);
        let info = self.slot(&name);
        let old: Vec<String> = info.images.keys().cloned().collect();
        info.set_node(node);
        info.images = images;
        let new: Vec<String> = info.images.keys().cloned().collect();
        for image in old {
            if let Some(n) = self.image_nodes.get_mut(&image) {
                *n -= 1;
            }
        }
        for image in new {
            *self.image_nodes.entry(image).or_default() += 1;
        }
        self.image_nodes.retain(|_, n| *n > 0);
    }

    pub fn remove_node(&mut self, name: &str) {
        if !self.index.contains_key(name) {
            return;
        }
        let info = self.slot(name);
        info.node = None;
        let images: Vec<String> = std::mem::take(&mut info.images).into_keys().collect();
        for image in images {
            if let Some(n) = self.image_nodes.get_mut(&image) {
                *n -= 1;
            }
        }
        self.image_nodes.retain(|_, n| *n > 0);
        self.drop_slot_if_empty(name);
    }

    /// Whether the cache holds this pod on some node, and which.
    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|e| e.node.as_str())
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|e| e.assumed)
    }

    /// Places a pod the scheduler chose a node for, before the binding is written, so the
    /// next cycle already counts it.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(pod.uid());
        self.pods.insert(
            pod.uid().to_string(),
            PodEntry {
                node: node.to_string(),
                assumed: true,
            },
        );
        self.count(&pod, true);
        self.slot(node).add_pod(pod);
    }

    /// Undoes `assume` after a failed binding.
    pub fn forget(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.remove_pod(uid);
        }
    }

    /// A bound pod seen in the watch (added or updated): it replaces any assumed copy.
    pub fn upsert_bound_pod(&mut self, pod: Arc<PodInfo>) {
        let Some(node) = pod.node_name().map(str::to_string) else {
            return;
        };
        self.remove_pod(pod.uid());
        self.pods.insert(
            pod.uid().to_string(),
            PodEntry {
                node: node.clone(),
                assumed: false,
            },
        );
        self.count(&pod, true);
        self.slot(&node).add_pod(pod);
    }

    pub fn remove_pod(&mut self, uid: &str) {
        if let Some(pod) = self.pod(uid).cloned() {
            self.count(&pod, false);
        }
        let Some(entry) = self.pods.remove(uid) else {
            return;
        };
        self.slot(&entry.node).remove_pod(uid);
        self.drop_slot_if_empty(&entry.node);
    }

    fn count(&mut self, pod: &PodInfo, added: bool) {
        let step = |n: &mut usize| {
            *n = if added { *n + 1 } else { n.saturating_sub(1) };
        };
        if pod.has_affinity() {
            step(&mut self.with_affinity);
        }
        if !pod.required_anti_affinity.is_empty() {
            step(&mut self.with_required_anti_affinity);
        }
    }

    /// Placed pods that have any pod (anti-)affinity terms.
    pub fn pods_with_affinity(&self) -> usize {
        self.with_affinity
    }

    /// Placed pods that have required anti-affinity terms.
    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.with_required_anti_affinity
    }

    /// The PodInfo the cache holds for a bound or assumed pod.
    pub fn pod(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        let entry = self.pods.get(uid)?;
        self.node(&entry.node)?.pods.iter().find(|p| p.uid() == uid)
    }

    pub fn add_nominated(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_nominated(pod.uid());
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(pod);
    }

    pub fn remove_nominated(&mut self, uid: &str) {
        for pods in self.nominated.values_mut() {
            pods.retain(|p| p.uid() != uid);
        }
        self.nominated.retain(|_, pods| !pods.is_empty());
    }

    /// Uids of the pods on any node, bound or assumed.
    pub fn pod_uids(&self) -> impl Iterator<Item = &str> {
        self.pods.keys().map(String::as_str)
    }

    /// Pods on any node, bound or assumed.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The labels of a namespace, as namespaceSelectors read them.
    pub fn namespace_labels(&self, ns: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(ns)
    }
}

fn images_of(node: &Node) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for image in node
        .status
        .as_ref()
        .and_then(|s| s.images.as_ref())
        .into_iter()
        .flatten()
    {
        for name in image.names.iter().flatten() {
            out.insert(name.clone(), image.size_bytes.unwrap_or(0));
        }
    }
    out
}

/// A pod as the cache stores it.
pub fn pod_info(pod: Pod) -> Arc<PodInfo> {
    Arc::new(PodInfo::new(Arc::new(pod)))
}
