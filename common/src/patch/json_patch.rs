//! JSON patch (RFC 6902) with JSON pointers (RFC 6901), as the upstream apiserver applies it.
//!
//! Upstream's library is more lenient than the RFC in a few places, and clients depend on
//! that, so these are kept:
//! * array indices may be negative, counting from the end (`-1` is the last element, and for
//!   `add` it means "append");
//! * `replace` of a missing object member adds it (the parent must exist);
//! * `test` against a missing member succeeds when the expected value is `null` or absent;
//! * `copy` from a missing object member copies `null`;
//! * an operation without `value` uses `null`;
//! * the root (`""`) can be replaced and tested but not added to or removed.

use serde_json::{Map, Value};

use super::{check_depth, describe, PatchError};

/// The most operations upstream accepts in one JSON patch; it answers larger patches with 413
/// Request Entity Too Large. Enforcing this is left to the request handler.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies an RFC 6902 patch (a JSON array of operations) to `target`.
///
/// Operations apply in order; if any fails, `target` is left exactly as it was.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::bad_request(format!(
            "a JSON patch must be a list of operations, not a {}",
            super::type_name(patch)
        )));
    };
    for op in ops {
        if !matches!(op, Value::Object(_) | Value::Null) {
            return Err(PatchError::bad_request(format!(
                "each JSON patch operation must be a map, not a {}",
                super::type_name(op)
            )));
        }
    }
    check_depth(patch)?;

    let mut doc = target.clone();
    let empty = Map::new();
    for op in ops {
        let op = op.as_object().unwrap_or(&empty);
        apply_operation(&mut doc, op).map_err(PatchError::unprocessable)?;
    }
    *target = doc;
    Ok(())
}

fn apply_operation(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let kind = op.get("op").and_then(Value::as_str).unwrap_or("unknown");
    match kind {
        "add" => add(doc, op),
        "remove" => remove(doc, op),
        "replace" => replace(doc, op),
        "move" => move_value(doc, op),
        "copy" => copy(doc, op),
        "test" => test(doc, op),
        other => Err(format!("unexpected operation kind: {other}")),
    }
}

fn path_field<'a>(op: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    match op.get(field) {
        None | Some(Value::Null) => Err(format!("operation is missing the {field} field")),
        Some(Value::String(path)) => Ok(path),
        Some(other) => Err(format!(
            "the {field} field must be a string, not {}",
            describe(other)
        )),
    }
}

fn value_field(op: &Map<String, Value>) -> Value {
    op.get("value").cloned().unwrap_or(Value::Null)
}

fn add(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let path = path_field(op, "path")?;
    insert_at(doc, path, value_field(op), "add")
}

fn remove(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let path = path_field(op, "path")?;
    take_at(doc, path, "remove").map(drop)
}

fn replace(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let path = path_field(op, "path")?;
    let value = value_field(op);
    if path.is_empty() {
        if !value.is_object() && !value.is_array() {
            return Err("replace operation on the whole document needs a map or list value".into());
        }
        *doc = value;
        return Ok(());
    }
    let (parent, key) = resolve_parent(doc, path)
        .ok_or_else(|| format!("replace operation does not apply: doc is missing path: {path}"))?;
    match parent {
        Value::Object(map) => {
            map.insert(key, value);
        }
        Value::Array(items) => {
            let index = existing_index(&key, items.len())?;
            items[index] = value;
        }
        _ => return unreachable_container(),
    }
    Ok(())
}

fn move_value(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let from = path_field(op, "from")?;
    let value = take_at(doc, from, "move")?;
    let path = path_field(op, "path")?;
    insert_at(doc, path, value, "move")
}

fn copy(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let from = path_field(op, "from")?;
    let value = get_at(doc, from, "copy")?.cloned().unwrap_or(Value::Null);
    let path = path_field(op, "path")?;
    insert_at(doc, path, value, "copy")
}

fn test(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let path = path_field(op, "path")?;
    let expected = op.get("value");
    let actual = if path.is_empty() {
        Some(&*doc)
    } else {
        get_at(doc, path, "test")?
    };
    let matches = match (actual.filter(|v| !v.is_null()), expected) {
        (None, None | Some(Value::Null)) => true,
        (Some(actual), Some(expected)) => actual == expected,
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(format!("testing value {path} failed: test failed"))
    }
}

