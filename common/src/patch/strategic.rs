//! Strategic merge patch, the Kubernetes-specific patch format used by `kubectl apply`,
//! `kubectl edit` and `kubectl patch --type strategic`.
//!
//! It is a JSON merge patch that knows, from the schema facts, how each list merges:
//! * a list whose patch strategy is `merge` and that has a merge key (containers by `name`,
//!   ports by `containerPort`, ...) merges item by item, matching items on that key;
//! * a `merge` list of scalars (finalizers) is a set union;
//! * every other list is replaced, and so is a map whose strategy is `replace`;
//! * where the schema says nothing (inside free-form maps, unknown fields, types not in the
//!   table) maps merge and lists are replaced.
//!
//! Patches may carry directives: `$patch: replace|delete` in a map or list item,
//! `$retainKeys` (drop the fields not listed), `$deleteFromPrimitiveList/<field>` and
//! `$setElementOrder/<field>` (which kubectl's three-way diff sends to pin the final order).
//!
//! The resulting list order is upstream's, which is easy to get subtly wrong, so it is spelled
//! out here. When a patch list merges into a live list, the items named by the patch keep
//! the patch's relative order and the items only the server has keep theirs; the two runs are
//! then interleaved by walking both and taking the server item only when both items exist on
//! the server and the server item comes first there. New items therefore land before the
//! first server item they are compared with. `$setElementOrder` repeats the same procedure
//! with its own list as the patch order, against the live list as it looks after the
//! merge. Upstream's live list at that point is the original list edited in place: items
//! removed by `$patch: delete` shift the rest down, and as many newly added items as were
//! removed fill the freed slots at the end. That detail decides where server-only items go
//! when kubectl adds and deletes items in the same apply, so it is reproduced exactly.

use serde_json::{Map, Value};

use super::{check_depth, describe, type_name, PatchError};
use crate::schema::{self, Definition, ReferenceKind};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Applies a strategic merge patch to `original`, whose type is the schema facts definition
/// `definition` (e.g. `io.k8s.api.apps.v1.Deployment`), and returns the patched object.
///
/// An unknown `definition` (a custom resource, a type newer than the table) makes the whole
/// patch schemaless: maps merge and lists are replaced, directives still apply.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    definition: &str,
) -> Result<Value, PatchError> {
    check_depth(patch)?;
    let patch = match patch {
        Value::Object(map) => map.clone(),
        Value::Null => return Ok(original.clone()),
        other => {
            return Err(PatchError::bad_request(format!(
                "a strategic merge patch must be a map, not a {}",
                type_name(other)
            )))
        }
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::bad_request("invalid JSON document")),
    };
    let schema = schema::definition(definition)
        .map(Schema::Struct)
        .unwrap_or(Schema::Unknown);
    merge_map(original, patch, schema).map(Value::Object)
}

