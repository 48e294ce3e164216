//! Per-kind behaviour on top of the generic registry: defaults, validation, update rules and
//! the fields a field selector may name. Kinds without special rules use `Generic`.

use serde_json::Value;

use crate::status::FieldError;

/// How a kind's object names are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds.
    Subdomain,
    /// RFC 1123 label: namespaces, and other names used as DNS labels.
    Label,
    /// RFC 1035 label: services.
    Label1035,
    /// Anything that can be a path segment: RBAC objects and some others.
    PathSegment,
}

/// A kind's rules. Every method has the generic behaviour as its default.
pub trait Strategy: Send + Sync {
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Whether `metadata.generation` starts at 1 and grows with every spec change.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Fills in defaults; runs on create and on every update, as upstream's decoding does.
    fn defaults(&self, _obj: &mut Value) {}

    /// Whether a create starts with an empty status. Nodes keep theirs: the kubelet
    /// registers a node with its status filled in.
    fn resets_status_on_create(&self) -> bool {
        true
    }

    /// Adjusts a new object before validation (e.g. clears status).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Adjusts an updated object before validation, knowing the stored one.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Kind-specific validation of a new object (metadata is validated generically).
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Kind-specific validation of an update (immutable fields and transitions), which
    /// also runs `validate` on the new object by default.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// The fields beyond `metadata.name` and `metadata.namespace` a field selector may use.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The value of a selectable field; by default the dotted path into the object.
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        crate::meta::path(obj, field).map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// Warnings to send back with a successful write.
    fn warnings(&self, _obj: &Value) -> Vec<String> {
        Vec::new()
    }
}

/// The rules of a kind with nothing special about it.
pub struct Generic;

impl Strategy for Generic {}

/// Finds the strategy of a kind.
pub fn for_kind(group: &str, kind: &str) -> &'static dyn Strategy {
    kinds::lookup(group, kind).unwrap_or(&Generic)
}

mod batch;
mod config;
mod core_v1;
mod cron;
mod kinds;
mod misc;
mod networking;
mod pod;
mod podspec;
mod rbac;
mod scaling;
mod service;
mod util;
mod workloads;

#[cfg(test)]
mod tests;