/// Adds `value` at `path`: sets an object member or inserts into an array.
fn insert_at(doc: &mut Value, path: &str, value: Value, verb: &str) -> Result<(), String> {
    let (parent, key) = resolve_parent(doc, path).ok_or_else(|| {
        format!("{verb} operation does not apply: doc is missing path: \"{path}\"")
    })?;
    match parent {
        Value::Object(map) => {
            map.insert(key, value);
        }
        Value::Array(items) => {
            if key == "-" {
                items.push(value);
            } else {
                let index = parse_index(&key)?;
                let len = items.len() as i64;
                let resolved = if index < 0 { index + len + 1 } else { index };
                if index > len || resolved < 0 {
                    return Err(invalid_index(index));
                }
                items.insert(resolved as usize, value);
            }
        }
        _ => return unreachable_container(),
    }
    Ok(())
}

/// Removes and returns the value at `path`.
fn take_at(doc: &mut Value, path: &str, verb: &str) -> Result<Value, String> {
    let (parent, key) = resolve_parent(doc, path).ok_or_else(|| {
        format!("{verb} operation does not apply: doc is missing path: \"{path}\"")
    })?;
    match parent {
        Value::Object(map) => map
            .shift_remove(&key)
            .ok_or_else(|| format!("unable to remove nonexistent key: {key}")),
        Value::Array(items) => {
            let index = existing_index(&key, items.len())?;
            Ok(items.remove(index))
        }
        _ => unreachable_container(),
    }
}

/// The value at `path`; `None` for a missing object member, an error for a bad array index.
fn get_at<'a>(doc: &'a mut Value, path: &str, verb: &str) -> Result<Option<&'a Value>, String> {
    let (parent, key) = resolve_parent(doc, path)
        .ok_or_else(|| format!("{verb} operation does not apply: doc is missing path: {path}"))?;
    match parent {
        Value::Object(map) => Ok(map.get(&key)),
        Value::Array(items) => {
            let index = existing_index(&key, items.len())?;
            Ok(items.get(index))
        }
        _ => unreachable_container(),
    }
}

/// Finds the object or array holding the last token of `path`, plus that token decoded.
///
/// Like upstream, the text before the first `/` is ignored and every intermediate value must
/// be a non-null object or array.
fn resolve_parent<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let mut tokens = path.split('/');
    tokens.next();
    let mut tokens: Vec<&str> = tokens.collect();
    let last = decode_token(tokens.pop()?);
    let mut current = doc;
    for token in tokens {
        let token = decode_token(token);
        current = match current {
            Value::Object(map) => map.get_mut(&token)?,
            Value::Array(items) => {
                let index = existing_index(&token, items.len()).ok()?;
                items.get_mut(index)?
            }
            _ => return None,
        };
    }
    if current.is_object() || current.is_array() {
        Some((current, last))
    } else {
        None
    }
}