/// Where in the schema a value sits.
#[derive(Debug, Clone, Copy)]
enum Schema {
    /// Nothing is known: maps merge, lists are replaced.
    Unknown,
    /// An object of a known definition.
    Struct(&'static Definition),
    /// A map whose values are of the given definition (if known).
    Map(Option<&'static Definition>),
}

/// Patch metadata of one field, with the schemas of its value and of its list items.
struct FieldMeta {
    /// The strategy besides `retainKeys`: `merge`, `replace` or nothing.
    strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
    value: Schema,
    item: Schema,
    type_name: &'static str,
}

impl FieldMeta {
    const NONE: FieldMeta = FieldMeta {
        strategy: None,
        merge_key: None,
        value: Schema::Unknown,
        item: Schema::Unknown,
        type_name: "an unknown type",
    };

    fn merges(&self) -> bool {
        self.strategy == Some("merge")
    }
}

impl Schema {
    fn field(self, key: &str) -> Result<FieldMeta, PatchError> {
        match self {
            Schema::Unknown => Ok(FieldMeta::NONE),
            Schema::Map(values) => Ok(FieldMeta {
                value: values.map(Schema::Struct).unwrap_or(Schema::Unknown),
                type_name: values.map(|d| d.name.as_str()).unwrap_or("an unknown type"),
                ..FieldMeta::NONE
            }),
            Schema::Struct(def) => {
                let Some(prop) = def.property(key) else {
                    return Ok(FieldMeta::NONE);
                };
                let target = prop.reference.as_deref().and_then(schema::definition);
                let (value, item) = match prop.reference_kind {
                    Some(ReferenceKind::Object) => (
                        target.map(Schema::Struct).unwrap_or(Schema::Unknown),
                        Schema::Unknown,
                    ),
                    Some(ReferenceKind::Values) => (Schema::Map(target), Schema::Unknown),
                    Some(ReferenceKind::Items) => (
                        Schema::Unknown,
                        target.map(Schema::Struct).unwrap_or(Schema::Unknown),
                    ),
                    None => (Schema::Unknown, Schema::Unknown),
                };
                Ok(FieldMeta {
                    strategy: non_retain_strategy(prop.patch_strategy.as_deref())?,
                    merge_key: prop.patch_merge_key.as_deref(),
                    value,
                    item,
                    type_name: target.map(|d| d.name.as_str()).unwrap_or("an unknown type"),
                })
            }
        }
    }
}

/// Picks the strategy that is not `retainKeys` out of a comma-separated list. `retainKeys`
/// itself needs no lookup: the `$retainKeys` directive in the patch carries everything.
fn non_retain_strategy(
    strategies: Option<&'static str>,
) -> Result<Option<&'static str>, PatchError> {
    let Some(strategies) = strategies else {
        return Ok(None);
    };
    let parts: Vec<&'static str> = strategies.split(',').collect();
    match parts.as_slice() {
        ["retainKeys"] => Ok(None),
        [one] => Ok(Some(one)),
        ["retainKeys", other] | [other, "retainKeys"] => Ok(Some(other)),
        _ => Err(PatchError::internal(format!(
            "unexpected patch strategy: {strategies}"
        ))),
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(unknown_directive(directive, &patch)),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    apply_element_orders(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        let (key, deletion_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => (directive_target(rest, DELETE_FROM_PRIMITIVE_LIST)?, true),
            None => (key, false),
        };

        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }

        let Some(current) = original.get_mut(&key) else {
            // A deletion list for a field the object lacks has nothing to delete.
            if !deletion_list {
                if let Some(value) = without_nulls_and_directives(patch_value) {
                    original.insert(key, value);
                }
            }
            continue;
        };

        match (current, patch_value) {
            (Value::Object(current), Value::Object(patch_map)) => {
                let meta = schema.field(&key)?;
                let merged = if meta.strategy == Some("replace") {
                    patch_map
                } else {
                    merge_map(std::mem::take(current), patch_map, meta.value)?
                };
                *current = merged;
            }
            (Value::Array(current), Value::Array(patch_list)) => {
                let meta = schema.field(&key)?;
                let merged = if meta.merges() || deletion_list {
                    merge_list(std::mem::take(current), patch_list, &meta, deletion_list)?.merged
                } else {
                    patch_list
                };
                *current = merged;
            }
            (current, patch_value) => {
                // Values of different JSON types replace each other, except that a deletion
                // list never lands on something that is not a list; a scalar over a scalar of
                // the same type is always taken, as upstream does.
                if deletion_list && json_type(current) != json_type(&patch_value) {
                    continue;
                }
                match without_nulls_and_directives(patch_value) {
                    Some(value) => *current = value,
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
        }
    }
    Ok(original)
}

/// `$retainKeys`: check that the patch only sets listed fields, then drop every field of
/// the original that is not listed.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(bad_retain_keys());
    };
    let keep = |key: &str| retain.iter().any(|k| k.as_str() == Some(key));
    let sets_unlisted_field = patch.iter().any(|(key, value)| {
        !value.is_null()
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !key.starts_with(SET_ELEMENT_ORDER)
            && !keep(key)
    });
    if sets_unlisted_field {
        return Err(bad_retain_keys());
    }
    original.retain(|key, _| keep(key));
    Ok(())
}

/// Handles every `$setElementOrder/<field>` in `patch`: merges the field's patch list (if
/// any) into the original and puts the result in the order the directive gives. Both the
/// directive and the field's patch list are consumed.
fn apply_element_orders(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
) -> Result<(), PatchError> {
    let directive_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in directive_keys {
        let Some(order) = patch.shift_remove(&directive_key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(PatchError::internal(format!(
                "{directive_key} must be a list, but received a {}",
                type_name(&order)
            )));
        };
        let field = directive_target(&directive_key[SET_ELEMENT_ORDER.len()..], SET_ELEMENT_ORDER)?;

        let original_list = match original.get(&field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(list.as_slice()),
            Some(other) => return Err(expected_list(&field, other)),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list.as_slice()),
            Some(other) => return Err(expected_list(&field, other)),
        };
        let meta = schema.field(&field)?;
        check_patch_matches_order(patch_list, &order, meta.merge_key)?;
        let kind = element_kind(&[
            original_list.unwrap_or_default(),
            patch_list.unwrap_or_default(),
        ]);

        let original_list = original_list.map(<[Value]>::to_vec);
        let patch_list = match patch.shift_remove(&field) {
            Some(Value::Array(list)) => Some(list),
            _ => None,
        };
        let (merged, server_view) = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(list), None) => {
                let view = ItemIds::Items(list.clone());
                (list, view)
            }
            (None, Some(list)) => (
                list.into_iter().filter_map(remove_directives).collect(),
                ItemIds::Items(Vec::new()),
            ),
            (Some(list), Some(patch_list)) if meta.merges() => {
                let outcome = merge_list(list, patch_list, &meta, false)?;
                (outcome.merged, outcome.server_view)
            }
            (Some(list), Some(patch_list)) => (patch_list, ItemIds::Items(list)),
        };

        let (in_order, server_only) = partition(merged, &order, meta.merge_key)?;
        let kind = kind?;
        let order_ids = ids(&order, meta.merge_key, kind)?;
        let server_ids = server_view.resolve(meta.merge_key, kind)?;
        let ordered = order_items(
            in_order,
            server_only,
            &order_ids,
            &server_ids,
            meta.merge_key,
            kind,
        )?;
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// Checks that the patch list names its items in the same relative order as the
/// `$setElementOrder` list and names nothing the order list lacks (deleted and directive
/// items aside).
fn check_patch_matches_order(
    patch_list: Option<&[Value]>,
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    let patch_list = patch_list.unwrap_or_default();
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if merge_key.is_some() {
            let map = item.as_object().ok_or_else(|| expected_map(item))?;
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(item);
    }
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if kept[p]
            .as_object()
            .is_some_and(|m| m.contains_key(DIRECTIVE))
        {
            p += 1;
            continue;
        }
        if same_key(kept[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() {
        return Err(PatchError::internal(format!(
            "the order in patch list {} doesn't match {SET_ELEMENT_ORDER} list {}",
            describe(&Value::Array(patch_list.to_vec())),
            describe(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn same_key(left: &Value, right: &Value, merge_key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    let left = left.as_object().ok_or_else(|| expected_map(left))?;
    let right = right.as_object().ok_or_else(|| expected_map(right))?;
    let l = left.get(key).ok_or_else(|| missing_merge_key(left, key))?;
    let r = right
        .get(key)
        .ok_or_else(|| missing_merge_key(right, key))?;
    Ok(l == r)
}

/// A list as `$setElementOrder` needs it for ordering server-only items: either the items
/// themselves, or just their merge key values (`None` where an item has none, which is only
/// an error once the identity is actually needed).
enum ItemIds {
    Items(Vec<Value>),
    Keys(Vec<Option<Value>>),
}

impl ItemIds {
    fn resolve(self, merge_key: Option<&str>, kind: Kind) -> Result<Vec<Value>, PatchError> {
        match self {
            ItemIds::Items(items) => ids(&items, merge_key, kind),
            ItemIds::Keys(keys) => keys
                .into_iter()
                .map(|k| {
                    k.ok_or_else(|| {
                        PatchError::internal(format!(
                            "an item of the live list does not contain declared merge key: {}",
                            merge_key.unwrap_or_default()
                        ))
                    })
                })
                .collect(),
        }
    }
}

/// The result of merging a patch list into a live list.
struct ListMerge {
    merged: Vec<Value>,
    /// The live list as upstream sees it after editing it in place; `$setElementOrder`
    /// orders the server-only items by it.
    server_view: ItemIds,
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta,
    deletion_list: bool,
) -> Result<ListMerge, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(ListMerge {
            merged: original,
            server_view: ItemIds::Items(Vec::new()),
        });
    }
    let kind = element_kind(&[&original, &patch])?;

    if kind != Kind::Object {
        if deletion_list {
            let merged = original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect();
            return Ok(ListMerge {
                merged,
                server_view: ItemIds::Items(Vec::new()),
            });
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(&patch) {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, meta.merge_key)?;
        let patch_ids = ids(&patch, meta.merge_key, kind)?;
        let server_ids = ids(&original, meta.merge_key, kind)?;
        let merged = order_items(
            in_patch,
            server_only,
            &patch_ids,
            &server_ids,
            meta.merge_key,
            kind,
        )?;
        return Ok(ListMerge {
            merged,
            server_view: ItemIds::Items(original),
        });
    }

    let key = meta.merge_key.ok_or_else(|| {
        PatchError::internal(format!(
            "cannot merge lists without merge key for {}",
            meta.type_name
        ))
    })?;

    // Upstream edits the live list in place: a deletion shifts the later items down and
    // leaves the last slot as it was, and additions fill freed slots. `view` tracks the
    // identities in those slots; `live` is how many of them are in use.
    let mut view: Vec<Option<Value>> = original.iter().map(|o| o.get(key).cloned()).collect();
    let mut live = view.len();
    let mut survivors = original;
    let mut regular = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            regular.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let map = item.as_object().ok_or_else(|| expected_map(&item))?;
                let doomed = map.get(key).ok_or_else(|| missing_merge_key(map, key))?;
                while let Some(at) = view[..live].iter().position(|v| v.as_ref() == Some(doomed)) {
                    for slot in at..live - 1 {
                        view[slot] = view[slot + 1].clone();
                    }
                    live -= 1;
                }
                survivors.retain(|o| o.get(key) != Some(doomed));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::internal(
                    "merging lists cannot yet be specified in the patch",
                ))
            }
            _ => {
                let map = item.as_object().cloned().unwrap_or_default();
                return Err(unknown_directive(directive, &map));
            }
        }
    }

    if replace {
        // `$patch: replace` makes the remaining patch items the whole list.
        let server_ids = ids(&regular, Some(key), kind);
        let (in_patch, server_only) = partition(regular, &[], Some(key))?;
        let merged = order_items(in_patch, server_only, &[], &server_ids?, Some(key), kind)?;
        return Ok(ListMerge {
            merged,
            server_view: ItemIds::Keys(view),
        });
    }

    let survivor_ids: Vec<Option<Value>> = survivors.iter().map(|o| o.get(key).cloned()).collect();
    let mut merged = survivors;
    for item in &regular {
        let map = item.as_object().ok_or_else(|| expected_map(item))?;
        let id = map.get(key).ok_or_else(|| missing_merge_key(map, key))?;
        match merged.iter().position(|o| o.get(key) == Some(id)) {
            Some(at) => {
                let current = match std::mem::take(&mut merged[at]) {
                    Value::Object(current) => current,
                    _ => Map::new(),
                };
                merged[at] = Value::Object(merge_map(current, map.clone(), meta.item)?);
            }
            None => {
                if live < view.len() {
                    view[live] = Some(id.clone());
                }
                live += 1;
                merged.push(item.clone());
            }
        }
    }

    let (in_patch, server_only) = partition(merged, &regular, Some(key))?;
    let patch_ids = ids(&regular, Some(key), kind)?;
    let server_ids = ItemIds::Keys(survivor_ids).resolve(Some(key), kind)?;
    let merged = order_items(
        in_patch,
        server_only,
        &patch_ids,
        &server_ids,
        Some(key),
        kind,
    )?;
    Ok(ListMerge {
        merged,
        server_view: ItemIds::Keys(view),
    })
}

/// The JSON types upstream tells apart when merging lists; integers and floats differ, as
/// they do once Go has decoded them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Integer,
    Float,
    String,
    List,
    Object,
}

fn json_type(value: &Value) -> Kind {
    match value {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_f64() => Kind::Float,
        Value::Number(_) => Kind::Integer,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::List,
        Value::Object(_) => Kind::Object,
    }
}

/// The one element type shared by all items of `lists`.
fn element_kind(lists: &[&[Value]]) -> Result<Kind, PatchError> {
    let mut found = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        let kind = json_type(item);
        match (found, kind) {
            (None, Kind::List) => {
                return Err(PatchError::unprocessable(
                    "lists of lists are not supported",
                ))
            }
            (None, Kind::Null) => {
                return Err(PatchError::internal("list items must not be null"));
            }
            (None, kind) => found = Some(kind),
            (Some(seen), kind) if seen != kind => {
                return Err(PatchError::internal(format!(
                    "list element types are not identical: {}",
                    describe(&Value::Array(
                        lists.iter().map(|l| Value::Array(l.to_vec())).collect()
                    ))
                )))
            }
            _ => {}
        }
    }
    found.ok_or_else(|| PatchError::internal("no elements in any of the given lists"))
}

/// Identities of `items` for ordering: merge key values for maps, the items for scalars.
fn ids(items: &[Value], merge_key: Option<&str>, kind: Kind) -> Result<Vec<Value>, PatchError> {
    if kind != Kind::Object {
        return Ok(items.to_vec());
    }
    items
        .iter()
        .map(|item| identity(item, merge_key, kind).cloned())
        .collect()
}

fn identity<'a>(
    item: &'a Value,
    merge_key: Option<&str>,
    kind: Kind,
) -> Result<&'a Value, PatchError> {
    if kind != Kind::Object {
        return Ok(item);
    }
    let map = item.as_object().ok_or_else(|| expected_map(item))?;
    let key = merge_key.unwrap_or_default();
    map.get(key).ok_or_else(|| missing_merge_key(map, key))
}

