//! JSON accessors and cell formatting shared by the printers.
//!
//! Objects reach the printers as stored, so every accessor treats a missing field or a field
//! of the wrong type as absent rather than failing: a malformed object must still list.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use ferrokube_common::labels::Selector;
use ferrokube_common::quantity::Quantity;
use serde_json::{json, Value};

use super::super::{age, human_duration};
use crate::meta;

/// The value at a dotted path of object keys.
pub(super) fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, key| v.get(key))
}

/// A string field, if present and a string.
pub(super) fn opt_str<'a>(obj: &'a Value, path: &str) -> Option<&'a str> {
    at(obj, path).and_then(Value::as_str)
}

/// A string field, or "" (the Go zero value the printers upstream start from).
pub(super) fn str_at<'a>(obj: &'a Value, path: &str) -> &'a str {
    opt_str(obj, path).unwrap_or("")
}

/// A string field, or `fallback` when it is missing or empty.
pub(super) fn str_or<'a>(obj: &'a Value, path: &str, fallback: &'a str) -> &'a str {
    match opt_str(obj, path) {
        Some(s) if !s.is_empty() => s,
        _ => fallback,
    }
}

/// An integer field, if present and integral.
pub(super) fn opt_int(obj: &Value, path: &str) -> Option<i64> {
    let v = at(obj, path)?;
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
}

/// An integer field, or 0.
pub(super) fn int_at(obj: &Value, path: &str) -> i64 {
    opt_int(obj, path).unwrap_or(0)
}

pub(super) fn opt_bool(obj: &Value, path: &str) -> Option<bool> {
    at(obj, path).and_then(Value::as_bool)
}

/// An array field's items, or none.
pub(super) fn items<'a>(obj: &'a Value, path: &str) -> &'a [Value] {
    at(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The number of entries of an object or array field.
pub(super) fn len_at(obj: &Value, path: &str) -> i64 {
    let n = match at(obj, path) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The Name cell.
pub(super) fn name(obj: &Value) -> Value {
    json!(meta::name(obj))
}

/// The Age cell.
pub(super) fn created(obj: &Value) -> Value {
    json!(age(meta::str_field(obj, "creationTimestamp")))
}

/// Time elapsed since a timestamp field, "<unknown>" when it is unset.
pub(super) fn since(obj: &Value, path: &str) -> String {
    age(opt_str(obj, path).filter(|s| !s.is_empty()))
}

pub(super) fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// The human duration between two timestamps.
pub(super) fn between(start: DateTime<FixedOffset>, end: DateTime<FixedOffset>) -> String {
    human_duration(end.signed_duration_since(start).num_seconds())
}

/// A label map as `k=v,k2=v2` sorted by key, or "<none>".
pub(super) fn format_labels(map: Option<&Value>) -> String {
    let sorted: BTreeMap<&str, &str> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if sorted.is_empty() {
        return "<none>".into();
    }
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `metav1.LabelSelector` as a selector string; "" when it selects everything or nothing.
pub(super) fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    Selector::from_label_selector(sel.unwrap_or(&Value::Null))
        .map(|s| s.to_string())
        .map_err(|_| ())
}

/// A label selector the way most printers show it: "<none>" for an empty one and "<error>"
/// for one that does not parse.
pub(super) fn format_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s,
        Err(()) => "<error>".into(),
    }
}

/// The comma-joined names and images of a pod spec's containers.
pub(super) fn containers(pod_spec: Option<&Value>) -> (String, String) {
    let list = pod_spec.map(|s| items(s, "containers")).unwrap_or(&[]);
    let names: Vec<&str> = list.iter().map(|c| str_at(c, "name")).collect();
    let images: Vec<&str> = list.iter().map(|c| str_at(c, "image")).collect();
    (names.join(","), images.join(","))
}

/// A quantity as Go's `Quantity.String` prints it after decoding (which keeps some inputs'
/// text and canonicalizes the rest); an absent one is zero.
pub(super) fn quantity(v: Option<&Value>) -> String {
    let text = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return "0".into(),
    };
    match Quantity::parse(&text) {
        Ok(q) => q.to_string(),
        Err(_) => text,
    }
}

/// A quantity held through a pointer upstream, where an absent one prints as "<nil>".
pub(super) fn quantity_ptr(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(_) | Value::Number(_)) => quantity(v),
        _ => "<nil>".into(),
    }
}

/// Joins the first entries of a longer list, noting how many were left out.
pub(super) fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let joined = list.join(",");
    if more {
        return format!("{joined} + {} more...", count.saturating_sub(max));
    }
    if joined.is_empty() {
        return "<unset>".into();
    }
    joined
}

/// The first condition of a type in a `conditions` list.
pub(super) fn condition<'a>(obj: &'a Value, path: &str, kind: &str) -> Option<&'a Value> {
    items(obj, path).iter().find(|c| str_at(c, "type") == kind)
}

/// An object's annotation, if set.
pub(super) fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta::metadata(obj)?.get("annotations")?.get(key)?.as_str()
}

/// The ip/hostname list of a load balancer status (`status.loadBalancer`), sorted and
/// deduplicated; the server renders tables wide, so nothing is clipped.
pub(super) fn load_balancer_addresses(lb: Option<&Value>) -> String {
    let mut seen = std::collections::BTreeSet::new();
    for ing in lb.map(|l| items(l, "ingress")).unwrap_or(&[]) {
        let ip = str_at(ing, "ip");
        let host = str_at(ing, "hostname");
        if !ip.is_empty() {
            seen.insert(ip);
        } else if !host.is_empty() {
            seen.insert(host);
        }
    }
    seen.into_iter().collect::<Vec<_>>().join(",")
}

/// Access modes abbreviated in upstream's fixed order.
pub(super) fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_tolerate_odd_shapes() {
        let obj = json!({"spec": {"replicas": "3", "list": 5, "name": 7}});
        assert_eq!(int_at(&obj, "spec.replicas"), 0);
        assert!(items(&obj, "spec.list").is_empty());
        assert_eq!(str_at(&obj, "spec.name"), "");
        assert_eq!(str_at(&obj, "spec.missing.deeper"), "");
        assert_eq!(len_at(&obj, "spec"), 3);
    }

    #[test]
    fn labels_and_selectors() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
        assert_eq!(format_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_selector(None), "<none>");
        assert_eq!(
            format_selector(Some(&json!({"matchLabels": {"app": "web"}}))),
            "app=web"
        );
        assert_eq!(
            format_selector(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "Bad"}]})
            )),
            "<error>"
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity(Some(&json!("1024Mi"))), "1Gi");
        assert_eq!(quantity(Some(&json!(5))), "5");
        assert_eq!(quantity(None), "0");
        assert_eq!(quantity_ptr(None), "<nil>");
    }

    #[test]
    fn more_lists() {
        let l: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(list_with_more(&l, true, 5, 3), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&[], false, 0, 3), "<unset>");
    }

    #[test]
    fn modes() {
        assert_eq!(
            access_modes(&[json!("ReadWriteMany"), json!("ReadWriteOnce")]),
            "RWO,RWX"
        );
        assert_eq!(access_modes(&[]), "");
    }
}
