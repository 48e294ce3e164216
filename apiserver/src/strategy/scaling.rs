//! PodDisruptionBudgets (`policy/v1`) and HorizontalPodAutoscalers (`autoscaling/v1` and
//! `v2`; objects may arrive in either shape, since creation does not convert them).

use serde_json::{json, Map, Value};

use super::util::{self, default_val, At, Errs};
use super::Strategy;
use crate::status::FieldError;

// ---- PodDisruptionBudget ----

pub(super) struct PodDisruptionBudget;

fn int_or_percent(errs: &mut Errs, at: &At) {
    match at.v {
        None => {}
        Some(Value::String(s)) => {
            let msgs = util::percent_errors(s);
            for m in &msgs {
                errs.push(FieldError::invalid(at.path.clone(), s.as_str(), m.clone()));
            }
            if msgs.is_empty() && s.trim_end_matches('%').parse::<i64>().unwrap_or(0) > 100 {
                errs.push(FieldError::invalid(
                    at.path.clone(),
                    s.as_str(),
                    "must not be greater than 100%",
                ));
            }
        }
        Some(v) => match util::as_integer(v) {
            Some(n) if n < 0 => errs.push(FieldError::invalid(at.path.clone(), n, util::NEGATIVE)),
            Some(_) => {}
            None => errs.push(FieldError::invalid(
                at.path.clone(),
                v.clone(),
                "must be an integer or percentage (e.g '5%%')",
            )),
        },
    }
}

impl Strategy for PodDisruptionBudget {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert(
                "status".into(),
                json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
            );
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let (min, max) = (spec.child("minAvailable"), spec.child("maxUnavailable"));
        if min.is_set() && max.is_set() {
            errs.push(FieldError::invalid(
                spec.path.clone(),
                spec.value(),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        int_or_percent(&mut errs, &min);
        int_or_percent(&mut errs, &max);
        let sel = spec.child("selector");
        if sel.is_set() {
            util::label_selector(&mut errs, &sel, false);
        }
        let p = spec.child("unhealthyPodEvictionPolicy");
        if let Some(v) = p.str(&mut errs) {
            if v != "IfHealthyBudget" && v != "AlwaysAllow" {
                errs.push(FieldError::not_supported(
                    p.path.clone(),
                    v,
                    &["AlwaysAllow", "IfHealthyBudget"],
                ));
            }
        }
        errs
    }
}

// ---- HorizontalPodAutoscaler ----

pub(super) struct HorizontalPodAutoscaler;

fn is_v1(obj: &Value) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1")
}

fn default_rules(rules: &mut Map<String, Value>, up: bool) {
    default_val(
        rules,
        "stabilizationWindowSeconds",
        json!(if up { 0 } else { 300 }),
    );
    default_val(rules, "selectPolicy", json!("Max"));
    let policies = if up {
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])
    } else {
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    };
    default_val(rules, "policies", policies);
}

const METRIC_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

