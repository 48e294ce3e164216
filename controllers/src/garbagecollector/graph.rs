//! The ownership graph: every object seen by the metadata watches, with edges from owners to
//! dependents. Changes to it decide which objects need another look (upstream's
//! GraphBuilder.processGraphChanges), and it answers which dependents an owner has.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::discovery::ApiResource;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// Work the collector does on one object, by uid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Work {
    /// Delete the object if its owners are gone, or finish its foreground deletion.
    AttemptToDelete(String),
    /// Release the object's dependents, then drop its `orphan` finalizer.
    AttemptToOrphan(String),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub dependents: HashSet<String>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn deleting_dependents(&self) -> bool {
        self.being_deleted && self.finalizers.iter().any(|f| f == FOREGROUND)
    }

    pub fn orphaning(&self) -> bool {
        self.being_deleted && self.finalizers.iter().any(|f| f == ORPHAN)
    }
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Dependents that point at a uid the graph has not (yet) seen as an object.
    waiting: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The dependents of `uid`, whether or not the owner itself has been observed.
    pub fn dependents(&self, uid: &str) -> Vec<Node> {
        let mut out: HashSet<&String> = HashSet::new();
        if let Some(n) = self.nodes.get(uid) {
            out.extend(n.dependents.iter());
        }
        if let Some(w) = self.waiting.get(uid) {
            out.extend(w.iter());
        }
        out.into_iter()
            .filter_map(|d| self.nodes.get(d).cloned())
            .collect()
    }

    /// Uids of every object of `resource` in the graph (to reconcile a relist against).
    pub fn uids_of(&self, resource: &ApiResource) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| same_resource(&n.resource, resource))
            .map(|n| n.uid.clone())
            .collect()
    }

    fn link(&mut self, owner: &str, dependent: &str) {
        match self.nodes.get_mut(owner) {
            Some(o) => {
                o.dependents.insert(dependent.to_string());
            }
            None => {
                self.waiting
                    .entry(owner.to_string())
                    .or_default()
                    .insert(dependent.to_string());
            }
        }
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(o) = self.nodes.get_mut(owner) {
            o.dependents.remove(dependent);
        }
        if let Some(w) = self.waiting.get_mut(owner) {
            w.remove(dependent);
            if w.is_empty() {
                self.waiting.remove(owner);
            }
        }
    }

    /// An object was added or changed; returns the work that follows.
    pub fn upsert(&mut self, resource: &ApiResource, meta: &ObjectMeta) -> Vec<Work> {
        let Some(uid) = meta.uid.clone() else {
            return Vec::new();
        };
        let mut work = Vec::new();
        let owners = meta.owner_references.clone().unwrap_or_default();
        let old = self.nodes.remove(&uid);
        let mut dependents = old
            .as_ref()
            .map(|o| o.dependents.clone())
            .unwrap_or_default();
        if let Some(w) = self.waiting.remove(&uid) {
            dependents.extend(w);
        }
        if let Some(o) = &old {
            for r in &o.owners {
                if !owners.iter().any(|n| n.uid == r.uid) {
                    self.unlink(&r.uid, &uid);
                    // An owner waiting on its dependents may now be free to go.
                    if self
                        .nodes
                        .get(&r.uid)
                        .is_some_and(Node::deleting_dependents)
                    {
                        work.push(Work::AttemptToDelete(r.uid.clone()));
                    }
                }
            }
        }
        let node = Node {
            resource: resource.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            uid: uid.clone(),
            owners: owners.clone(),
            dependents,
            being_deleted: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        };
        let was_deleting_dependents = old.as_ref().is_some_and(Node::deleting_dependents);
        let was_orphaning = old.as_ref().is_some_and(Node::orphaning);
        let owners_changed = old.as_ref().is_none_or(|o| {
            o.owners.iter().map(|r| &r.uid).collect::<Vec<_>>()
                != owners.iter().map(|r| &r.uid).collect::<Vec<_>>()
        });
        if node.orphaning() && !was_orphaning {
            work.push(Work::AttemptToOrphan(uid.clone()));
        }
        if node.deleting_dependents() {
            // Its dependents must go first; each gets a look, and the owner is looked at
            // again whenever one of them changes.
            work.push(Work::AttemptToDelete(uid.clone()));
            if !was_deleting_dependents {
                work.extend(node.dependents.iter().cloned().map(Work::AttemptToDelete));
            }
        }
        // A new or re-pointed dependent whose owner is unseen, or is itself going away, is
        // checked against the live owner.
        if owners_changed
            && owners
                .iter()
                .any(|r| self.nodes.get(&r.uid).is_none_or(|o| o.being_deleted))
        {
            work.push(Work::AttemptToDelete(uid.clone()));
        }
        // A dependent of an owner in foreground deletion that changed (e.g. dropped its
        // blockOwnerDeletion) may unblock that owner.
        for r in &owners {
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(Node::deleting_dependents)
            {
                work.push(Work::AttemptToDelete(r.uid.clone()));
            }
        }
        for r in &owners {
            self.link(&r.uid, &uid);
        }
        self.nodes.insert(uid, node);
        work
    }

    /// An object is gone; returns the work that follows.
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work = Vec::new();
        for r in &node.owners {
            self.unlink(&r.uid, uid);
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(Node::deleting_dependents)
            {
                work.push(Work::AttemptToDelete(r.uid.clone()));
            }
        }
        // Dependents keep pointing at the uid: they are now waiting on an absent owner, and
        // each is checked (and deleted if nothing else owns it).
        if !node.dependents.is_empty() {
            self.waiting
                .entry(uid.to_string())
                .or_default()
                .extend(node.dependents.iter().cloned());
        }
        work.extend(node.dependents.into_iter().map(Work::AttemptToDelete));
        work
    }
}

pub fn same_resource(a: &ApiResource, b: &ApiResource) -> bool {
    a.group == b.group && a.version == b.version && a.plural == b.plural
}