/// Splits `items` into those named by `by` (matched on the merge key, or by value for
/// scalars) and the rest, keeping their order.
fn partition(
    items: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut named = Vec::new();
    let mut rest = Vec::new();
    for item in items {
        let found = match merge_key {
            None => by.contains(&item),
            Some(key) => {
                let map = item.as_object().ok_or_else(|| expected_map(&item))?;
                let id = map.get(key).ok_or_else(|| missing_merge_key(map, key))?;
                let mut found = false;
                for (index, candidate) in by.iter().enumerate() {
                    let candidate = candidate.as_object().ok_or_else(|| {
                        PatchError::internal(format!("value for key {index} is not a map"))
                    })?;
                    if candidate.get(key) == Some(id) {
                        found = true;
                        break;
                    }
                }
                found
            }
        };
        if found {
            named.push(item);
        } else {
            rest.push(item);
        }
    }
    Ok((named, rest))
}

/// Puts the patch's items in patch order and the server-only items in server order, then
/// interleaves the two runs (see the module documentation).
fn order_items(
    in_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let in_patch = sort_by_order(in_patch, patch_order, merge_key, kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, kind)?;

    let position = |item: &Value| -> Option<usize> {
        let id = identity(item, merge_key, kind).ok();
        server_order.iter().position(|o| Some(o) == id)
    };
    let mut out = Vec::with_capacity(in_patch.len() + server_only.len());
    let mut server_only = server_only.into_iter().peekable();
    let mut in_patch = in_patch.into_iter().peekable();
    loop {
        let take_server = match (server_only.peek(), in_patch.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(server), Some(patched)) => match (position(server), position(patched)) {
                (Some(s), Some(p)) => s < p,
                _ => false,
            },
        };
        let next = if take_server {
            server_only.next()
        } else {
            in_patch.next()
        };
        out.extend(next);
    }
    Ok(out)
}

