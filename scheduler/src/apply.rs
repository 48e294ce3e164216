//! Applies watch events to the cache and the queue, and tells the queue which cluster
//! event happened so pods waiting for it are retried.

use std::collections::HashSet;
use std::sync::Arc;

use ferrokube_common::labels::Selector;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::cache::{key_of, pod_info, Cluster, Objects, OwnerSelector};
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::informers::{Change, Input};
use crate::scheduler::{pod_scheduler_name, Scheduler};

fn event(s: &mut Scheduler, resource: EventResource, action: ActionType) {
    s.queue
        .on_event(&ClusterEvent::new(resource, action), &s.interest);
}

pub fn apply(s: &mut Scheduler, input: Input) {
    match input {
        Input::Node(c) => relist_or(s, c, "nodes", node_keys, apply_node, delete_node),
        Input::Pod(c) => relist_or(s, c, "pods", pod_keys, apply_pod, delete_pod),
        Input::Pvc(c) => objects(
            s,
            c,
            "pvcs",
            |cl| &mut cl.pvcs,
            EventResource::PersistentVolumeClaim,
        ),
        Input::Pv(c) => objects(
            s,
            c,
            "pvs",
            |cl| &mut cl.pvs,
            EventResource::PersistentVolume,
        ),
        Input::StorageClass(c) => objects(
            s,
            c,
            "storageclasses",
            |cl| &mut cl.storage_classes,
            EventResource::StorageClass,
        ),
        Input::CsiNode(c) => objects(
            s,
            c,
            "csinodes",
            |cl| &mut cl.csi_nodes,
            EventResource::CSINode,
        ),
        Input::Pdb(c) => objects(s, c, "pdbs", |cl| &mut cl.pdbs, EventResource::Wildcard),
        Input::Namespace(c) => relist_or(
            s,
            c,
            "namespaces",
            |s| s.cluster.namespaces.keys().cloned().collect(),
            |s, ns| {
                let name = ns.metadata.name.clone().unwrap_or_default();
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                let action = if s.cluster.namespaces.contains_key(&name) {
                    ActionType::UPDATE_OTHER
                } else {
                    ActionType::ADD
                };
                s.cluster.namespaces.insert(name, labels);
                event(s, EventResource::Namespace, action);
            },
            |s, key| {
                s.cluster.namespaces.remove(key);
            },
        ),
        Input::Service(c) => owners(s, c, "services", "Service", |svc| {
            svc.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .filter(|m| !m.is_empty())
                .map(|m| Selector::from_set(m.iter()))
        }),
        Input::ReplicationController(c) => owners(
            s,
            c,
            "replicationcontrollers",
            "ReplicationController",
            |rc| {
                rc.spec
                    .as_ref()
                    .and_then(|sp| sp.selector.as_ref())
                    .filter(|m| !m.is_empty())
                    .map(|m| Selector::from_set(m.iter()))
            },
        ),
        Input::ReplicaSet(c) => owners(s, c, "replicasets", "ReplicaSet", |rs| {
            rs.spec.as_ref().and_then(|sp| label_selector(&sp.selector))
        }),
        Input::StatefulSet(c) => owners(s, c, "statefulsets", "StatefulSet", |ss| {
            ss.spec.as_ref().and_then(|sp| label_selector(&sp.selector))
        }),
        Input::Bound(_) => {}
    }
}

fn label_selector(sel: &LabelSelector) -> Option<Selector> {
    let v = serde_json::to_value(sel).ok()?;
    Selector::from_label_selector(&v)
        .ok()
        .filter(|s| !s.is_empty())
}

/// A relist replaces what the loop holds; anything else is an apply or a delete.
fn relist_or<K: kube::Resource>(
    s: &mut Scheduler,
    change: Change<K>,
    watch: &'static str,
    keys: fn(&Scheduler) -> HashSet<String>,
    on_apply: fn(&mut Scheduler, K),
    on_delete: fn(&mut Scheduler, &str),
) {
    match change {
        Change::Apply(obj) => on_apply(s, *obj),
        Change::Delete(obj) => on_delete(s, &identity(obj.meta(), watch)),
        Change::Relist(list) => {
            let mut gone = keys(s);
            for obj in list {
                gone.remove(&identity(obj.meta(), watch));
                on_apply(s, obj);
            }
            for key in gone {
                on_delete(s, &key);
            }
            s.synced.insert(watch);
        }
    }
}

