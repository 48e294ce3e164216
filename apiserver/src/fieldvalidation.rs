//! Server-side field validation (`fieldValidation=Strict|Warn|Ignore`), as upstream's
//! decoder does it: an object is decoded into its typed form; fields the type does not know
//! are dropped, and reported as an error (Strict) or a warning (Warn, the default). Values of
//! the wrong type cannot be decoded at all and are a 400 whatever the mode.
//!
//! The typed form is k8s-openapi's v1.33 types: decoding there and encoding back tells which
//! keys the type knows, so the check follows the types exactly, new fields included.

use serde_json::Value;

use crate::status::{ApiError, ApiResult};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl Mode {
    pub fn parse(v: Option<&str>) -> ApiResult<Mode> {
        match v.unwrap_or("") {
            "" | "Warn" => Ok(Mode::Warn),
            "Ignore" => Ok(Mode::Ignore),
            "Strict" => Ok(Mode::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: &Value,
) -> Result<Value, String> {
    // Deserializing from a borrowed Value avoids copying the whole object first.
    let typed = T::deserialize(v).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

macro_rules! round_trip_match {
    ($( ($g:expr, $v:expr, $k:expr) => $t:ty ),* $(,)?) => {
        /// The object decoded into its type and encoded back, or None for an unknown kind.
        fn typed_round_trip(group: &str, version: &str, kind: &str, obj: &Value) -> Option<Result<Value, String>> {
            match (group, version, kind) {
                $( ($g, $v, $k) => Some(round_trip::<$t>(obj)), )*
                _ => None,
            }
        }
    };
}
crate::builtin_types!(round_trip_match);

/// Paths of fields in `original` that did not survive decoding (null values are no fields).
fn unknown_paths(original: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (original, decoded) {
        (Value::Object(o), Value::Object(d)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match d.get(k) {
                    Some(dv) => unknown_paths(v, dv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(d)) => {
            for (i, (ov, dv)) in o.iter().zip(d.iter()).enumerate() {
                unknown_paths(ov, dv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Removes the unknown paths from the object, as decoding into the type would.
fn prune(obj: &mut Value, decoded: &Value) {
    match (obj, decoded) {
        (Value::Object(o), Value::Object(d)) => {
            let drop: Vec<String> = o
                .iter()
                .filter(|(k, v)| !v.is_null() && !d.contains_key(*k))
                .map(|(k, _)| k.clone())
                .collect();
            for k in drop {
                o.remove(&k);
            }
            for (k, v) in o.iter_mut() {
                if let Some(dv) = d.get(k) {
                    prune(v, dv);
                }
            }
        }
        (Value::Array(o), Value::Array(d)) => {
            for (ov, dv) in o.iter_mut().zip(d.iter()) {
                prune(ov, dv);
            }
        }
        _ => {}
    }
}

/// Checks (and prunes) an object of a built-in kind. Returns the warnings to send back.
pub fn check(
    obj: &mut Value,
    group: &str,
    version: &str,
    kind: &str,
    mode: Mode,
) -> ApiResult<Vec<String>> {
    let Some(result) = typed_round_trip(group, version, kind, obj) else {
        return Ok(Vec::new());
    };
    let decoded = result.map_err(|e| {
        let qualified = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        ApiError::bad_request(format!(
            "{kind} in version \"{qualified}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_paths(obj, &decoded, "", &mut unknown);
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    prune(obj, &decoded);
    let messages: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    match mode {
        Mode::Ignore => Ok(Vec::new()),
        Mode::Warn => Ok(messages),
        Mode::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        ))),
    }
}

/// Keys that appear twice in one JSON object of the raw body, as upstream's strict decoder
/// reports them (`duplicate field "x"`).
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

    struct Walker<'a> {
        path: String,
        out: &'a std::cell::RefCell<Vec<String>>,
    }

    impl<'de> serde::de::DeserializeSeed<'de> for Walker<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walker<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let p = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    self.out
                        .borrow_mut()
                        .push(format!("duplicate field \"{p}\""));
                }
                map.next_value_seed(Walker {
                    path: p,
                    out: self.out,
                })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walker {
                    path: format!("{}[{i}]", self.path),
                    out: self.out,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let out = std::cell::RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = serde::de::DeserializeSeed::deserialize(
        Walker {
            path: String::new(),
            out: &out,
        },
        &mut de,
    );
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_and_pruned() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolice": "x"}], "nodeName": null}});
        let warnings = check(&mut pod, "", "v1", "Pod", Mode::Warn).unwrap();
        assert_eq!(
            warnings,
            vec![
                "unknown field \"metadata.bogus\"".to_string(),
                "unknown field \"spec.containers[0].imagePullPolice\"".to_string(),
            ]
        );
        assert!(pod["metadata"].get("bogus").is_none());
        assert!(pod["spec"]["containers"][0]
            .get("imagePullPolice")
            .is_none());
    }

    #[test]
    fn strict_rejects_and_wrong_types_are_bad_requests() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1, "x": 1}});
        let e = check(&mut d, "apps", "v1", "Deployment", Mode::Strict).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("strict decoding error: unknown field \"spec.x\""),
            "{}",
            e.message
        );
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": "two"}});
        assert_eq!(
            check(&mut d, "apps", "v1", "Deployment", Mode::Ignore)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn duplicates_in_the_raw_body() {
        let d = duplicate_fields(br#"{"a": 1, "b": {"c": 1, "c": 2}, "a": 3}"#);
        assert_eq!(
            d,
            vec![
                "duplicate field \"b.c\"".to_string(),
                "duplicate field \"a\"".to_string()
            ]
        );
    }
}
