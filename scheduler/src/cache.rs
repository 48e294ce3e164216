//! The scheduler's view of the cluster, kept up to date from watches by the scheduling
//! loop itself: nodes with the pods on them (bound and assumed), and the other objects
//! plugins read. The loop is its only writer and applies watch events between cycles, so a
//! cycle reads it directly instead of copying a snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ferrokube_common::labels::{Operator, Selector};
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
    /// Placed pods whose terms count in InterPodAffinity's score (required affinity or any
    /// preferred term; required anti-affinity never scores).
    with_scored_affinity: usize,
    /// Placed pods by label (key → value → uids), so a selector with an equality
    /// requirement finds its pods without a pass over all of them.
    by_label: HashMap<String, HashMap<String, HashSet<String>>>,
    /// Placed pods with required anti-affinity, by an equality requirement of one of their
    /// terms' selectors ((key, value) → uids); the rest, whose terms have none, apart.
    anti_by_label: HashMap<(String, String), HashSet<String>>,
    anti_unindexed: HashSet<String>,
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
        if !pod.required_affinity.is_empty()
            || !pod.preferred_affinity.is_empty()
            || !pod.preferred_anti_affinity.is_empty()
        {
            step(&mut self.with_scored_affinity);
        }
        let uid = pod.uid().to_string();
        for (k, v) in pod.labels() {
            let values = self.by_label.entry(k.clone()).or_default();
            let uids = values.entry(v.clone()).or_default();
            if added {
                uids.insert(uid.clone());
            } else {
                uids.remove(&uid);
                if uids.is_empty() {
                    values.remove(v);
                }
                if values.is_empty() {
                    self.by_label.remove(k);
                }
            }
        }
        if !pod.required_anti_affinity.is_empty() {
            step(&mut self.with_required_anti_affinity);
            let keys: Option<Vec<(String, String)>> = pod
                .required_anti_affinity
                .iter()
                .map(|t| equality(&t.selector).map(|(k, v)| (k.to_string(), v.to_string())))
                .collect();
            match keys {
                Some(keys) => {
                    for key in keys {
                        if added {
                            self.anti_by_label
                                .entry(key)
                                .or_default()
                                .insert(uid.clone());
                        } else if let Some(uids) = self.anti_by_label.get_mut(&key) {
                            uids.remove(&uid);
                            if uids.is_empty() {
                                self.anti_by_label.remove(&key);
                            }
                        }
                    }
                }
                None if added => {
                    self.anti_unindexed.insert(uid);
                }
                None => {
                    self.anti_unindexed.remove(&uid);
                }
            }
        }
    }

    /// A placed pod with the node it is on.
    fn placed(&self, uid: &str) -> Option<(&Arc<NodeInfo>, &Arc<PodInfo>)> {
        let node = self.node(&self.pods.get(uid)?.node)?;
        let pod = node.pods.iter().find(|p| p.uid() == uid)?;
        Some((node, pod))
    }

    /// Placed pods labelled `key=value`, with their nodes.
    pub fn pods_labelled(&self, key: &str, value: &str) -> Vec<(&Arc<NodeInfo>, &Arc<PodInfo>)> {
        self.by_label
            .get(key)
            .and_then(|values| values.get(value))
            .into_iter()
            .flatten()
            .filter_map(|uid| self.placed(uid))
            .collect()
    }

    /// Placed pods whose required anti-affinity might select a pod with these labels (a
    /// superset: callers still match each term), with their nodes.
    pub fn anti_affinity_candidates(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Vec<(&Arc<NodeInfo>, &Arc<PodInfo>)> {
        let mut uids: HashSet<&String> = self.anti_unindexed.iter().collect();
        for (k, v) in labels {
            if let Some(found) = self.anti_by_label.get(&(k.clone(), v.clone())) {
                uids.extend(found);
            }
        }
        uids.into_iter()
            .filter_map(|uid| self.placed(uid))
            .collect()
    }

    /// Placed pods that have any pod (anti-)affinity terms.
    pub fn pods_with_affinity(&self) -> usize {
        self.with_affinity
    }

    /// Placed pods with terms InterPodAffinity scores.
    pub fn pods_with_scored_affinity(&self) -> usize {
        self.with_scored_affinity
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

/// A requirement every pod the selector matches must meet as `key=value`, if it has one.
pub fn equality(sel: &Selector) -> Option<(&str, &str)> {
    sel.requirements().iter().find_map(|r| match r.operator() {
        Operator::Equals | Operator::DoubleEquals | Operator::In if r.values().len() == 1 => {
            Some((r.key(), r.values()[0].as_str()))
        }
        _ => None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, labels: serde_json::Value, anti: Option<&str>) -> Pod {
        let mut spec = json!({"containers": [], "nodeName": node});
        if let Some(group) = anti {
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"group": group}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name, "labels": labels},
            "spec": spec
        }))
        .unwrap()
    }

    fn node(name: &str) -> Arc<Node> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
    }

    #[test]
    fn label_indexes_follow_pods() {
        let mut c = Cluster::default();
        c.upsert_node(node("n1"));
        c.upsert_bound_pod(pod_info(pod("a", "n1", json!({"group": "x"}), Some("x"))));
        c.upsert_bound_pod(pod_info(pod("b", "n1", json!({"group": "y"}), None)));
        let names = |v: Vec<(&Arc<NodeInfo>, &Arc<PodInfo>)>| {
            let mut n: Vec<String> = v.iter().map(|(_, p)| p.name().to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(names(c.pods_labelled("group", "x")), ["a"]);
        let x: BTreeMap<String, String> = [("group".to_string(), "x".to_string())].into();
        let y: BTreeMap<String, String> = [("group".to_string(), "y".to_string())].into();
        assert_eq!(names(c.anti_affinity_candidates(&x)), ["a"]);
        assert!(c.anti_affinity_candidates(&y).is_empty());
        assert_eq!(c.pods_with_required_anti_affinity(), 1);
        c.remove_pod("a");
        assert!(c.pods_labelled("group", "x").is_empty());
        assert!(c.anti_affinity_candidates(&x).is_empty());
        assert_eq!(c.pods_with_required_anti_affinity(), 0);
    }
}
