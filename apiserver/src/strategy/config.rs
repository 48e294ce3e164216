//! ConfigMaps and Secrets: valid keys, the 1MiB size limit, the `immutable` flag, and the
//! per-type rules of Secrets (with `stringData` folded into `data`, as the v1 conversion does).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::util::{self, At, Errs};
use super::Strategy;
use crate::status::FieldError;

const MAX_SIZE: usize = 1024 * 1024;
const REDACTED: &str = "<secret contents redacted>";
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The bytes of a base64 data value, or the decoding error as Go words it.
fn decode(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) => b64().decode(s).map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => {
                format!("illegal base64 data at input byte {at}")
            }
            base64::DecodeError::InvalidLength(at) => {
                format!("illegal base64 data at input byte {at}")
            }
            base64::DecodeError::InvalidPadding => {
                format!("illegal base64 data at input byte {}", s.len())
            }
        }),
        Value::Null => Ok(Vec::new()),
        _ => Err("must be a base64-encoded string".into()),
    }
}

fn key_errors(errs: &mut Errs, at: &At, key: &str) {
    for m in util::config_key_errors(key) {
        errs.push(FieldError::invalid(at.key_path(key), key, m));
    }
}

/// What Go's `json.Unmarshal` into a map says about a document that is not a JSON object.
fn json_object_error(bytes: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(_)) => None,
        Ok(other) => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => return None,
            };
            Some(format!(
                "json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
            ))
        }
        Err(e) if e.is_eof() => Some("unexpected end of JSON input".into()),
        Err(_) => {
            let first = bytes
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .copied()
                .unwrap_or(b' ');
            Some(format!(
                "invalid character {:?} looking for beginning of value",
                first as char
            ))
        }
    }
}

pub(super) struct Secret;

impl Strategy for Secret {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if map
            .get("type")
            .is_none_or(|t| t.as_str().is_some_and(str::is_empty) || t.is_null())
        {
            map.insert("type".into(), json!("Opaque"));
        }
        // The v1 conversion writes stringData into data, overriding keys of the same name.
        if let Some(Value::Object(sd)) = map.remove("stringData") {
            let data = util::ensure_obj(map, "data");
            if let Some(data) = data {
                for (k, v) in sd {
                    if let Some(s) = v.as_str() {
                        data.insert(k, Value::String(b64().encode(s)));
                    }
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        let data_at = root.child("data");
        let mut data: Map<String, Value> = Map::new();
        let mut total = 0;
        for (k, v) in data_at.entries(&mut errs) {
            key_errors(&mut errs, &data_at, k);
            match decode(v.v.unwrap_or(&Value::Null)) {
                Ok(bytes) => {
                    total += bytes.len();
                    data.insert(
                        k.to_string(),
                        Value::String(String::from_utf8_lossy(&bytes).into_owned()),
                    );
                }
                Err(e) => errs.push(FieldError::invalid(v.path.clone(), REDACTED, e)),
            }
        }
        if total > MAX_SIZE {
            errs.push(FieldError::too_long(data_at.path.clone(), MAX_SIZE));
        }
        let raw = |k: &str| -> Option<Vec<u8>> { data_at.child(k).v.and_then(|v| decode(v).ok()) };
        let ty = root.child("type").string(&mut errs);
        match ty {
            "kubernetes.io/service-account-token" => {
                let name = crate::meta::annotations(obj)
                    .get("kubernetes.io/service-account.name")
                    .cloned()
                    .unwrap_or_default();
                if name.is_empty() {
                    errs.push(FieldError::required(
                        "metadata.annotations[kubernetes.io/service-account.name]",
                        "",
                    ));
                }
            }
            "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
                let key = if ty == "kubernetes.io/dockercfg" {
                    ".dockercfg"
                } else {
                    ".dockerconfigjson"
                };
                match raw(key) {
                    None if !data.contains_key(key) => {
                        errs.push(FieldError::required(data_at.key_path(key), ""))
                    }
                    None => {}
                    Some(bytes) => {
                        if let Some(e) = json_object_error(&bytes) {
                            errs.push(FieldError::invalid(data_at.key_path(key), REDACTED, e));
                        }
                    }
                }
            }
            "kubernetes.io/basic-auth"
                if !data.contains_key("username") && !data.contains_key("password") =>
            {
                errs.push(FieldError::required(data_at.key_path("username"), ""));
                errs.push(FieldError::required(data_at.key_path("password"), ""));
            }
            "kubernetes.io/ssh-auth" if raw("ssh-privatekey").is_none_or(|b| b.is_empty()) => {
                errs.push(FieldError::required(data_at.key_path("ssh-privatekey"), ""));
            }
            "kubernetes.io/tls" => {
                for key in ["tls.crt", "tls.key"] {
                    if !data.contains_key(key) {
                        errs.push(FieldError::required(data_at.key_path(key), ""));
                    }
                }
            }
            _ => {}
        }
        root.child("immutable").bool(&mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let (n, o) = (At::new(new, ""), At::new(old, ""));
        util::immutable(&mut errs, &n.child("type"), &o.child("type"));
        immutable_flag(&mut errs, &n, &o, &["data"]);
        errs.extend(self.validate(new));
        errs
    }
}

/// Once `immutable` is true it stays true and the data stays as it is.
fn immutable_flag(errs: &mut Errs, n: &At, o: &At, fields: &[&str]) {
    if o.child("immutable").b() != Some(true) {
        return;
    }
    if n.child("immutable").b() != Some(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_SET));
    }
    for f in fields {
        let empty = |a: &At| a.len() == 0;
        let (nf, of) = (n.child(f), o.child(f));
        if nf.v != of.v && !(empty(&nf) && empty(&of)) {
            errs.push(FieldError::forbidden(*f, IMMUTABLE_SET));
        }
    }
}

