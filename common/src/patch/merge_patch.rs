//! JSON merge patch (RFC 7386) as the upstream apiserver applies it.
//!
//! Upstream goes slightly beyond the RFC when a patch value lands where there was nothing to
//! merge into (a new key, a `null`, or a non-object): it also drops `null` members from
//! objects nested inside that value, including objects inside arrays, while `null` array
//! elements stay. A value that replaces an existing object wholesale is taken verbatim.

use serde_json::{Map, Value};

use super::{check_depth, PatchError};

/// Applies a JSON merge patch to `target` in place.
///
/// The only failure is a patch nested deeper than [`super::MAX_PATCH_DEPTH`]; `target` is
/// then left unchanged.
pub fn merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    check_depth(patch)?;
    match (target.as_object_mut(), patch) {
        (Some(doc), Value::Object(patch)) => merge_members(doc, patch),
        // A top-level non-object patch (or a non-object document) becomes the result.
        (_, patch) => *target = pruned(patch),
    }
    Ok(())
}

fn merge_members(doc: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            doc.shift_remove(key);
            continue;
        }
        match doc.get_mut(key) {
            Some(current) if !current.is_null() => merge_value(current, value),
            _ => {
                doc.insert(key.clone(), pruned(value));
            }
        }
    }
}

fn merge_value(current: &mut Value, patch: &Value) {
    match (current, patch) {
        (Value::Object(doc), Value::Object(patch)) => merge_members(doc, patch),
        (current @ Value::Object(_), patch) => *current = patch.clone(),
        (current, patch) => *current = pruned(patch),
    }
}

/// A copy of `value` without `null` object members at any depth.
fn pruned(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), pruned(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(target: Value, patch: Value) -> Value {
        let mut target = target;
        merge_patch(&mut target, &patch).unwrap();
        target
    }

    #[test]
    fn rfc7386_examples() {
        // The table from RFC 7386 appendix A, except where upstream differs (noted).
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                apply(target.clone(), patch.clone()),
                expected,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn upstream_null_pruning() {
        let cases = [
            // New values lose null members, also inside arrays; null elements survive.
            (
                json!({}),
                json!({"spec": {"containers": [{"name": "a", "image": null}, null]}}),
                json!({"spec": {"containers": [{"name": "a"}, null]}}),
            ),
            // Replacing an array: the new array is pruned too.
            (
                json!({"list": [1]}),
                json!({"list": [{"x": null, "y": 1}]}),
                json!({"list": [{"y": 1}]}),
            ),
            // A key holding null counts as absent.
            (
                json!({"a": null}),
                json!({"a": {"b": null, "c": 1}}),
                json!({"a": {"c": 1}}),
            ),
            // An existing object replaced by an array takes the array verbatim.
            (
                json!({"a": {"b": 1}}),
                json!({"a": [{"x": null}]}),
                json!({"a": [{"x": null}]}),
            ),
            // Top-level arrays replace the document, pruned.
            (
                json!({"a": 1}),
                json!([{"x": null}, null]),
                json!([{}, null]),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                apply(target.clone(), patch.clone()),
                expected,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn keeps_key_order() {
        let out = apply(
            json!({"a": 1, "b": 2, "c": 3}),
            json!({"a": null, "d": 4, "b": 5}),
        );
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "c", "d"]);
    }

    #[test]
    fn too_deep_patch_is_rejected_untouched() {
        let mut patch = json!(1);
        for _ in 0..(super::super::MAX_PATCH_DEPTH + 5) {
            patch = json!({ "a": patch });
        }
        let mut target = json!({"keep": true});
        let err = merge_patch(&mut target, &patch).unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert_eq!(target, json!({"keep": true}));
    }
}