impl Strategy for HorizontalPodAutoscaler {
    fn defaults(&self, obj: &mut Value) {
        let v1 = is_v1(obj);
        let Some(spec) = obj
            .as_object_mut()
            .and_then(|m| util::ensure_obj(m, "spec"))
        else {
            return;
        };
        default_val(spec, "minReplicas", json!(1));
        if v1 {
            default_val(spec, "targetCPUUtilizationPercentage", json!(80));
            return;
        }
        let no_metrics = spec
            .get("metrics")
            .is_none_or(|m| m.is_null() || m.as_array().is_some_and(Vec::is_empty));
        if no_metrics {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            );
        }
        if let Some(b) = util::obj_mut(spec, "behavior") {
            if let Some(up) = util::ensure_obj(b, "scaleUp") {
                default_rules(up, true);
            }
            if let Some(down) = util::ensure_obj(b, "scaleDown") {
                default_rules(down, false);
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let status = if is_v1(obj) {
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        } else {
            json!({"desiredReplicas": 0, "currentMetrics": null})
        };
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), status);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let min = spec.child("minReplicas");
        let min_n = min.int(&mut errs);
        if let Some(n) = min_n.filter(|n| *n < 1) {
            errs.push(FieldError::invalid(
                min.path.clone(),
                n,
                "must be greater than or equal to 1",
            ));
        }
        let max = spec.child("maxReplicas");
        let max_n = max.int(&mut errs).unwrap_or(0);
        if max_n < 1 {
            errs.push(FieldError::invalid(
                max.path.clone(),
                max_n,
                "must be greater than 0",
            ));
        }
        if min_n.is_some_and(|m| max_n < m) {
            errs.push(FieldError::invalid(
                max.path.clone(),
                max_n,
                "must be greater than or equal to `minReplicas`",
            ));
        }
        let target = spec.child("scaleTargetRef");
        for f in ["kind", "name"] {
            let a = target.child(f);
            let v = a.string(&mut errs);
            if v.is_empty() {
                errs.push(FieldError::required(a.path.clone(), ""));
            } else {
                for m in crate::validation::name_errors(v, super::NameRule::PathSegment) {
                    errs.push(FieldError::invalid(a.path.clone(), v, m));
                }
            }
        }
        if is_v1(obj) {
            let t = spec.child("targetCPUUtilizationPercentage");
            if let Some(n) = t.int(&mut errs).filter(|n| *n < 1) {
                errs.push(FieldError::invalid(
                    t.path.clone(),
                    n,
                    "must be greater than or equal to 1",
                ));
            }
            return errs;
        }
        for m in spec.child("metrics").items(&mut errs) {
            metric(&mut errs, &m);
        }
        let b = spec.child("behavior");
        if b.is_set() {
            for dir in ["scaleUp", "scaleDown"] {
                let r = b.child(dir);
                if !r.is_set() {
                    continue;
                }
                let sw = r.child("stabilizationWindowSeconds");
                if let Some(n) = sw.int(&mut errs) {
                    if n < 0 {
                        errs.push(FieldError::invalid(sw.path.clone(), n, util::NEGATIVE));
                    }
                    if n > 3600 {
                        errs.push(FieldError::invalid(
                            sw.path.clone(),
                            n,
                            "must be less than or equal to 3600",
                        ));
                    }
                }
                let sp = r.child("selectPolicy");
                if let Some(p) = sp.str(&mut errs) {
                    if !["Disabled", "Max", "Min"].contains(&p) {
                        errs.push(FieldError::not_supported(
                            sp.path.clone(),
                            p,
                            &["Disabled", "Max", "Min"],
                        ));
                    }
                }
                let policies = r.child("policies");
                let items = policies.items(&mut errs);
                if items.is_empty() {
                    errs.push(FieldError::required(
                        policies.path.clone(),
                        "must specify at least one Policy",
                    ));
                }
                for p in &items {
                    let t = p.child("type");
                    match t.string(&mut errs) {
                        "Pods" | "Percent" => {}
                        other => errs.push(FieldError::not_supported(
                            t.path.clone(),
                            other,
                            &["Percent", "Pods"],
                        )),
                    }
                    let v = p.child("value");
                    if v.int(&mut errs).unwrap_or(0) <= 0 {
                        errs.push(FieldError::invalid(
                            v.path.clone(),
                            v.value(),
                            "must be greater than zero",
                        ));
                    }
                    let ps = p.child("periodSeconds");
                    let n = ps.int(&mut errs).unwrap_or(0);
                    if n <= 0 {
                        errs.push(FieldError::invalid(
                            ps.path.clone(),
                            n,
                            "must be greater than zero",
                        ));
                    }
                    if n > 1800 {
                        errs.push(FieldError::invalid(
                            ps.path.clone(),
                            n,
                            "must be less than or equal to 1800",
                        ));
                    }
                }
            }
        }
        errs
    }
}