pub(super) struct ConfigMap;

impl Strategy for ConfigMap {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        let data = root.child("data");
        let binary = root.child("binaryData");
        let binary_keys: Vec<String> = binary
            .entries(&mut Vec::new())
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        let mut total = 0;
        for (k, v) in data.entries(&mut errs) {
            key_errors(&mut errs, &data, k);
            if binary_keys.iter().any(|b| b == k) {
                errs.push(FieldError::invalid(
                    data.key_path(k),
                    k,
                    "duplicate of key present in binaryData",
                ));
            }
            total += v.str(&mut errs).map_or(0, str::len);
        }
        for (k, v) in binary.entries(&mut errs) {
            key_errors(&mut errs, &binary, k);
            match decode(v.v.unwrap_or(&Value::Null)) {
                Ok(bytes) => total += bytes.len(),
                Err(e) => errs.push(FieldError::invalid(v.path.clone(), k, e)),
            }
        }
        if total > MAX_SIZE {
            errs.push(FieldError::too_long("", MAX_SIZE));
        }
        root.child("immutable").bool(&mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        immutable_flag(
            &mut errs,
            &At::new(new, ""),
            &At::new(old, ""),
            &["data", "binaryData"],
        );
        errs.extend(self.validate(new));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn secret_defaults_fold_string_data() {
        let mut s = json!({"data": {"a": "eA=="}, "stringData": {"a": "y", "b": "z"}});
        Secret.defaults(&mut s);
        assert_eq!(
            s,
            json!({"data": {"a": "eQ==", "b": "eg=="}, "type": "Opaque"})
        );
        assert!(Secret.validate(&s).is_empty());
    }

    #[test]
    fn secret_types_need_their_keys() {
        let mut tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        Secret.defaults(&mut tls);
        assert_eq!(
            msgs(&Secret.validate(&tls)),
            vec!["data[tls.key]: Required value".to_string()]
        );
        let docker = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64().encode("[1]")}});
        assert_eq!(
            msgs(&Secret.validate(&docker)),
            vec!["data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": json: cannot unmarshal array into Go value of type map[string]interface {}".to_string()]
        );
        let sa = json!({"type": "kubernetes.io/service-account-token"});
        assert_eq!(
            msgs(&Secret.validate(&sa)),
            vec![
                "metadata.annotations[kubernetes.io/service-account.name]: Required value"
                    .to_string()
            ]
        );
    }

    #[test]
    fn keys_and_size() {
        let big = b64().encode(vec![b'x'; MAX_SIZE + 1]);
        let s = json!({"type": "Opaque", "data": {"bad key": "eA==", "big": big, "nope": "%%%"}});
        let errs = msgs(&Secret.validate(&s));
        assert!(errs.iter().any(|e| e.starts_with("data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'")), "{errs:?}");
        assert!(
            errs.contains(&"data: Too long: may not be more than 1048576 bytes".to_string()),
            "{errs:?}"
        );
        assert!(errs.contains(&"data[nope]: Invalid value: \"<secret contents redacted>\": illegal base64 data at input byte 0".to_string()), "{errs:?}");
        let cm = json!({"data": {"k": "v"}, "binaryData": {"k": "eA=="}});
        assert_eq!(
            msgs(&ConfigMap.validate(&cm)),
            vec![
                "data[k]: Invalid value: \"k\": duplicate of key present in binaryData".to_string()
            ]
        );
    }

    #[test]
    fn immutable_objects_stay_put() {
        let old = json!({"immutable": true, "data": {"k": "v"}});
        let new = json!({"data": {"k": "w"}});
        assert_eq!(
            msgs(&ConfigMap.validate_update(&new, &old)),
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set".to_string(),
                "data: Forbidden: field is immutable when `immutable` is set".to_string()
            ]
        );
        let old = json!({"type": "Opaque"});
        let new = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            msgs(&Secret.validate_update(&new, &old)),
            vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable".to_string()]
        );
    }

    #[test]
    fn odd_config_does_not_panic() {
        for body in [
            json!({"data": 1, "stringData": [1], "type": 3}),
            json!({"data": {"a": 1}, "binaryData": {"b": {}}}),
        ] {
            let mut s = body.clone();
            Secret.defaults(&mut s);
            let _ = Secret.validate(&s);
            let _ = Secret.validate_update(&s, &body);
            let _ = ConfigMap.validate(&body);
            let _ = ConfigMap.validate_update(&body, &body);
        }
    }
}
