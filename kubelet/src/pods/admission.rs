//! Node-side admission, as upstream's kubelet runs before it starts a pod: the pod must fit
//! the node's allocatable resources next to the pods already admitted, match the node's
//! selector and required affinity, not clash on host ports, not ask for forbidden sysctls,
//! and not arrive while the node is under a pressure that excludes it. A rejected pod fails
//! at once with upstream's reason and message.

use std::collections::BTreeMap;

use ferrokube_common::quantity::Quantity;
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, Pod};

use crate::eviction::rank::request;

/// Why the node refuses a pod: the pod's status reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

fn reject(reason: impl Into<String>, message: impl Into<String>) -> Rejection {
    Rejection {
        reason: reason.into(),
        message: message.into(),
    }
}

/// The resources a pod asks of the node (requests, plus one `pods`), by name.
fn asks(pod: &Pod) -> BTreeMap<String, i64> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut names: Vec<String> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref())
        .flat_map(|r| r.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let mut out: BTreeMap<String, i64> = names
        .into_iter()
        .map(|n| {
            let v = if n == "cpu" {
                milli(pod, &n)
            } else {
                request(pod, &n)
            };
            (n, v)
        })
        .collect();
    for (name, q) in spec.overhead.iter().flatten() {
        let v = Quantity::parse(&q.0).map_or(0, |q| {
            if name == "cpu" {
                q.milli_value()
            } else {
                q.value()
            }
        });
        *out.entry(name.clone()).or_default() += v;
    }
    out.insert("pods".into(), 1);
    out
}

/// CPU requests in millicores (whole cores would round small requests away).
fn milli(pod: &Pod, name: &str) -> i64 {
    let spec = match pod.spec.as_ref() {
        Some(s) => s,
        None => return 0,
    };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(name))
            .and_then(|q| Quantity::parse(&q.0).ok())
            .map_or(0, |q| q.milli_value())
    };
    let sum: i64 = spec.containers.iter().map(of).sum();
    sum.max(
        spec.init_containers
            .iter()
            .flatten()
            .map(of)
            .max()
            .unwrap_or(0),
    )
}

fn allocatable(node: &Node, name: &str) -> Option<i64> {
    let q = node.status.as_ref()?.allocatable.as_ref()?.get(name)?;
    let q = Quantity::parse(&q.0).ok()?;
    Some(if name == "cpu" {
        q.milli_value()
    } else {
        q.value()
    })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
fn node_matches(pod: &Pod, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    if !spec
        .node_selector
        .unwrap_or_default()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let Some(terms) = spec
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|na| na.required_during_scheduling_ignored_during_execution)
        .map(|r| r.node_selector_terms)
    else {
        return true;
    };
    let name = node.metadata.name.clone().unwrap_or_default();
    terms.iter().any(|t| {
        let exprs = t.match_expressions.iter().flatten();
        let fields = t.match_fields.iter().flatten();
        let any = t.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
            || t.match_fields.as_ref().is_some_and(|f| !f.is_empty());
        any && exprs
            .clone()
            .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .clone()
                .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name.as_str())))
    })
}

fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, hp))
        })
        .collect()
}

fn ports_conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

/// Decides whether the node takes `pod`, given the pods it already admitted.
pub fn admit(
    pod: &Pod,
    node: &Node,
    admitted: &[Pod],
    memory_pressure: bool,
    disk_pressure: bool,
) -> Result<(), Rejection> {
    let mut conditions = Vec::new();
    // Critical pods (static ones, system priorities) come in whatever the pressure.
    let critical = crate::pods::static_pods::is_static(pod)
        || crate::container::resources::is_critical_pod(pod);
    if memory_pressure && !critical && crate::container::qos::pod_qos_class(pod) == "BestEffort" {
        conditions.push("MemoryPressure");
    }
    if disk_pressure && !critical {
        conditions.push("DiskPressure");
    }
    if !conditions.is_empty() {
        return Err(reject(
            "Evicted",
            format!("The node had condition: [{}]. ", conditions.join(", ")),
        ));
    }
    if !node_matches(pod, node) {
        return Err(reject(
            "NodeAffinity",
            "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector",
        ));
    }
    let wanted = host_ports(pod);
    let taken: Vec<_> = admitted.iter().flat_map(host_ports).collect();
    if wanted
        .iter()
        .any(|w| taken.iter().any(|t| ports_conflict(w, t)))
    {
        return Err(reject(
            "NodePorts",
            "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports",
        ));
    }
    let asked = asks(pod);
    for (name, want) in &asked {
        if *want == 0 {
            continue;
        }
        let Some(capacity) = allocatable(node, name) else {
            // An extended resource the node does not have at all.
            if name.contains('/') {
                return Err(reject(
                    format!("OutOf{name}"),
                    format!("Node didn't have enough resource: {name}, requested: {want}, used: 0, capacity: 0"),
                ));
            }
            continue;
        };
        let used: i64 = admitted
            .iter()
            .map(|p| asks(p).get(name).copied().unwrap_or(0))
            .sum();
        if used + want > capacity {
            return Err(reject(
                format!("OutOf{name}"),
                format!("Node didn't have enough resource: {name}, requested: {want}, used: {used}, capacity: {capacity}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"disk": "ssd", "zone": "a"}},
            "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "3"}},
        }))
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn cpu(c: &str) -> Pod {
        pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": c}}}]}))
    }

    #[test]
    fn resources_must_fit_beside_admitted_pods() {
        let n = node();
        assert!(admit(&cpu("1500m"), &n, &[], false, false).is_ok());
        let err = admit(&cpu("1"), &n, &[cpu("1500m")], false, false).unwrap_err();
        assert_eq!(err.reason, "OutOfcpu");
        assert_eq!(
            err.message,
            "Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000"
        );
        let full = vec![cpu("1m"), cpu("1m"), cpu("1m")];
        assert_eq!(
            admit(&cpu("1m"), &n, &full, false, false)
                .unwrap_err()
                .reason,
            "OutOfpods"
        );
    }

    #[test]
    fn selectors_ports_and_pressure() {
        let n = node();
        let sel = pod(json!({"nodeSelector": {"disk": "hdd"}, "containers": [{"name": "c"}]}));
        assert_eq!(
            admit(&sel, &n, &[], false, false).unwrap_err().reason,
            "NodeAffinity"
        );
        let aff = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
        ]}}}, "containers": [{"name": "c"}]}),
        );
        assert!(admit(&aff, &n, &[], false, false).is_ok());
        let port = |ip: &str| {
            pod(
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": ip}]}]}),
            )
        };
        assert_eq!(
            admit(&port(""), &n, &[port("10.0.0.1")], false, false)
                .unwrap_err()
                .reason,
            "NodePorts"
        );
        assert!(admit(&port("10.0.0.2"), &n, &[port("10.0.0.1")], false, false).is_ok());
        let be = pod(json!({"containers": [{"name": "c"}]}));
        let err = admit(&be, &n, &[], true, false).unwrap_err();
        assert_eq!(
            (err.reason.as_str(), err.message.as_str()),
            ("Evicted", "The node had condition: [MemoryPressure]. ")
        );
        assert!(
            admit(&cpu("1m"), &n, &[], true, false).is_ok(),
            "only BestEffort pods are kept out"
        );
    }
}
