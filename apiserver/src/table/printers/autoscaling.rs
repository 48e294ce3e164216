//! The HorizontalPodAutoscaler printer, for both the v2 and the v1 shape.

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{at, created, int_at, name, opt_int, quantity_ptr, str_at};
use super::Cells;

/// The CPU utilization target the API fills in for an autoscaler given no metrics.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

const HPA: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Reference", "string", "The object being scaled."),
        Column::new(
            "Targets",
            "string",
            "Current and target values of each metric.",
        ),
        Column::new("MinPods", "string", "The fewest replicas to scale down to."),
        Column::new("MaxPods", "string", "The most replicas to scale up to."),
        Column::new("Replicas", "string", "Replicas the target has now."),
        Column::age(),
    ],
    cells: |hpa| {
        let reference = format!(
            "{}/{}",
            str_at(hpa, "spec.scaleTargetRef.kind"),
            str_at(hpa, "spec.scaleTargetRef.name")
        );
        // The API defaults minReplicas to 1, so upstream's "<unset>" never shows in practice.
        let min = opt_int(hpa, "spec.minReplicas").unwrap_or(1).to_string();
        let (specs, statuses) = metrics(hpa);
        vec![
            name(hpa),
            json!(reference),
            json!(format_metrics(&specs, &statuses)),
            json!(min),
            json!(int_at(hpa, "spec.maxReplicas")),
            json!(int_at(hpa, "status.currentReplicas")),
            created(hpa),
        ]
    },
};

fn cpu_metric(current_or_target: &str, utilization: i64) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", current_or_target: {
        "type": "Utilization", "averageUtilization": utilization}}})
}

/// The v2 metric specs and statuses. A v1 object only has its CPU utilization fields, and
/// an object with no metrics at all gets the CPU default, as the API would have stored it.
fn metrics(hpa: &Value) -> (Vec<Value>, Vec<Value>) {
    let specs = match at(hpa, "spec.metrics") {
        Some(Value::Array(list)) if !list.is_empty() => list.clone(),
        _ => {
            let target = opt_int(hpa, "spec.targetCPUUtilizationPercentage")
                .unwrap_or(DEFAULT_CPU_UTILIZATION);
            vec![cpu_metric("target", target)]
        }
    };
    let statuses = match at(hpa, "status.currentMetrics") {
        Some(Value::Array(list)) => list.clone(),
        _ => opt_int(hpa, "status.currentCPUUtilizationPercentage")
            .map(|current| vec![cpu_metric("current", current)])
            .unwrap_or_default(),
    };
    (specs, statuses)
}

fn present(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

/// One metric's `current/target`, with `current` "<unknown>" until the status reports it.
fn format_metric(spec: &Value, status: Option<&Value>) -> String {
    let source_status = |field: &str| status.and_then(|s| s.get(field)).filter(|v| v.is_object());
    const UNKNOWN: &str = "<unknown>";
    let kind = str_at(spec, "type");
    match kind {
        "External" | "Object" => {
            let field = if kind == "External" {
                "external"
            } else {
                "object"
            };
            let target = at(spec, &format!("{field}.target")).unwrap_or(&Value::Null);
            if present(target.get("averageValue")) {
                let current = source_status(field)
                    .and_then(|s| at(s, "current.averageValue"))
                    .filter(|v| !v.is_null())
                    .map_or_else(|| UNKNOWN.to_string(), |v| quantity_ptr(Some(v)));
                format!(
                    "{current}/{} (avg)",
                    quantity_ptr(target.get("averageValue"))
                )
            } else {
                let current = source_status(field).map_or_else(
                    || UNKNOWN.to_string(),
                    |s| quantity_ptr(at(s, "current.value")),
                );
                format!("{current}/{}", quantity_ptr(target.get("value")))
            }
        }
        "Pods" => {
            let current = source_status("pods").map_or_else(
                || UNKNOWN.to_string(),
                |s| quantity_ptr(at(s, "current.averageValue")),
            );
            format!(
                "{current}/{}",
                quantity_ptr(at(spec, "pods.target.averageValue"))
            )
        }
        "Resource" | "ContainerResource" => {
            let field = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let source = spec.get(field).unwrap_or(&Value::Null);
            let resource = str_at(source, "name");
            let target = source.get("target").unwrap_or(&Value::Null);
            if present(target.get("averageValue")) {
                let current = source_status(field).map_or_else(
                    || UNKNOWN.to_string(),
                    |s| quantity_ptr(at(s, "current.averageValue")),
                );
                format!(
                    "{resource}: {current}/{}",
                    quantity_ptr(target.get("averageValue"))
                )
            } else {
                let current = source_status(field)
                    .and_then(|s| opt_int(s, "current.averageUtilization"))
                    .map_or_else(|| UNKNOWN.to_string(), |u| format!("{u}%"));
                let wanted = opt_int(target, "averageUtilization")
                    .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                format!("{resource}: {current}/{wanted}")
            }
        }
        _ => "<unknown type>".into(),
    }
}

fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".into();
    }
    let shown: Vec<String> = specs
        .iter()
        .take(MAX)
        .enumerate()
        .map(|(i, spec)| format_metric(spec, statuses.get(i)))
        .collect();
    let joined = shown.join(", ");
    if specs.len() > MAX {
        format!("{joined} + {} more...", specs.len() - MAX)
    } else {
        joined
    }
}

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    match (group, kind) {
        ("autoscaling", "HorizontalPodAutoscaler") => Some(&HPA),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_targets() {
        let hpa = json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 10,
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                        {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "30"}}}
                     ]},
            "status": {"currentReplicas": 3, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12, "averageValue": "100m"}}}
            ]}
        });
        let c = HPA.cells(&hpa);
        assert_eq!(
            c[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 12%/50%, <unknown>/1k + 1 more..."),
                json!("2"),
                json!(10),
                json!(3),
            ]
        );
    }

    #[test]
    fn metric_kinds() {
        let m = |spec: Value, status: Value| format_metric(&spec, Some(&status));
        assert_eq!(
            m(
                json!({"type": "Resource", "resource": {"name": "memory", "target": {"averageValue": "1Gi"}}}),
                json!({"resource": {"current": {"averageValue": "512Mi"}}})
            ),
            "memory: 512Mi/1Gi"
        );
        assert_eq!(
            m(
                json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "c", "target": {}}}),
                json!({})
            ),
            "cpu: <unknown>/<auto>"
        );
        assert_eq!(
            m(
                json!({"type": "Object", "object": {"target": {"averageValue": "5"}}}),
                json!({"object": {"current": {"value": "3"}}})
            ),
            "<unknown>/5 (avg)"
        );
        assert_eq!(
            m(
                json!({"type": "External", "external": {"target": {"value": "30"}}}),
                json!({"external": {"current": {"value": "7"}}})
            ),
            "7/30"
        );
        assert_eq!(m(json!({"type": "Weird"}), json!({})), "<unknown type>");
    }

    #[test]
    fn v1_shape() {
        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "ReplicaSet", "name": "r"}, "maxReplicas": 4,
                                  "targetCPUUtilizationPercentage": 70},
                         "status": {"currentReplicas": 1, "currentCPUUtilizationPercentage": 33}});
        let c = HPA.cells(&hpa);
        assert_eq!(c[2..5], [json!("cpu: 33%/70%"), json!("1"), json!(4)]);
        let bare = json!({"spec": {"maxReplicas": 1}});
        assert_eq!(HPA.cells(&bare)[2], json!("cpu: <unknown>/80%"));
        assert_eq!(format_metrics(&[], &[]), "<none>");
    }
}
