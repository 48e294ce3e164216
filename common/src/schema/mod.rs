//! Schema facts about the built-in API types: for every OpenAPI definition, the
//! group-version-kinds it serves and, per property, where the property's type lives and which
//! Kubernetes extensions (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`) it carries.
//!
//! Strategic merge patch needs the patch strategies and merge keys to know how lists merge,
//! and the OpenAPI publisher needs every extension to decorate the schemas it derives from
//! the `k8s-openapi` types. The table is generated from upstream's OpenAPI facts by
//! `hack/gen-schema-facts.py`, embedded at build time and parsed on first use.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;

/// Which part of a property the [`Property::reference`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    /// The property itself is an object of the referenced definition.
    Object,
    /// The property is an array whose items are of the referenced definition.
    Items,
    /// The property is a map whose values are of the referenced definition.
    Values,
}

/// Facts about one property of a definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Property {
    /// The OpenAPI `type` (`"array"`, `"object"`, `"string"`, ...); `None` for a bare `$ref`.
    pub type_: Option<String>,
    /// Name of the definition this property refers to, if any; see `reference_kind`.
    pub reference: Option<String>,
    /// Whether `reference` describes the property, its array items or its map values.
    pub reference_kind: Option<ReferenceKind>,
    /// The scalar type of array items or map values when they are not a definition.
    pub element_type: Option<String>,
    /// `x-kubernetes-patch-strategy`, as upstream writes it (may be `"merge,retainKeys"`).
    pub patch_strategy: Option<String>,
    /// `x-kubernetes-patch-merge-key`.
    pub patch_merge_key: Option<String>,
    /// `x-kubernetes-list-type` (`atomic`, `set` or `map`).
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Option<Vec<String>>,
    /// `x-kubernetes-map-type` (`atomic` or `granular`).
    pub map_type: Option<String>,
}

impl Property {
    /// The individual strategies of `patch_strategy`.
    pub fn patch_strategies(&self) -> impl Iterator<Item = &str> {
        self.patch_strategy
            .as_deref()
            .into_iter()
            .flat_map(|s| s.split(','))
    }

    /// Whether `patch_strategy` lists `strategy`.
    pub fn has_patch_strategy(&self, strategy: &str) -> bool {
        self.patch_strategies().any(|s| s == strategy)
    }

    /// The definition of the property itself, when it is an object.
    pub fn object_reference(&self) -> Option<&str> {
        self.reference_of(ReferenceKind::Object)
    }

    /// The definition of the array items, when the property is an array of objects.
    pub fn items_reference(&self) -> Option<&str> {
        self.reference_of(ReferenceKind::Items)
    }

    /// The definition of the map values, when the property is a map of objects.
    pub fn values_reference(&self) -> Option<&str> {
        self.reference_of(ReferenceKind::Values)
    }

    /// Whether the property carries any of the Kubernetes extensions.
    pub fn has_extensions(&self) -> bool {
        self.patch_strategy.is_some()
            || self.patch_merge_key.is_some()
            || self.list_type.is_some()
            || self.list_map_keys.is_some()
            || self.map_type.is_some()
    }

    fn reference_of(&self, kind: ReferenceKind) -> Option<&str> {
        if self.reference_kind == Some(kind) {
            self.reference.as_deref()
        } else {
            None
        }
    }
}

/// A group-version-kind served by a definition; the core group is `""`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// Facts about one OpenAPI definition, e.g. `io.k8s.api.core.v1.PodSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definition {
    /// The full definition name.
    pub name: String,
    /// `x-kubernetes-group-version-kind`; empty for types that are not top-level resources.
    pub group_version_kinds: Vec<GroupVersionKind>,
    /// The definition's own `type`, for the few that declare one (e.g. `Quantity` is a string).
    pub type_: Option<String>,
    /// The definition's own `x-kubernetes-map-type`.
    pub map_type: Option<String>,
    properties: BTreeMap<String, Property>,
}

impl Definition {
    /// The property with this JSON name.
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.get(name)
    }

    /// All properties, sorted by name.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &Property)> {
        self.properties.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// The facts of the definition with this name.
pub fn definition(name: &str) -> Option<&'static Definition> {
    TABLE.definitions.get(name)
}

/// All definitions, sorted by name.
pub fn definitions() -> impl Iterator<Item = &'static Definition> {
    TABLE.definitions.values()
}