/// Stable sort of `items` by where their identity first appears in `order`. Items marked
/// `$patch: delete` go last. Upstream's comparator is not a strict order for items missing
/// from `order`; those only occur for malformed patches, and are placed after the rest.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let mut keyed = Vec::with_capacity(items.len());
    let mut deletions = Vec::new();
    for item in items {
        let id = identity(&item, merge_key, kind)?;
        if kind == Kind::Object && item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
            deletions.push(item);
            continue;
        }
        let position = order.iter().position(|o| o == id).unwrap_or(usize::MAX);
        keyed.push((position, item));
    }
    keyed.sort_by_key(|(position, _)| *position);
    Ok(keyed
        .into_iter()
        .map(|(_, item)| item)
        .chain(deletions)
        .collect())
}

/// A value being added where nothing was, minus every map that carries `$patch` (such a
/// map asks to change something that is not there). `None` when the value itself is one.
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                map.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// Drops `null` map members at any depth: with nothing to delete, they would otherwise be
/// stored as explicit nulls.
fn discard_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, discard_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(discard_nulls).collect()),
        other => other,
    }
}

/// What a patch value becomes when there is nothing to merge it with.
fn without_nulls_and_directives(value: Value) -> Option<Value> {
    remove_directives(discard_nulls(value))
}