/// Pods are known by uid (a pod recreated under its name is a new pod); the rest by key.
fn identity(meta: &ObjectMeta, watch: &str) -> String {
    match watch {
        "pods" => meta.uid.clone().unwrap_or_default(),
        "namespaces" | "nodes" => meta.name.clone().unwrap_or_default(),
        _ => key_of(meta),
    }
}

fn node_keys(s: &Scheduler) -> HashSet<String> {
    s.cluster
        .nodes()
        .iter()
        .filter(|n| n.node.is_some())
        .map(|n| n.name.clone())
        .collect()
}

fn node_change(old: &Node, new: &Node) -> ActionType {
    let mut action = ActionType(0);
    if old.metadata.labels != new.metadata.labels {
        action = action | ActionType::UPDATE_NODE_LABEL;
    }
    if old.metadata.annotations != new.metadata.annotations {
        action = action | ActionType::UPDATE_NODE_ANNOTATION;
    }
    let spec = |n: &Node| n.spec.clone().unwrap_or_default();
    let (os, ns) = (spec(old), spec(new));
    if os.taints != ns.taints || os.unschedulable != ns.unschedulable {
        action = action | ActionType::UPDATE_NODE_TAINT;
    }
    let status = |n: &Node| n.status.clone().unwrap_or_default();
    let (ost, nst) = (status(old), status(new));
    if ost.allocatable != nst.allocatable {
        action = action | ActionType::UPDATE_NODE_ALLOCATABLE;
    }
    // Heartbeats alone are not a change the scheduler cares about.
    let conditions = |st: &k8s_openapi::api::core::v1::NodeStatus| -> Vec<(String, String)> {
        st.conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect()
    };
    if conditions(&ost) != conditions(&nst) {
        action = action | ActionType::UPDATE_NODE_CONDITION;
    }
    action
}

fn apply_node(s: &mut Scheduler, node: Node) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let action = match s.cluster.node(&name).and_then(|n| n.node.clone()) {
        Some(old) => node_change(&old, &node),
        None => ActionType::ADD,
    };
    s.cluster.upsert_node(Arc::new(node));
    if action.0 != 0 {
        event(s, EventResource::Node, action);
    }
}

fn delete_node(s: &mut Scheduler, name: &str) {
    s.cluster.remove_node(name);
    event(s, EventResource::Node, ActionType::DELETE);
}

