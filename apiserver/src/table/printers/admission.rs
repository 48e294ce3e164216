//! Printers of admissionregistration.k8s.io and flowcontrol.apiserver.k8s.io kinds.

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{at, condition, created, int_at, items, len_at, name, opt_int, str_at};
use super::Cells;

const MUTATING_WEBHOOK: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Webhooks",
            "integer",
            "Number of webhooks in the configuration.",
        ),
        Column::age(),
    ],
    cells: |c| vec![name(c), json!(len_at(c, "webhooks")), created(c)],
};

const VALIDATING_WEBHOOK: Cells = MUTATING_WEBHOOK;

fn param_kind(policy: &Value) -> String {
    match at(policy, "spec.paramKind").filter(|p| p.is_object()) {
        Some(p) => format!("{}/{}", str_at(p, "apiVersion"), str_at(p, "kind")),
        None => "<unset>".into(),
    }
}

const VALIDATING_POLICY: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Validations",
            "integer",
            "Number of validation rules in the policy.",
        ),
        Column::new(
            "ParamKind",
            "string",
            "The kind of the policy's parameter resources.",
        ),
        Column::age(),
    ],
    cells: |p| {
        vec![
            name(p),
            json!(len_at(p, "spec.validations")),
            json!(param_kind(p)),
            created(p),
        ]
    },
};

const MUTATING_POLICY: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Mutations",
            "integer",
            "Number of mutation rules in the policy.",
        ),
        Column::new(
            "ParamKind",
            "string",
            "The kind of the policy's parameter resources.",
        ),
        Column::age(),
    ],
    cells: |p| {
        vec![
            name(p),
            json!(len_at(p, "spec.mutations")),
            json!(param_kind(p)),
            created(p),
        ]
    },
};

const POLICY_BINDING: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("PolicyName", "string", "The policy the binding applies."),
        Column::new(
            "ParamRef",
            "string",
            "The parameter resource the binding configures.",
        ),
        Column::age(),
    ],
    cells: |b| {
        vec![
            name(b),
            json!(str_at(b, "spec.policyName")),
            json!(param_ref(b)),
            created(b),
        ]
    },
};

fn param_ref(binding: &Value) -> String {
    let Some(r) = at(binding, "spec.paramRef").filter(|r| r.is_object()) else {
        return "<unset>".into();
    };
    let ref_name = str_at(r, "name");
    if !ref_name.is_empty() {
        // Whether the parameter is cluster-scoped is unknown here, so no namespace reads "*".
        return match str_at(r, "namespace") {
            "" => format!("*/{ref_name}"),
            ns => format!("{ns}/{ref_name}"),
        };
    }
    match r.get("selector") {
        Some(sel) if sel.is_object() => go_selector_struct(sel),
        _ => "<unset>".into(),
    }
}

/// A label selector in the Go struct notation upstream prints for selector-based bindings.
fn go_selector_struct(sel: &Value) -> String {
    let mut labels: Vec<(&String, &Value)> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("{k}: {},", v.as_str().unwrap_or("")))
        .collect();
    let expressions: String = items(sel, "matchExpressions")
        .iter()
        .map(|e| {
            let values: Vec<&str> = items(e, "values")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                str_at(e, "key"),
                str_at(e, "operator"),
                values.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

struct FlowSchema;

const FLOW_SCHEMA_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "PriorityLevel",
        "string",
        "The priority level requests of the schema go to.",
    ),
    Column::new(
        "MatchingPrecedence",
        "string",
        "Lower values are matched first.",
    ),
    Column::new(
        "DistinguisherMethod",
        "string",
        "How requests are split into flows.",
    ),
    Column::age(),
    Column::new(
        "MissingPL",
        "string",
        "references a broken or non-existent PriorityLevelConfiguration",
    ),
];

/// The API's default matching precedence.
fn precedence(fs: &Value) -> i64 {
    opt_int(fs, "spec.matchingPrecedence").unwrap_or(1000)
}

impl Printer for FlowSchema {
    fn columns(&self) -> &'static [Column] {
        FLOW_SCHEMA_COLUMNS
    }

    fn cells(&self, fs: &Value) -> Vec<Value> {
        let method = match at(fs, "spec.distinguisherMethod").filter(|m| m.is_object()) {
            Some(m) => str_at(m, "type"),
            None => "<none>",
        };
        let missing =
            condition(fs, "status.conditions", "Dangling").map_or("?", |c| str_at(c, "status"));
        vec![
            name(fs),
            json!(str_at(fs, "spec.priorityLevelConfiguration.name")),
            json!(precedence(fs)),
            json!(method),
            created(fs),
            json!(missing),
        ]
    }

    /// Lists come in the order the API server matches schemas: by precedence, then name.
    fn order(&self, objs: &mut [&Value]) {
        objs.sort_by(|a, b| {
            precedence(a)
                .cmp(&precedence(b))
                .then_with(|| crate::meta::name(a).cmp(crate::meta::name(b)))
        });
    }
}

