//! The schema definitions of everything the resource table serves, in swagger 2.0 form
//! (`$ref: #/definitions/<name>`), with upstream's Kubernetes extensions.
//!
//! Field descriptions and structure come from `k8s-openapi`; the extensions that say how lists
//! and maps merge come from the schema facts of `ferrokube-common`. v3 derives its schemas from
//! these (see `v3.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferrokube_common::schema;
use serde_json::{json, Map, Value};

use super::catalog;
use crate::resources::Resource;

/// Definitions by name, e.g. `io.k8s.api.core.v1.Pod`.
pub type Definitions = BTreeMap<String, Value>;

pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub const API_GROUP: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup";
pub const API_GROUP_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList";
pub const API_VERSIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions";
pub const VERSION_INFO: &str = "io.k8s.apimachinery.pkg.version.Info";
pub const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// The meta types that every set of paths refers to.
const MACHINERY: &[&str] = &[
    STATUS,
    DELETE_OPTIONS,
    WATCH_EVENT,
    PATCH,
    API_RESOURCE_LIST,
    API_GROUP,
    API_GROUP_LIST,
    API_VERSIONS,
    VERSION_INFO,
];

/// Types whose value may be any JSON; `k8s-openapi` narrows them, upstream leaves them open.
const ANY_JSON: &[&str] = &[
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
];

/// Kinds whose `metadata` upstream does require (its Go field lacks `omitempty`).
const METADATA_REQUIRED: &[&str] = &["io.k8s.api.core.v1.Event"];

/// Upstream lists these under every group-version it serves.
const PER_GROUP_VERSION: &[&str] = &[DELETE_OPTIONS, WATCH_EVENT];

/// The `#/definitions/...` reference to a definition.
pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/definitions/{name}") })
}

/// The definition name a `$ref` points at.
pub fn referenced_name(reference: &str) -> Option<&str> {
    reference
        .strip_prefix("#/definitions/")
        .or_else(|| reference.strip_prefix("#/components/schemas/"))
}

/// The definition name of a row's list kind (`io.k8s.api.core.v1.PodList`).
pub fn list_definition(row: &Resource) -> String {
    match row.definition.strip_suffix(row.kind.as_str()) {
        Some(package) => format!("{package}{}", row.list_kind),
        None => format!("{}List", row.definition),
    }
}

/// The definition serving a group-version-kind, when one is known.
pub fn definition_for(
    group: &str,
    version: &str,
    kind: &str,
    rows: &[Arc<Resource>],
) -> Option<String> {
    rows.iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .map(|r| r.definition.clone())
        .or_else(|| schema::definition_for_gvk(group, version, kind).map(str::to_string))
}

/// Builds every definition the rows need: their kinds, list kinds, subresource kinds and the
/// API machinery's own types, with everything they refer to.
pub fn build(rows: &[Arc<Resource>]) -> Definitions {
    let mut generator = catalog::generator();
    for name in MACHINERY {
        catalog::add_definition(&mut generator, name);
    }
    for row in rows {
        catalog::add_definition(&mut generator, &row.definition);
        for sub in &row.subresources {
            if let Some((g, v, k)) = sub.kind {
                if let Some(name) = definition_for(g, v, k, rows) {
                    catalog::add_definition(&mut generator, &name);
                }
            }
        }
    }
    let mut definitions: Definitions = generator.take_definitions(false).into_iter().collect();
    for row in rows {
        add_list(&mut definitions, row);
    }
    let group_versions: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.group.clone(), r.version.clone()))
        .collect();
    for (name, definition) in definitions.iter_mut() {
        decorate(name, definition, rows, &group_versions);
    }
    definitions
}

/// Synthesises `<Kind>List`: `k8s-openapi` models lists with one generic type, so it has no
/// schema per list kind.
fn add_list(definitions: &mut Definitions, row: &Resource) {
    let name = list_definition(row);
    if definitions.contains_key(&name) {
        return;
    }
    let Some(item) = definitions.get(&row.definition) else {
        return;
    };
    // apiVersion and kind mean the same on a list as on its items.
    let type_meta = |field: &str| {
        item.pointer(&format!("/properties/{field}"))
            .cloned()
            .unwrap_or_else(|| json!({ "type": "string" }))
    };
    let mut items = reference(&row.definition);
    let list = json!({
        "description": format!("{} is a list of {} objects.", row.list_kind, row.kind),
        "type": "object",
        "properties": {
            "apiVersion": type_meta("apiVersion"),
            "items": {
                "description": format!("The {} objects of the list.", row.kind),
                "type": "array",
                "items": items.take(),
            },
            "kind": type_meta("kind"),
            "metadata": {
                "$ref": format!("#/definitions/{LIST_META}"),
                "description": "Standard list metadata: resourceVersion of the list and the continue token of a chunked list.",
            },
        },
        "required": ["items"],
    });
    definitions.insert(name, list);
}

