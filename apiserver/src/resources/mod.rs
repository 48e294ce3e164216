//! The resource table: every resource the server serves, in one place.
//!
//! Routing, discovery, OpenAPI, storage keys and (later) RBAC all read this table. A built-in
//! resource is one row in `builtin.rs`; custom resources add rows at run time.

mod builtin;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use builtin::builtin_resources;

/// The verbs upstream names in discovery.
pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Resources that are only created and answered, never stored (reviews).
pub const CREATE_ONLY: &[&str] = &["create"];

/// A subresource of a resource, e.g. `pods/status` or `deployments/scale`.
#[derive(Clone, Debug)]
pub struct Subresource {
    pub name: &'static str,
    /// Group, version and kind of what the subresource serves; the parent's own kind when None.
    pub kind: Option<(&'static str, &'static str, &'static str)>,
    pub verbs: &'static [&'static str],
}

/// How a resource's objects are stored.
#[derive(Clone, Debug)]
pub enum Storage {
    /// Under `/registry/<prefix>/[<namespace>/]<name>`.
    Keyed { prefix: String },
    /// Not stored: the request is answered on the spot (reviews).
    Virtual,
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub subresources: Vec<Subresource>,
    pub storage: Storage,
    /// The OpenAPI definition name of the kind, e.g. `io.k8s.api.core.v1.Pod`.
    pub definition: String,
    /// Whether a PUT of an object that does not exist creates it.
    pub create_on_update: bool,
    /// Whether a delete answers with the deleted object rather than a success Status.
    pub return_deleted_object: bool,
    /// Whether this group/version is the one clients should prefer for the group.
    pub preferred: bool,
}

impl Resource {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }

    pub fn has_status(&self) -> bool {
        self.has_subresource("status")
    }

    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The storage key prefix (ending in `/`) for a namespace, or for all namespaces when None.
    pub fn key_prefix(&self, namespace: Option<&str>) -> Option<String> {
        match &self.storage {
            Storage::Keyed { prefix } => Some(match namespace {
                Some(ns) if self.namespaced => format!("/registry/{prefix}/{ns}/"),
                _ => format!("/registry/{prefix}/"),
            }),
            Storage::Virtual => None,
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> Option<String> {
        self.key_prefix(namespace).map(|p| format!("{p}{name}"))
    }

    /// The `group/resource` string used in error messages (`pods`, `deployments.apps`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The live table: built-ins plus whatever custom resources add.
#[derive(Default)]
pub struct ResourceTable {
    rows: RwLock<Vec<Arc<Resource>>>,
    by_path: RwLock<HashMap<(String, String, String), Arc<Resource>>>,
}

impl ResourceTable {
    pub fn new(rows: Vec<Resource>) -> Self {
        let table = ResourceTable::default();
        for row in rows {
            table.add(row);
        }
        table
    }

    pub fn add(&self, row: Resource) {
        let row = Arc::new(row);
        self.by_path.write().unwrap().insert(
            (row.group.clone(), row.version.clone(), row.plural.clone()),
            row.clone(),
        );
        let mut rows = self.rows.write().unwrap();
        rows.retain(|r| {
            !(r.group == row.group && r.version == row.version && r.plural == row.plural)
        });
        rows.push(row);
    }

    pub fn remove(&self, group: &str, version: &str, plural: &str) {
        self.by_path.write().unwrap().remove(&(
            group.to_string(),
            version.to_string(),
            plural.to_string(),
        ));
        self.rows
            .write()
            .unwrap()
            .retain(|r| !(r.group == group && r.version == version && r.plural == plural));
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.by_path
            .read()
            .unwrap()
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Resource>> {
        self.rows.read().unwrap().clone()
    }

    /// The resource serving `kind` in `group`/`version`.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.rows
            .read()
            .unwrap()
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Whether the group/version is served at all.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.rows
            .read()
            .unwrap()
            .iter()
            .any(|r| r.group == group && r.version == version)
    }

    /// Groups in the order discovery lists them, each with its versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let rows = self.rows.read().unwrap();
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in rows.iter() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        if r.preferred {
                            versions.insert(0, r.version.clone());
                        } else {
                            versions.push(r.version.clone());
                        }
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    /// Rows of one group/version, in table order.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        self.rows
            .read()
            .unwrap()
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }
}