const PRIORITY_LEVEL: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Type", "string", "Limited, or Exempt from limits."),
        Column::new(
            "NominalConcurrencyShares",
            "string",
            "The level's share of the concurrency limit.",
        ),
        Column::new("Queues", "string", "Number of queues."),
        Column::new(
            "HandSize",
            "string",
            "Queues each flow is shuffle-sharded over.",
        ),
        Column::new("QueueLengthLimit", "string", "Requests a queue may hold."),
        Column::age(),
    ],
    cells: |pl| {
        let none = || json!("<none>");
        let (mut shares, mut queues, mut hand, mut length) = (none(), none(), none(), none());
        if let Some(limited) = at(pl, "spec.limited").filter(|l| l.is_object()) {
            // Unset fields print as the defaults the API would have filled in.
            let nominal = opt_int(limited, "nominalConcurrencyShares")
                .or_else(|| opt_int(limited, "assuredConcurrencyShares"))
                .unwrap_or(30);
            shares = json!(nominal);
            if let Some(q) = at(limited, "limitResponse.queuing").filter(|q| q.is_object()) {
                let or_default = |field: &str, default: i64| match int_at(q, field) {
                    0 => default,
                    n => n,
                };
                queues = json!(or_default("queues", 64));
                hand = json!(or_default("handSize", 8));
                length = json!(or_default("queueLengthLimit", 50));
            }
        }
        vec![
            name(pl),
            json!(str_at(pl, "spec.type")),
            shares,
            queues,
            hand,
            length,
            created(pl),
        ]
    },
};

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    Some(match (group, kind) {
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => &MUTATING_WEBHOOK,
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => &VALIDATING_WEBHOOK,
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => &VALIDATING_POLICY,
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy") => &MUTATING_POLICY,
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding",
        ) => &POLICY_BINDING,
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => &FlowSchema,
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => &PRIORITY_LEVEL,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_bindings() {
        let vap = json!({"spec": {"validations": [{}, {}], "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}});
        assert_eq!(
            VALIDATING_POLICY.cells(&vap)[1..3],
            [json!(2), json!("v1/ConfigMap")]
        );
        assert_eq!(VALIDATING_POLICY.cells(&json!({}))[2], json!("<unset>"));

        let b = |r: Value| param_ref(&json!({"spec": {"paramRef": r}}));
        assert_eq!(b(json!({"name": "p", "namespace": "ns"})), "ns/p");
        assert_eq!(b(json!({"name": "p"})), "*/p");
        assert_eq!(
            b(json!({"selector": {"matchLabels": {"b": "2", "a": "1"},
                                  "matchExpressions": [{"key": "k", "operator": "In", "values": ["x", "y"]}]}})),
            "&LabelSelector{MatchLabels:map[string]string{a: 1,b: 2,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:k,Operator:In,Values:[x y],},},}"
        );
        assert_eq!(b(json!({})), "<unset>");
        assert_eq!(param_ref(&json!({})), "<unset>");
    }

    #[test]
    fn flow_schemas_sorted_by_precedence() {
        let a = json!({"metadata": {"name": "b"}, "spec": {"matchingPrecedence": 500,
            "priorityLevelConfiguration": {"name": "workload"}, "distinguisherMethod": {"type": "ByUser"}},
            "status": {"conditions": [{"type": "Dangling", "status": "False"}]}});
        let b = json!({"metadata": {"name": "a"}, "spec": {"matchingPrecedence": 500}});
        let c = json!({"metadata": {"name": "exempt"}, "spec": {"matchingPrecedence": 1}});
        let mut objs = vec![&a, &b, &c];
        FlowSchema.order(&mut objs);
        let names: Vec<&str> = objs.iter().map(|o| crate::meta::name(o)).collect();
        assert_eq!(names, ["exempt", "a", "b"]);
        let cells = FlowSchema.cells(&a);
        assert_eq!(
            cells[1..4],
            [json!("workload"), json!(500), json!("ByUser")]
        );
        assert_eq!(cells[5], json!("False"));
        let cells = FlowSchema.cells(&json!({}));
        assert_eq!(
            [&cells[2], &cells[3], &cells[5]],
            [&json!(1000), &json!("<none>"), &json!("?")]
        );
    }

    #[test]
    fn priority_levels() {
        let pl = json!({"spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 100,
            "limitResponse": {"type": "Queue", "queuing": {"queues": 128, "handSize": 6, "queueLengthLimit": 50}}}}});
        assert_eq!(
            PRIORITY_LEVEL.cells(&pl)[1..6],
            [
                json!("Limited"),
                json!(100),
                json!(128),
                json!(6),
                json!(50)
            ]
        );
        let exempt = json!({"spec": {"type": "Exempt", "exempt": {}}});
        assert_eq!(
            PRIORITY_LEVEL.cells(&exempt)[2..6],
            [
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let reject = json!({"spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 0,
            "limitResponse": {"type": "Reject"}}}});
        assert_eq!(
            PRIORITY_LEVEL.cells(&reject)[2..4],
            [json!(0), json!("<none>")]
        );
    }
}
