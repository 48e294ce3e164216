//! Which nodes a DaemonSet's pod belongs on: the template's nodeName, nodeSelector and
//! required node affinity, and the node's taints against the pod's tolerations (including
//! the ones every daemon pod gets), as upstream's `NodeShouldRunDaemonPod` decides.

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, PodSpec, Taint, Toleration,
};

/// Tolerations upstream adds to every daemon pod, so that node conditions and cordoning
/// never evict or keep out a daemon.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.to_string()),
            operator: Some("Exists".to_string()),
            effect: Some(effect.to_string()),
            value: None,
            toleration_seconds: None,
        };
        if !tolerations.contains(&t) {
            tolerations.push(t);
        }
    }
}

/// Whether `t` tolerates `taint`.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    if !effect_ok {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let exists = t.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    if key != taint.key {
        return false;
    }
    exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
}

/// Whether some taint the filter picks is tolerated by none of `tolerations`.
fn has_untolerated(
    taints: &[Taint],
    tolerations: &[Toleration],
    pick: impl Fn(&Taint) -> bool,
) -> bool {
    taints
        .iter()
        .filter(|t| pick(t))
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [limit]) = (value.and_then(|v| v.parse::<i64>().ok()), values) else {
                return false;
            };
            let Ok(limit) = limit.parse::<i64>() else {
                return false;
            };
            if r.operator == "Gt" {
                v > limit
            } else {
                v < limit
            }
        }
        _ => false,
    }
}

/// Whether a required node selector (terms ORed, requirements within a term ANDed) admits
/// the node. A term with no requirements admits nothing, as upstream.
pub fn selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref();
    sel.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && requirement_matches(r, name))
    })
}

/// Whether a pod with `spec` (tolerations already including the daemon ones) should be
/// placed on the node, and whether one already there may keep running.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .as_ref()
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|sel| selector_matches(sel, node));
    if !selector_ok || !affinity_ok {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let blocking = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
    if has_untolerated(&taints, &tolerations, blocking) {
        // NoSchedule keeps new pods out but does not evict; NoExecute does both.
        let evicts = has_untolerated(&taints, &tolerations, |t| t.effect == "NoExecute");
        return (false, !evicts);
    }
    (true, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn taints_and_daemon_tolerations() {
        let mut spec = PodSpec::default();
        add_daemon_tolerations(&mut spec);
        assert_eq!(
            should_run(
                &spec,
                &node(vec![taint(
                    "node.kubernetes.io/unschedulable",
                    "NoSchedule"
                )])
            ),
            (true, true)
        );
        assert_eq!(
            should_run(&spec, &node(vec![taint("gpu", "NoSchedule")])),
            (false, true)
        );
        assert_eq!(
            should_run(&spec, &node(vec![taint("gpu", "NoExecute")])),
            (false, false)
        );
        assert_eq!(
            should_run(&spec, &node(vec![taint("gpu", "PreferNoSchedule")])),
            (true, true)
        );
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(6));
    }
}