fn metric(errs: &mut Errs, m: &At) {
    let t = m.child("type");
    let ty = t.string(errs);
    if ty.is_empty() {
        errs.push(FieldError::required(
            t.path.clone(),
            "must specify a metric source type",
        ));
    } else if !METRIC_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(t.path.clone(), ty, METRIC_TYPES));
    }
    let sources = [
        ("Object", "object"),
        ("Pods", "pods"),
        ("Resource", "resource"),
        ("ContainerResource", "containerResource"),
        ("External", "external"),
    ];
    let set: Vec<&str> = sources
        .iter()
        .filter(|(_, f)| m.child(f).is_set())
        .map(|(_, f)| *f)
        .collect();
    if set.len() != 1 {
        errs.push(FieldError::forbidden(
            m.path.clone(),
            "must populate the given metric source only",
        ));
    }
    let Some((_, field)) = sources.iter().find(|(k, _)| *k == ty) else {
        return;
    };
    let src = m.child(field);
    if !src.is_set() {
        errs.push(FieldError::required(
            src.path.clone(),
            "must populate information for the given metric source",
        ));
        return;
    }
    match *field {
        "resource" | "containerResource" => {
            let name = src.child("name");
            if name.string(errs).is_empty() {
                errs.push(FieldError::required(
                    name.path.clone(),
                    "must specify a resource name",
                ));
            }
            if *field == "containerResource" {
                let c = src.child("container");
                let v = c.string(errs);
                if v.is_empty() {
                    errs.push(FieldError::required(
                        c.path.clone(),
                        "must specify a container",
                    ));
                } else {
                    util::dns_label(errs, &c.path, v);
                }
            }
        }
        _ => {
            let metric = src.child("metric");
            let name = metric.child("name");
            let n = name.string(errs);
            if n.is_empty() {
                errs.push(FieldError::required(
                    name.path.clone(),
                    "must specify a metric name",
                ));
            } else {
                for msg in crate::validation::name_errors(n, super::NameRule::PathSegment) {
                    errs.push(FieldError::invalid(name.path.clone(), n, msg));
                }
            }
            let sel = metric.child("selector");
            if sel.is_set() {
                util::label_selector(errs, &sel, false);
            }
            if *field == "object" {
                let d = src.child("describedObject");
                for f in ["kind", "name"] {
                    if d.child(f).string(errs).is_empty() {
                        errs.push(FieldError::required(d.child(f).path, ""));
                    }
                }
            }
        }
    }
    target(errs, &src.child("target"), field);
}

fn target(errs: &mut Errs, t: &At, source: &str) {
    let ty = t.child("type");
    let kind = ty.string(errs);
    match kind {
        "" => errs.push(FieldError::required(
            ty.path.clone(),
            "must specify a metric target type",
        )),
        "Utilization" | "Value" | "AverageValue" => {}
        other => errs.push(FieldError::not_supported(
            ty.path.clone(),
            other,
            &["AverageValue", "Utilization", "Value"],
        )),
    }
    let au = t.child("averageUtilization");
    if let Some(n) = au.int(errs).filter(|n| *n <= 0) {
        errs.push(FieldError::invalid(
            au.path.clone(),
            n,
            "must be greater than 0",
        ));
    }
    for f in ["value", "averageValue"] {
        let q = t.child(f);
        if let Some(v) = util::quantity(errs, &q) {
            if v.sign() <= 0 {
                errs.push(FieldError::invalid(
                    q.path.clone(),
                    v.to_string(),
                    "must be positive",
                ));
            }
        }
    }
    let needs = match kind {
        "Utilization" => (
            "averageUtilization",
            matches!(source, "resource" | "containerResource"),
        ),
        "Value" => ("value", true),
        "AverageValue" => ("averageValue", true),
        _ => ("", false),
    };
    if needs.1 && !t.child(needs.0).is_set() {
        errs.push(FieldError::required(
            t.child(needs.0).path,
            format!("must set {} when metric target type is {kind}", needs.0),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn pdb_rules() {
        let mut p = json!({"spec": {"minAvailable": 1, "maxUnavailable": "10%", "selector": {"matchLabels": {"a": "b"}}}});
        PodDisruptionBudget.prepare_for_create(&mut p);
        assert_eq!(p["status"]["disruptionsAllowed"], 0);
        let errs = msgs(&PodDisruptionBudget.validate(&p));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Invalid value: "));
        assert!(errs[0].ends_with("minAvailable and maxUnavailable cannot be both set"));
        let p = json!({"spec": {"maxUnavailable": "150%"}});
        assert_eq!(
            msgs(&PodDisruptionBudget.validate(&p)),
            vec![
                "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"
                    .to_string()
            ]
        );
    }

    #[test]
    fn hpa_defaults_and_rules() {
        let mut h = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 5,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "behavior": {}}});
        HorizontalPodAutoscaler.prepare_for_create(&mut h);
        HorizontalPodAutoscaler.defaults(&mut h);
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            300
        );
        assert_eq!(
            h["status"],
            json!({"desiredReplicas": 0, "currentMetrics": null})
        );
        assert!(
            HorizontalPodAutoscaler.validate(&h).is_empty(),
            "{:?}",
            msgs(&HorizontalPodAutoscaler.validate(&h))
        );

        let bad = json!({"apiVersion": "autoscaling/v1", "spec": {"minReplicas": 3, "maxReplicas": 2, "scaleTargetRef": {}}});
        let errs = msgs(&HorizontalPodAutoscaler.validate(&bad));
        for e in [
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
            "spec.scaleTargetRef.kind: Required value",
            "spec.scaleTargetRef.name: Required value",
        ] {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
    }
}
