//! Conversion between the versions of a resource that share one storage location.
//!
//! Two built-in pairs need it: core `v1` Events and `events.k8s.io/v1` Events (stored as the
//! core kind, as upstream does), and `autoscaling/v1` and `v2` HorizontalPodAutoscalers
//! (stored as v2). Everything else is stored in the one version it is served in.

use serde_json::{json, Map, Value};

use crate::resources::Resource;

const HPA_METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const HPA_CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const HPA_CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const HPA_BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The apiVersion a resource's objects are stored in.
pub fn storage_version(res: &Resource) -> String {
    match (res.group.as_str(), res.kind.as_str()) {
        ("events.k8s.io", "Event") => "v1".into(),
        ("autoscaling", "HorizontalPodAutoscaler") => "autoscaling/v2".into(),
        _ => res.api_version(),
    }
}

fn api_version(obj: &Value) -> &str {
    obj.get("apiVersion").and_then(Value::as_str).unwrap_or("")
}

/// Converts a stored object into the version the request addressed.
pub fn to_version(obj: Value, res: &Resource) -> Value {
    let want = res.api_version();
    if api_version(&obj) == want || obj.is_null() {
        return obj;
    }
    match (api_version(&obj), want.as_str()) {
        ("v1", "events.k8s.io/v1") => core_event_to_events(obj),
        ("events.k8s.io/v1", "v1") => events_to_core_event(obj),
        ("autoscaling/v2", "autoscaling/v1") => hpa_v2_to_v1(obj),
        ("autoscaling/v1", "autoscaling/v2") => hpa_v1_to_v2(obj),
        _ => obj,
    }
}

/// Converts an object the client sent into the version it is stored in.
pub fn to_storage(obj: Value, res: &Resource) -> Value {
    let stored = storage_version(res);
    if api_version(&obj) == stored {
        return obj;
    }
    match (api_version(&obj), stored.as_str()) {
        ("events.k8s.io/v1", "v1") => events_to_core_event(obj),
        ("autoscaling/v1", "autoscaling/v2") => hpa_v1_to_v2(obj),
        _ => obj,
    }
}

/// Moves fields from `from` to `to` under new names.
fn rename(src: &mut Map<String, Value>, dst: &mut Map<String, Value>, pairs: &[(&str, &str)]) {
    for (from, to) in pairs {
        if let Some(v) = src.remove(*from) {
            dst.insert((*to).to_string(), v);
        }
    }
}

const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("type", "type"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("metadata", "metadata"),
];

fn core_event_to_events(obj: Value) -> Value {
    let Value::Object(mut src) = obj else {
        return obj;
    };
    let mut dst = Map::new();
    dst.insert("kind".into(), json!("Event"));
    dst.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    rename(&mut src, &mut dst, EVENT_FIELDS);
    Value::Object(dst)
}

fn events_to_core_event(obj: Value) -> Value {
    let Value::Object(mut src) = obj else {
        return obj;
    };
    let mut dst = Map::new();
    dst.insert("kind".into(), json!("Event"));
    dst.insert("apiVersion".into(), json!("v1"));
    let reversed: Vec<(&str, &str)> = EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)).collect();
    rename(&mut src, &mut dst, &reversed);
    if !dst.contains_key("involvedObject") {
        dst.insert("involvedObject".into(), json!({}));
    }
    Value::Object(dst)
}

fn annotations_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let meta = crate::meta::metadata_mut(obj);
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    ann.as_object_mut().expect("object")
}

fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let ann = annotations_mut(obj);
    let v = ann
        .remove(key)
        .and_then(|v| v.as_str().and_then(|s| serde_json::from_str(s).ok()));
    if ann.is_empty() {
        crate::meta::remove(obj, "annotations");
    }
    v
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn hpa_v2_to_v1(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v1");
    let spec = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut v1_spec = Map::new();
    for f in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(f) {
            v1_spec.insert(f.into(), v.clone());
        }
    }
    let metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut others = Vec::new();
    for m in metrics {
        if is_cpu_utilization(&m) {
            v1_spec.insert(
                "targetCPUUtilizationPercentage".into(),
                m["resource"]["target"]["averageUtilization"].clone(),
            );
        } else {
            others.push(m);
        }
    }
    if !others.is_empty() {
        annotations_mut(&mut obj)
            .insert(HPA_METRICS.into(), json!(Value::Array(others).to_string()));
    }
    if let Some(b) = spec.get("behavior") {
        annotations_mut(&mut obj).insert(HPA_BEHAVIOR.into(), json!(b.to_string()));
    }
    obj["spec"] = Value::Object(v1_spec);

    if let Some(status) = obj
        .get_mut("status")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
    {
        let mut v1 = Map::new();
        for f in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = status.get(f) {
                v1.insert(f.into(), v.clone());
            }
        }
        let mut others = Vec::new();
        for m in status
            .get("currentMetrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            if m["type"] == "Resource"
                && m["resource"]["name"] == "cpu"
                && m["resource"]["current"].get("averageUtilization").is_some()
            {
                v1.insert(
                    "currentCPUUtilizationPercentage".into(),
                    m["resource"]["current"]["averageUtilization"].clone(),
                );
            } else {
                others.push(m);
            }
        }
        if !others.is_empty() {
            annotations_mut(&mut obj).insert(
                HPA_CURRENT_METRICS.into(),
                json!(Value::Array(others).to_string()),
            );
        }
        if let Some(c) = status
            .get("conditions")
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
        {
            annotations_mut(&mut obj).insert(HPA_CONDITIONS.into(), json!(c.to_string()));
        }
        obj["status"] = Value::Object(v1);
    }
    obj
}

fn hpa_v1_to_v2(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v2");
    let mut metrics = take_annotation(&mut obj, HPA_METRICS)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let behavior = take_annotation(&mut obj, HPA_BEHAVIOR);
    let current = take_annotation(&mut obj, HPA_CURRENT_METRICS);
    let conditions = take_annotation(&mut obj, HPA_CONDITIONS);
    let spec = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut v2 = Map::new();
    for f in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(f) {
            v2.insert(f.into(), v.clone());
        }
    }
    if let Some(cpu) = spec.get("targetCPUUtilizationPercentage") {
        metrics.insert(
            0,
            json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}),
        );
    }
    if !metrics.is_empty() {
        v2.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = behavior {
        v2.insert("behavior".into(), b);
    }
    obj["spec"] = Value::Object(v2);
    if let Some(status) = obj
        .get_mut("status")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
    {
        let mut v2s = Map::new();
        for f in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = status.get(f) {
                v2s.insert(f.into(), v.clone());
            }
        }
        let mut cur = current
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        if let Some(cpu) = status.get("currentCPUUtilizationPercentage") {
            cur.insert(
                0,
                json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}),
            );
        }
        if !cur.is_empty() {
            v2s.insert("currentMetrics".into(), Value::Array(cur));
        }
        if let Some(c) = conditions {
            v2s.insert("conditions".into(), c);
        }
        obj["status"] = Value::Object(v2s);
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "R", "count": 2});
        let ev = core_event_to_events(core.clone());
        assert_eq!(ev["note"], "hi");
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["deprecatedCount"], 2);
        assert_eq!(events_to_core_event(ev), core);
    }

    #[test]
    fn hpa_cpu_target_round_trips() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "minReplicas": 1, "maxReplicas": 5,
                     "targetCPUUtilizationPercentage": 50}});
        let v2 = hpa_v1_to_v2(v1.clone());
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(hpa_v2_to_v1(v2), v1);
    }
}