/// The field named after a directive prefix: `<prefix>/<field>`.
fn directive_target(after_prefix: &str, prefix: &str) -> Result<String, PatchError> {
    match after_prefix.strip_prefix('/') {
        Some(field) => Ok(field.to_string()),
        None if prefix == SET_ELEMENT_ORDER => Err(PatchError::bad_request(
            "invalid patch format of setElementOrder list",
        )),
        None => Err(PatchError::bad_request(
            "invalid patch format of primitive list",
        )),
    }
}

fn unknown_directive(directive: &Value, map: &Map<String, Value>) -> PatchError {
    let directive = directive
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| directive.to_string());
    PatchError::internal(format!(
        "unknown patch type: {directive} in map: {}",
        describe(&Value::Object(map.clone()))
    ))
}

fn missing_merge_key(map: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::internal(format!(
        "map: {} does not contain declared merge key: {key}",
        describe(&Value::Object(map.clone()))
    ))
}

fn expected_map(value: &Value) -> PatchError {
    PatchError::internal(format!(
        "expected a map, but received a {}",
        type_name(value)
    ))
}

fn expected_list(field: &str, value: &Value) -> PatchError {
    PatchError::internal(format!(
        "expected {field} to be a list, but received a {}",
        type_name(value)
    ))
}

fn bad_retain_keys() -> PatchError {
    PatchError::bad_request("invalid patch format of retainKeys")
}

#[cfg(test)]
mod tests;