/// RFC 6901 unescaping: `~1` is `/`, `~0` is `~`, in one left-to-right pass.
fn decode_token(token: &str) -> String {
    if !token.contains('~') {
        return token.to_string();
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('~', Some('1')) => {
                out.push('/');
                chars.next();
            }
            ('~', Some('0')) => {
                out.push('~');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// An index into an existing element: negative counts from the end.
fn existing_index(token: &str, len: usize) -> Result<usize, String> {
    let index = parse_index(token)?;
    let len = len as i64;
    let resolved = if index < 0 { index + len } else { index };
    if resolved < 0 || resolved >= len {
        return Err(invalid_index(index));
    }
    Ok(resolved as usize)
}

/// Parses an array index the way upstream's library does: an optionally signed decimal.
fn parse_index(token: &str) -> Result<i64, String> {
    let digits = token.strip_prefix(['+', '-']).unwrap_or(token);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("value was not a proper array index: '{token}'"));
    }
    token
        .parse::<i64>()
        .map_err(|_| format!("value was not a proper array index: '{token}'"))
}

fn invalid_index(index: i64) -> String {
    format!("unable to access invalid index: {index}: invalid index referenced")
}

// resolve_parent only ever hands back objects and arrays.
fn unreachable_container<T>() -> Result<T, String> {
    Err("internal error: patch target is neither a map nor a list".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::PatchErrorKind;
    use serde_json::json;

    fn apply(doc: Value, patch: Value) -> Result<Value, PatchError> {
        let mut doc = doc;
        json_patch(&mut doc, &patch)?;
        Ok(doc)
    }

    #[test]
    fn operations() {
        let doc = json!({
            "metadata": {"name": "a", "labels": {"app": "x"}},
            "spec": {"list": [1, 2, 3], "a/b": {"m~n": 1}}
        });
        let cases = [
            (
                json!([{"op": "add", "path": "/metadata/labels/tier", "value": "web"}]),
                json!({"metadata": {"name": "a", "labels": {"app": "x", "tier": "web"}},
                       "spec": {"list": [1, 2, 3], "a/b": {"m~n": 1}}}),
            ),
            (
                json!([{"op": "add", "path": "/spec/list/1", "value": 9}]),
                json!({"metadata": {"name": "a", "labels": {"app": "x"}},
                       "spec": {"list": [1, 9, 2, 3], "a/b": {"m~n": 1}}}),
            ),
            (
                json!([{"op": "add", "path": "/spec/list/-", "value": 4},
                       {"op": "add", "path": "/spec/list/-1", "value": 5}]),
                json!({"metadata": {"name": "a", "labels": {"app": "x"}},
                       "spec": {"list": [1, 2, 3, 4, 5], "a/b": {"m~n": 1}}}),
            ),
            (
                json!([{"op": "remove", "path": "/spec/list/0"},
                       {"op": "remove", "path": "/spec/list/-1"}]),
                json!({"metadata": {"name": "a", "labels": {"app": "x"}},
                       "spec": {"list": [2], "a/b": {"m~n": 1}}}),
            ),
            (
                json!([{"op": "replace", "path": "/spec/a~1b/m~0n", "value": 2}]),
                json!({"metadata": {"name": "a", "labels": {"app": "x"}},
                       "spec": {"list": [1, 2, 3], "a/b": {"m~n": 2}}}),
            ),
            (
                json!([{"op": "move", "from": "/metadata/labels", "path": "/spec/labels"}]),
                json!({"metadata": {"name": "a"},
                       "spec": {"list": [1, 2, 3], "a/b": {"m~n": 1}, "labels": {"app": "x"}}}),
            ),
            (
                json!([{"op": "copy", "from": "/spec/list/2", "path": "/spec/list/0"}]),
                json!({"metadata": {"name": "a", "labels": {"app": "x"}},
                       "spec": {"list": [3, 1, 2, 3], "a/b": {"m~n": 1}}}),
            ),
            (
                json!([{"op": "test", "path": "/metadata/name", "value": "a"},
                       {"op": "test", "path": "/metadata/missing", "value": null},
                       {"op": "test", "path": "/spec/list", "value": [1, 2, 3]},
                       {"op": "replace", "path": "/metadata/name", "value": "b"}]),
                json!({"metadata": {"name": "b", "labels": {"app": "x"}},
                       "spec": {"list": [1, 2, 3], "a/b": {"m~n": 1}}}),
            ),
            (
                json!([{"op": "replace", "path": "/metadata/generation", "value": 3}]),
                json!({"metadata": {"name": "a", "labels": {"app": "x"}, "generation": 3},
                       "spec": {"list": [1, 2, 3], "a/b": {"m~n": 1}}}),
            ),
            (
                json!([{"op": "replace", "path": "", "value": {"x": 1}}]),
                json!({"x": 1}),
            ),
            (json!([]), doc.clone()),
        ];
        for (patch, expected) in cases {
            assert_eq!(
                apply(doc.clone(), patch.clone()).unwrap(),
                expected,
                "{patch}"
            );
        }
    }

    #[test]
    fn failures_leave_target_untouched() {
        let doc = json!({"metadata": {"name": "a"}, "list": [1, 2]});
        let cases = [
            (
                json!([{"op": "add", "path": "/metadata/labels/x", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/metadata/labels/x\"",
            ),
            (
                json!([{"op": "remove", "path": "/metadata/labels"}]),
                "unable to remove nonexistent key: labels",
            ),
            (
                json!([{"op": "replace", "path": "/list/2", "value": 1}]),
                "unable to access invalid index: 2: invalid index referenced",
            ),
            (
                json!([{"op": "add", "path": "/list/3", "value": 1}]),
                "unable to access invalid index: 3: invalid index referenced",
            ),
            (
                json!([{"op": "add", "path": "/list/x", "value": 1}]),
                "value was not a proper array index: 'x'",
            ),
            (
                json!([{"op": "remove", "path": "/list/-3"}]),
                "unable to access invalid index: -3: invalid index referenced",
            ),
            (
                json!([{"op": "replace", "path": "/metadata/name", "value": "b"},
                       {"op": "test", "path": "/metadata/name", "value": "a"}]),
                "testing value /metadata/name failed: test failed",
            ),
            (
                json!([{"op": "test", "path": "/metadata/name"}]),
                "testing value /metadata/name failed: test failed",
            ),
            (
                json!([{"op": "move", "from": "/metadata", "path": "/metadata/inner"}]),
                "move operation does not apply: doc is missing path: \"/metadata/inner\"",
            ),
            (
                json!([{"op": "frobnicate", "path": "/a"}]),
                "unexpected operation kind: frobnicate",
            ),
            (
                json!([{"path": "/a"}]),
                "unexpected operation kind: unknown",
            ),
            (
                json!([{"op": "add", "value": 1}]),
                "operation is missing the path field",
            ),
            (
                json!([{"op": "copy", "path": "/a"}]),
                "operation is missing the from field",
            ),
            (
                json!([{"op": "add", "path": "", "value": 1}]),
                "add operation does not apply: doc is missing path: \"\"",
            ),
            (
                json!([{"op": "replace", "path": "", "value": 1}]),
                "replace operation on the whole document needs a map or list value",
            ),
            (
                json!([{"op": "add", "path": "/metadata/name/x", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/metadata/name/x\"",
            ),
        ];
        for (patch, message) in cases {
            let mut target = doc.clone();
            let err = json_patch(&mut target, &patch).unwrap_err();
            assert_eq!(err.message(), message, "{patch}");
            assert_eq!(err.kind(), PatchErrorKind::Unprocessable);
            assert_eq!(err.status_code(), 422);
            assert_eq!(target, doc, "{patch} modified the target");
        }
    }

    #[test]
    fn malformed_patches_are_bad_requests() {
        for patch in [json!({"op": "add"}), json!([1]), json!("x"), json!([[]])] {
            let mut target = json!({});
            let err = json_patch(&mut target, &patch).unwrap_err();
            assert_eq!(err.kind(), PatchErrorKind::BadRequest, "{patch}");
        }
    }

    #[test]
    fn upstream_leniencies() {
        // copy from a missing member copies null; add without value adds null.
        let out = apply(
            json!({"a": {}}),
            json!([{"op": "copy", "from": "/a/missing", "path": "/b"},
                   {"op": "add", "path": "/c"}]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {}, "b": null, "c": null}));
        // test treats an explicit null like a missing member.
        assert!(apply(
            json!({"a": null}),
            json!([{"op": "test", "path": "/a", "value": null}])
        )
        .is_ok());
        // the text before the first slash is ignored, as upstream does.
        assert_eq!(
            apply(
                json!({"a": 1}),
                json!([{"op": "replace", "path": "x/a", "value": 2}])
            )
            .unwrap(),
            json!({"a": 2})
        );
        // numbers compare by their JSON form: 1 and 1.0 differ.
        assert!(apply(
            json!({"a": 1}),
            json!([{"op": "test", "path": "/a", "value": 1.0}])
        )
        .is_err());
        // whole-document test.
        assert!(apply(
            json!({"a": 1}),
            json!([{"op": "test", "path": "", "value": {"a": 1}}])
        )
        .is_ok());
    }

    #[test]
    fn pointer_escapes() {
        assert_eq!(decode_token("a~1b~0c"), "a/b~c");
        assert_eq!(decode_token("~01"), "~1");
        assert_eq!(decode_token("~2"), "~2");
        let out = apply(
            json!({"metadata": {"annotations": {}}}),
            json!([{"op": "add", "path": "/metadata/annotations/example.com~1x", "value": "y"}]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"example.com/x": "y"}}})
        );
    }
}