/// The name of the definition serving this group-version-kind (core group is `""`).
pub fn definition_for_gvk(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    TABLE
        .by_kind
        .get(kind)?
        .iter()
        .find(|(g, v, _)| g == group && v == version)
        .map(|(_, _, name)| name.as_str())
}

struct Table {
    definitions: BTreeMap<String, Definition>,
    /// kind -> (group, version, definition); keyed by kind so lookups need no allocation.
    by_kind: HashMap<String, Vec<(String, String, String)>>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| load(include_str!("facts.json")));

// The embedded file uses short keys to stay small; see hack/gen-schema-facts.py.
#[derive(Deserialize)]
struct RawDefinition {
    #[serde(default)]
    g: Vec<(String, String, String)>,
    #[serde(default)]
    t: Option<String>,
    #[serde(default)]
    m: Option<String>,
    #[serde(default)]
    p: BTreeMap<String, RawProperty>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawProperty {
    Scalar(String),
    Full(Box<RawFullProperty>),
}

#[derive(Deserialize)]
struct RawFullProperty {
    #[serde(default)]
    t: Option<String>,
    #[serde(default)]
    r: Option<String>,
    #[serde(default)]
    i: Option<String>,
    #[serde(default)]
    v: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    s: Option<String>,
    #[serde(default)]
    k: Option<String>,
    #[serde(default)]
    l: Option<String>,
    #[serde(default)]
    lk: Option<Vec<String>>,
    #[serde(default)]
    m: Option<String>,
}

impl From<RawProperty> for Property {
    fn from(raw: RawProperty) -> Self {
        match raw {
            RawProperty::Scalar(t) => Property {
                type_: Some(t),
                ..Property::default()
            },
            RawProperty::Full(p) => {
                let p = *p;
                let (reference, reference_kind) = match (p.r, p.i, p.v) {
                    (Some(r), _, _) => (Some(r), Some(ReferenceKind::Object)),
                    (None, Some(i), _) => (Some(i), Some(ReferenceKind::Items)),
                    (None, None, Some(v)) => (Some(v), Some(ReferenceKind::Values)),
                    (None, None, None) => (None, None),
                };
                Property {
                    type_: p.t,
                    reference,
                    reference_kind,
                    element_type: p.e,
                    patch_strategy: p.s,
                    patch_merge_key: p.k,
                    list_type: p.l,
                    list_map_keys: p.lk,
                    map_type: p.m,
                }
            }
        }
    }
}

fn load(text: &str) -> Table {
    // The file is generated and checked by the tests; should it ever be unreadable the
    // patch code degrades to schemaless merging rather than taking the process down.
    let raw: BTreeMap<String, RawDefinition> = serde_json::from_str(text).unwrap_or_default();
    let mut by_kind: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    let definitions = raw
        .into_iter()
        .map(|(name, def)| {
            for (group, version, kind) in &def.g {
                by_kind.entry(kind.clone()).or_default().push((
                    group.clone(),
                    version.clone(),
                    name.clone(),
                ));
            }
            let definition = Definition {
                name: name.clone(),
                group_version_kinds: def
                    .g
                    .into_iter()
                    .map(|(group, version, kind)| GroupVersionKind {
                        group,
                        version,
                        kind,
                    })
                    .collect(),
                type_: def.t,
                map_type: def.m,
                properties: def.p.into_iter().map(|(k, v)| (k, v.into())).collect(),
            };
            (name, definition)
        })
        .collect();
    Table {
        definitions,
        by_kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_loads() {
        assert!(definitions().count() > 500);
        assert!(definition("io.k8s.api.core.v1.Pod").is_some());
        assert!(definition("io.k8s.api.core.v1.NoSuchThing").is_none());
    }

    #[test]
    fn container_list_facts() {
        let spec = definition("io.k8s.api.core.v1.PodSpec").unwrap();
        let containers = spec.property("containers").unwrap();
        assert_eq!(containers.type_.as_deref(), Some("array"));
        assert_eq!(
            containers.items_reference(),
            Some("io.k8s.api.core.v1.Container")
        );
        assert_eq!(containers.object_reference(), None);
        assert_eq!(containers.patch_strategy.as_deref(), Some("merge"));
        assert_eq!(containers.patch_merge_key.as_deref(), Some("name"));
        assert_eq!(containers.list_type.as_deref(), Some("map"));
        assert_eq!(containers.list_map_keys, Some(vec!["name".to_string()]));

        let volumes = spec.property("volumes").unwrap();
        assert_eq!(volumes.patch_strategy.as_deref(), Some("merge,retainKeys"));
        assert!(volumes.has_patch_strategy("retainKeys"));
        assert!(volumes.has_patch_strategy("merge"));
        assert!(!volumes.has_patch_strategy("replace"));

        let node_selector = spec.property("nodeSelector").unwrap();
        assert_eq!(node_selector.map_type.as_deref(), Some("atomic"));
        assert_eq!(node_selector.element_type.as_deref(), Some("string"));
        assert_eq!(node_selector.reference, None);

        let tolerations = spec.property("tolerations").unwrap();
        assert_eq!(tolerations.patch_strategy, None);
        assert_eq!(tolerations.list_type.as_deref(), Some("atomic"));
    }

    #[test]
    fn object_and_map_value_references() {
        let deployment_spec = definition("io.k8s.api.apps.v1.DeploymentSpec").unwrap();
        let strategy = deployment_spec.property("strategy").unwrap();
        assert_eq!(
            strategy.object_reference(),
            Some("io.k8s.api.apps.v1.DeploymentStrategy")
        );
        assert_eq!(strategy.reference_kind, Some(ReferenceKind::Object));
        assert_eq!(strategy.patch_strategy.as_deref(), Some("retainKeys"));
        assert_eq!(strategy.type_, None);

        let requirements = definition("io.k8s.api.core.v1.ResourceRequirements").unwrap();
        let limits = requirements.property("limits").unwrap();
        assert_eq!(
            limits.values_reference(),
            Some("io.k8s.apimachinery.pkg.api.resource.Quantity")
        );
        assert_eq!(limits.type_.as_deref(), Some("object"));
    }

    #[test]
    fn metadata_lists() {
        let meta = definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").unwrap();
        let finalizers = meta.property("finalizers").unwrap();
        assert_eq!(finalizers.patch_strategy.as_deref(), Some("merge"));
        assert_eq!(finalizers.patch_merge_key, None);
        assert_eq!(finalizers.element_type.as_deref(), Some("string"));
        let owners = meta.property("ownerReferences").unwrap();
        assert_eq!(owners.patch_merge_key.as_deref(), Some("uid"));
        assert_eq!(owners.list_map_keys, Some(vec!["uid".to_string()]));
    }

    #[test]
    fn definition_level_facts() {
        let quantity = definition("io.k8s.apimachinery.pkg.api.resource.Quantity").unwrap();
        assert_eq!(quantity.type_.as_deref(), Some("string"));
        let selector = definition("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector").unwrap();
        assert_eq!(selector.map_type.as_deref(), Some("atomic"));
    }

    #[test]
    fn gvk_lookup() {
        assert_eq!(
            definition_for_gvk("", "v1", "Pod"),
            Some("io.k8s.api.core.v1.Pod")
        );
        assert_eq!(
            definition_for_gvk("apps", "v1", "Deployment"),
            Some("io.k8s.api.apps.v1.Deployment")
        );
        assert_eq!(definition_for_gvk("apps", "v2", "Deployment"), None);
        assert_eq!(definition_for_gvk("", "v1", "Deployment"), None);
        let pod = definition("io.k8s.api.core.v1.Pod").unwrap();
        assert_eq!(
            pod.group_version_kinds,
            vec![GroupVersionKind {
                group: String::new(),
                version: "v1".into(),
                kind: "Pod".into()
            }]
        );
    }

    #[test]
    fn every_reference_resolves() {
        for def in definitions() {
            for (name, prop) in def.properties() {
                if let Some(target) = &prop.reference {
                    assert!(
                        definition(target).is_some(),
                        "{}.{name} refers to missing {target}",
                        def.name
                    );
                }
            }
        }
    }

    #[test]
    fn table_matches_upstream_extension_counts() {
        // Counted from api-facts.json: every property extension must survive generation.
        let props: Vec<&Property> = definitions()
            .flat_map(|d| d.properties().map(|(_, p)| p))
            .collect();
        let count = |f: fn(&Property) -> bool| props.iter().filter(|p| f(p)).count();
        assert_eq!(count(|p| p.patch_strategy.is_some()), 65);
        assert_eq!(count(|p| p.patch_merge_key.is_some()), 61);
        assert_eq!(count(|p| p.list_type.is_some()), 322);
        assert_eq!(count(|p| p.list_map_keys.is_some()), 68);
        assert_eq!(count(|p| p.map_type.is_some()), 6);
        assert_eq!(definitions().filter(|d| d.map_type.is_some()).count(), 35);
    }
}