/// Adds upstream's extensions and evens out where `k8s-openapi` and upstream differ.
fn decorate(
    name: &str,
    definition: &mut Value,
    rows: &[Arc<Resource>],
    group_versions: &BTreeSet<(String, String)>,
) {
    let Some(object) = definition.as_object_mut() else {
        return;
    };
    match name {
        INT_OR_STRING => {
            object.remove("x-kubernetes-int-or-string");
            object.insert("type".into(), "string".into());
            object.insert("format".into(), "int-or-string".into());
        }
        QUANTITY => {
            object.remove("x-kubernetes-int-or-string");
            object.insert("type".into(), "string".into());
        }
        n if ANY_JSON.contains(&n) => {
            object.retain(|k, _| k == "description");
        }
        _ => {}
    }

    let facts = schema::definition(name);
    if let Some(facts) = facts {
        if let Some(map_type) = &facts.map_type {
            object.insert("x-kubernetes-map-type".into(), map_type.as_str().into());
        }
    }

    let gvks = group_version_kinds(name, facts, rows, group_versions);
    let is_top_level = !gvks.is_empty();
    if is_top_level {
        object.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
    }

    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        if let Some(facts) = facts {
            for (field, property) in properties.iter_mut() {
                if let (Some(fact), Some(property)) =
                    (facts.property(field), property.as_object_mut())
                {
                    add_property_extensions(property, fact);
                }
            }
        }
    }

    // `k8s-openapi` makes `metadata` of every kind mandatory (its Rust field is not optional);
    // upstream accepts objects without it, and kubectl's client-side validation must too.
    if is_top_level && !METADATA_REQUIRED.contains(&name) {
        if let Some(Value::Array(required)) = object.get_mut("required") {
            required.retain(|r| r != "metadata");
            if required.is_empty() {
                object.remove("required");
            }
        }
    }
}

fn add_property_extensions(property: &mut Map<String, Value>, fact: &schema::Property) {
    if let Some(keys) = &fact.list_map_keys {
        property.insert("x-kubernetes-list-map-keys".into(), json!(keys));
    }
    if let Some(v) = &fact.list_type {
        property.insert("x-kubernetes-list-type".into(), v.as_str().into());
    }
    if let Some(v) = &fact.map_type {
        property.insert("x-kubernetes-map-type".into(), v.as_str().into());
    }
    if let Some(v) = &fact.patch_merge_key {
        property.insert("x-kubernetes-patch-merge-key".into(), v.as_str().into());
    }
    if let Some(v) = &fact.patch_strategy {
        property.insert("x-kubernetes-patch-strategy".into(), v.as_str().into());
    }
}

/// `x-kubernetes-group-version-kind` of a definition: what the table serves it as, what the
/// schema facts know it as, and for the per-group-version meta types every served
/// group-version.
fn group_version_kinds(
    name: &str,
    facts: Option<&schema::Definition>,
    rows: &[Arc<Resource>],
    group_versions: &BTreeSet<(String, String)>,
) -> Vec<Value> {
    let mut gvks: BTreeSet<(String, String, String)> = BTreeSet::new();
    if PER_GROUP_VERSION.contains(&name) {
        let kind = name.rsplit('.').next().unwrap_or_default();
        gvks.insert((String::new(), "v1".into(), kind.into()));
        for (g, v) in group_versions {
            gvks.insert((g.clone(), v.clone(), kind.into()));
        }
    } else {
        if let Some(facts) = facts {
            for gvk in &facts.group_version_kinds {
                gvks.insert((gvk.group.clone(), gvk.version.clone(), gvk.kind.clone()));
            }
        }
        for row in rows {
            if row.definition == name {
                gvks.insert((row.group.clone(), row.version.clone(), row.kind.clone()));
            } else if list_definition(row) == name {
                gvks.insert((
                    row.group.clone(),
                    row.version.clone(),
                    row.list_kind.clone(),
                ));
            }
        }
    }
    gvks.into_iter()
        .map(|(group, version, kind)| json!({ "group": group, "kind": kind, "version": version }))
        .collect()
}

/// The names of the definitions `roots` refer to, directly or through other definitions,
/// the roots included.
pub fn closure<'a>(
    definitions: &Definitions,
    roots: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut pending: Vec<String> = roots.into_iter().map(str::to_string).collect();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(definition) = definitions.get(&name) {
            collect_references(definition, &mut pending);
        }
    }
    seen.retain(|n| definitions.contains_key(n));
    seen
}

/// Pushes the names of every definition `value` refers to.
pub fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = referenced_name(r) {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin_resources;

    fn built() -> Definitions {
        let rows: Vec<Arc<Resource>> = builtin_resources().into_iter().map(Arc::new).collect();
        build(&rows)
    }

    #[test]
    fn kinds_carry_their_group_version_kind() {
        let defs = built();
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{ "group": "", "kind": "Pod", "version": "v1" }])
        );
        assert!(
            pod.get("required").is_none(),
            "metadata is not required upstream"
        );
        let list = &defs["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(
            list["x-kubernetes-group-version-kind"],
            json!([{ "group": "apps", "kind": "DeploymentList", "version": "v1" }])
        );
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        let scale = &defs["io.k8s.api.autoscaling.v1.Scale"];
        assert_eq!(scale["x-kubernetes-group-version-kind"][0]["kind"], "Scale");
        let watch = defs[WATCH_EVENT]["x-kubernetes-group-version-kind"]
            .as_array()
            .unwrap();
        assert!(watch.contains(&json!({ "group": "apps", "kind": "WatchEvent", "version": "v1" })));
    }

    #[test]
    fn merge_extensions_from_the_facts() {
        let defs = built();
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
            "atomic"
        );
    }

    #[test]
    fn special_scalars_as_upstream() {
        let defs = built();
        assert_eq!(defs[INT_OR_STRING]["type"], "string");
        assert_eq!(defs[INT_OR_STRING]["format"], "int-or-string");
        assert!(defs[INT_OR_STRING]
            .get("x-kubernetes-int-or-string")
            .is_none());
        assert_eq!(defs[QUANTITY]["type"], "string");
    }

    #[test]
    fn every_reference_resolves() {
        let defs = built();
        let mut refs = Vec::new();
        for d in defs.values() {
            collect_references(d, &mut refs);
        }
        for r in refs {
            assert!(defs.contains_key(&r), "dangling reference to {r}");
        }
        let closure = closure(&defs, ["io.k8s.api.apps.v1.Deployment"]);
        assert!(closure.contains("io.k8s.api.core.v1.PodSpec"));
        assert!(!closure.contains("io.k8s.api.batch.v1.Job"));
    }
}