fn pod_keys(s: &Scheduler) -> HashSet<String> {
    let mut keys: HashSet<String> = s.cluster.pod_uids().map(str::to_string).collect();
    keys.extend(s.queue.uids().map(str::to_string));
    keys
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|st| st.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn apply_pod(s: &mut Scheduler, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let bound = pod
        .spec
        .as_ref()
        .and_then(|sp| sp.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if bound {
        s.queue.delete(&uid);
        s.cluster.remove_nominated(&uid);
        if is_terminal(&pod) {
            // A finished pod holds no resources.
            if s.cluster.pod_node(&uid).is_some() {
                s.cluster.remove_pod(&uid);
                event(s, EventResource::AssignedPod, ActionType::DELETE);
            }
            return;
        }
        // Our own binding confirmed counts as an add: the pod is new to everyone else.
        let action = match s.cluster.pod(&uid) {
            Some(old) if !s.cluster.is_assumed(&uid) => pod_change(&old.pod, &pod),
            _ => ActionType::ADD,
        };
        s.cluster.upsert_bound_pod(pod_info(pod));
        if action.0 != 0 {
            event(s, EventResource::AssignedPod, action);
        }
        return;
    }
    let name = pod_scheduler_name(&pod).to_string();
    let Some(profile) = s.profiles.get(&name) else {
        return;
    };
    if pod.metadata.deletion_timestamp.is_some() || is_terminal(&pod) {
        s.queue.delete(&uid);
        s.cluster.remove_nominated(&uid);
        return;
    }
    if s.cluster.is_assumed(&uid) {
        // Being bound right now; the binding's outcome decides what happens next.
        return;
    }
    let gated = !profile.framework.run_pre_enqueue(&pod).is_success();
    let nominated = pod
        .status
        .as_ref()
        .and_then(|st| st.nominated_node_name.clone())
        .filter(|n| !n.is_empty());
    let info = pod_info(pod);
    match nominated {
        Some(node) => s.cluster.add_nominated(info.clone(), &node),
        None => s.cluster.remove_nominated(&uid),
    }
    s.queue.add(info, gated);
}

fn pod_change(old: &Pod, new: &Pod) -> ActionType {
    let mut action = ActionType(0);
    if old.metadata.labels != new.metadata.labels {
        action = action | ActionType::UPDATE_POD_LABEL;
    }
    let old_req = crate::framework::resource::pod_requests(old, false);
    let new_req = crate::framework::resource::pod_requests(new, false);
    if new_req.milli_cpu < old_req.milli_cpu || new_req.memory < old_req.memory {
        action = action | ActionType::UPDATE_POD_SCALE_DOWN;
    }
    action
}

fn delete_pod(s: &mut Scheduler, uid: &str) {
    s.queue.delete(uid);
    s.cluster.remove_nominated(uid);
    if s.cluster.pod_node(uid).is_some() {
        s.cluster.remove_pod(uid);
        event(s, EventResource::AssignedPod, ActionType::DELETE);
    }
}

/// Objects plugins look up by key.
fn objects<K: kube::Resource + Clone>(
    s: &mut Scheduler,
    change: Change<K>,
    watch: &'static str,
    map: fn(&mut Cluster) -> &mut Objects<K>,
    resource: EventResource,
) {
    match change {
        Change::Apply(obj) => {
            let key = key_of(obj.meta());
            let existed = map(&mut s.cluster).insert(key, Arc::from(obj)).is_some();
            let action = if existed {
                ActionType::UPDATE_OTHER
            } else {
                ActionType::ADD
            };
            event(s, resource, action);
        }
        Change::Delete(obj) => {
            map(&mut s.cluster).remove(&key_of(obj.meta()));
            event(s, resource, ActionType::DELETE);
        }
        Change::Relist(list) => {
            let fresh: Objects<K> = list
                .into_iter()
                .map(|o| (key_of(o.meta()), Arc::new(o)))
                .collect();
            *map(&mut s.cluster) = fresh;
            s.synced.insert(watch);
            event(s, resource, ActionType::ALL);
        }
    }
}

/// Services and workload controllers, kept only as selectors for default spreading.
fn owners<K: kube::Resource>(
    s: &mut Scheduler,
    change: Change<K>,
    watch: &'static str,
    kind: &str,
    selector: fn(&K) -> Option<Selector>,
) {
    let entry = |obj: &K| -> (String, String) {
        let meta = obj.meta();
        (
            meta.namespace.clone().unwrap_or_default(),
            format!("{kind}/{}", meta.name.clone().unwrap_or_default()),
        )
    };
    let map = &mut s.cluster.owner_selectors;
    match change {
        Change::Apply(obj) => {
            let (ns, owner) = entry(&obj);
            let list = map.entry(ns).or_default();
            list.retain(|o| o.owner != owner);
            if let Some(selector) = selector(&obj) {
                list.push(OwnerSelector { owner, selector });
            }
        }
        Change::Delete(obj) => {
            let (ns, owner) = entry(&obj);
            if let Some(list) = map.get_mut(&ns) {
                list.retain(|o| o.owner != owner);
            }
        }
        Change::Relist(list) => {
            let prefix = format!("{kind}/");
            for owners in map.values_mut() {
                owners.retain(|o| !o.owner.starts_with(&prefix));
            }
            for obj in list {
                let (ns, owner) = entry(&obj);
                if let Some(selector) = selector(&obj) {
                    map.entry(ns)
                        .or_default()
                        .push(OwnerSelector { owner, selector });
                }
            }
            s.synced.insert(watch);
        }
    }
}
