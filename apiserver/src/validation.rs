//! Validation every object gets, whatever its kind: names, labels, annotations, and the
//! metadata fields that cannot change.

use ferrokube_common::labels;
use serde_json::Value;

use crate::meta;
use crate::status::FieldError;
use crate::strategy::NameRule;

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// Checks a name against a kind's rule, returning upstream's messages.
pub fn name_errors(name: &str, rule: NameRule) -> Vec<String> {
    match rule {
        NameRule::Subdomain => labels::is_dns1123_subdomain(name),
        NameRule::Label => labels::is_dns1123_label(name),
        NameRule::Label1035 => labels::is_dns1035_label(name),
        NameRule::PathSegment => path_segment_errors(name),
    }
}

fn path_segment_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// Validates `metadata` of an object being created or updated.
pub fn validate_metadata(obj: &Value, rule: NameRule, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(m) = meta::metadata(obj) else {
        errs.push(FieldError::required("metadata", ""));
        return errs;
    };
    let name = meta::name(obj);
    let generate_name = m.get("generateName").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_errors(name, rule) {
            errs.push(FieldError::invalid("metadata.name", name, msg));
        }
    }
    let namespace = meta::namespace(obj);
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for msg in labels::is_dns1123_label(namespace) {
                errs.push(FieldError::invalid("metadata.namespace", namespace, msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }

    for (field, key) in [
        ("metadata.labels", "labels"),
        ("metadata.annotations", "annotations"),
    ] {
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                let mut total = 0;
                for (k, v) in map {
                    for msg in labels::validate_qualified_name(&k.to_ascii_lowercase()) {
                        errs.push(FieldError::invalid(field, k.as_str(), msg));
                    }
                    let Some(v) = v.as_str() else {
                        errs.push(FieldError::type_invalid(
                            format!("{field}.{k}"),
                            v.clone(),
                            "must be a string",
                        ));
                        continue;
                    };
                    if key == "labels" {
                        for msg in labels::validate_label_value(v) {
                            errs.push(FieldError::invalid(field, v, msg));
                        }
                    }
                    total += k.len() + v.len();
                }
                if key == "annotations" && total > TOTAL_ANNOTATION_SIZE {
                    errs.push(FieldError::new_too_long_total(field, TOTAL_ANNOTATION_SIZE));
                }
            }
            Some(other) => errs.push(FieldError::type_invalid(
                field,
                other.clone(),
                "must be an object",
            )),
        }
    }

    if let Some(refs) = m.get("ownerReferences").and_then(Value::as_array) {
        for (i, r) in refs.iter().enumerate() {
            let path = format!("metadata.ownerReferences[{i}]");
            for f in ["apiVersion", "kind", "name", "uid"] {
                if r.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                    errs.push(FieldError::required(format!("{path}.{f}"), ""));
                }
            }
        }
        let controllers = refs
            .iter()
            .filter(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            .count();
        if controllers > 1 {
            errs.push(FieldError::invalid(
                "metadata.ownerReferences",
                Value::Array(refs.clone()),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    if let Some(f) = m.get("finalizers").and_then(Value::as_array) {
        for (i, fin) in f.iter().enumerate() {
            let s = fin.as_str().unwrap_or("");
            if !s.contains('/') && !matches!(s, "kubernetes" | "orphan" | "foregroundDeletion") {
                // Upstream requires finalizer names to be qualified, apart from the standard ones.
                errs.push(FieldError::invalid(
                    format!("metadata.finalizers[{i}]"),
                    s,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            } else {
                for msg in labels::validate_qualified_name(s) {
                    errs.push(FieldError::invalid(
                        format!("metadata.finalizers[{i}]"),
                        s,
                        msg,
                    ));
                }
            }
        }
    }
    errs
}

/// Metadata fields an update may not change, as upstream's ValidateObjectMetaUpdate.
pub fn validate_metadata_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, path) in [
        ("name", "metadata.name"),
        ("namespace", "metadata.namespace"),
    ] {
        let (n, o) = (
            meta::str_field(new, field).unwrap_or(""),
            meta::str_field(old, field).unwrap_or(""),
        );
        if n != o {
            errs.push(FieldError::invalid(path, n, "field is immutable"));
        }
    }
    errs
}

impl FieldError {
    fn new_too_long_total(field: &str, max: usize) -> FieldError {
        let mut e = FieldError::too_long(field, max);
        e.detail = format!("must have at most {max} bytes");
        e
    }
}
