//! Pod QoS classes, as upstream's `pkg/apis/core/v1/helper/qos` computes them.

use std::collections::BTreeMap;

use ferrokube_common::quantity::Quantity;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

pub const GUARANTEED: &str = "Guaranteed";
pub const BURSTABLE: &str = "Burstable";
pub const BEST_EFFORT: &str = "BestEffort";

/// Only these take part in QoS; extended resources and hugepages do not.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// A quantity from the API. Anything that does not parse could not have come through the
/// apiserver; it counts as absent rather than failing the whole pod.
pub(crate) fn parse_quantity(q: &ApiQuantity) -> Option<Quantity> {
    Quantity::parse(&q.0).ok()
}

/// The QoS class the pod's resources give it (upstream's `ComputePodQOS`), init containers
/// included: BestEffort when no container sets a cpu or memory request or limit, Guaranteed when
/// every container has cpu and memory limits and the summed requests equal the summed limits,
/// Burstable otherwise.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in all {
        let resources = container.resources.as_ref();
        for (name, q) in resources
            .and_then(|r| r.requests.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(name) = QOS_RESOURCES.iter().find(|r| **r == name.as_str()) else {
                continue;
            };
            if let Some(q) = parse_quantity(q).filter(|q| q.sign() > 0) {
                *requests.entry(name).or_default() += q;
            }
        }
        let mut limits_found = 0;
        for (name, q) in resources
            .and_then(|r| r.limits.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(name) = QOS_RESOURCES.iter().find(|r| **r == name.as_str()) else {
                continue;
            };
            if let Some(q) = parse_quantity(q).filter(|q| q.sign() > 0) {
                limits_found += 1;
                *limits.entry(name).or_default() += q;
            }
        }
        if limits_found < QOS_RESOURCES.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return BEST_EFFORT;
    }
    if guaranteed
        && requests
            .iter()
            .all(|(name, req)| limits.get(name) == Some(req))
        && requests.len() == limits.len()
    {
        return GUARANTEED;
    }
    BURSTABLE
}

/// The pod's QoS class as upstream's `GetPodQOS` reads it: the class recorded in the status
/// (fixed at creation, so in-place resizes do not move a pod between cgroups), or computed.
pub fn pod_qos_class(pod: &Pod) -> &'static str {
    let recorded = pod.status.as_ref().and_then(|s| s.qos_class.as_deref());
    match recorded {
        Some(GUARANTEED) => GUARANTEED,
        Some(BURSTABLE) => BURSTABLE,
        Some(BEST_EFFORT) => BEST_EFFORT,
        _ => pod.spec.as_ref().map(qos_class).unwrap_or(BEST_EFFORT),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodStatus, ResourceRequirements};

    pub(crate) fn resources(
        requests: &[(&str, &str)],
        limits: &[(&str, &str)],
    ) -> ResourceRequirements {
        let list = |items: &[(&str, &str)]| {
            (!items.is_empty()).then(|| {
                items
                    .iter()
                    .map(|(k, v)| (k.to_string(), ApiQuantity(v.to_string())))
                    .collect()
            })
        };
        ResourceRequirements {
            requests: list(requests),
            limits: list(limits),
            ..Default::default()
        }
    }

    pub(crate) fn container(
        name: &str,
        requests: &[(&str, &str)],
        limits: &[(&str, &str)],
    ) -> Container {
        Container {
            name: name.into(),
            resources: Some(resources(requests, limits)),
            ..Default::default()
        }
    }

    fn spec(containers: Vec<Container>, init: Vec<Container>) -> PodSpec {
        PodSpec {
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            ..Default::default()
        }
    }

    // Cases from upstream's qos_test.go.
    #[test]
    fn upstream_cases() {
        let cpu_mem = [("cpu", "100m"), ("memory", "100Mi")];
        let cases: Vec<(PodSpec, &str)> = vec![
            (spec(vec![container("a", &[], &[])], vec![]), BEST_EFFORT),
            (
                spec(
                    vec![container("a", &[], &[]), container("b", &[], &[])],
                    vec![],
                ),
                BEST_EFFORT,
            ),
            (
                spec(vec![container("a", &cpu_mem, &cpu_mem)], vec![]),
                GUARANTEED,
            ),
            (
                spec(
                    vec![
                        container("a", &cpu_mem, &cpu_mem),
                        container("b", &cpu_mem, &cpu_mem),
                    ],
                    vec![],
                ),
                GUARANTEED,
            ),
            // Extended resources do not count.
            (
                spec(
                    vec![container(
                        "a",
                        &[
                            ("cpu", "100m"),
                            ("memory", "100Mi"),
                            ("nvidia.com/gpu", "2"),
                        ],
                        &[
                            ("cpu", "100m"),
                            ("memory", "100Mi"),
                            ("nvidia.com/gpu", "2"),
                        ],
                    )],
                    vec![],
                ),
                GUARANTEED,
            ),
            (
                spec(
                    vec![container(
                        "a",
                        &[("nvidia.com/gpu", "2")],
                        &[("nvidia.com/gpu", "2")],
                    )],
                    vec![],
                ),
                BEST_EFFORT,
            ),
            (
                spec(
                    vec![container("a", &cpu_mem, &cpu_mem), container("b", &[], &[])],
                    vec![],
                ),
                BURSTABLE,
            ),
            (
                spec(
                    vec![container("a", &[("cpu", "100m")], &[("cpu", "100m")])],
                    vec![],
                ),
                BURSTABLE,
            ),
            (
                spec(
                    vec![container(
                        "a",
                        &[("cpu", "100m"), ("memory", "100Mi")],
                        &[("cpu", "200m"), ("memory", "100Mi")],
                    )],
                    vec![],
                ),
                BURSTABLE,
            ),
            // Equal values written differently are equal.
            (
                spec(
                    vec![container(
                        "a",
                        &[("cpu", "0.1"), ("memory", "1Gi")],
                        &[("cpu", "100m"), ("memory", "1073741824")],
                    )],
                    vec![],
                ),
                GUARANTEED,
            ),
            // Init containers count: a best-effort init container makes the pod burstable.
            (
                spec(
                    vec![container("a", &cpu_mem, &cpu_mem)],
                    vec![container("i", &[], &[])],
                ),
                BURSTABLE,
            ),
            (
                spec(
                    vec![container("a", &[], &[])],
                    vec![container("i", &cpu_mem, &cpu_mem)],
                ),
                BURSTABLE,
            ),
            (
                spec(
                    vec![container("a", &cpu_mem, &cpu_mem)],
                    vec![container("i", &cpu_mem, &cpu_mem)],
                ),
                GUARANTEED,
            ),
            // Zero quantities are ignored.
            (
                spec(
                    vec![container("a", &[("cpu", "0")], &[("memory", "0")])],
                    vec![],
                ),
                BEST_EFFORT,
            ),
            // Limits only: requests default to limits in the apiserver, but here they were not.
            (spec(vec![container("a", &[], &cpu_mem)], vec![]), BURSTABLE),
        ];
        for (i, (spec, want)) in cases.iter().enumerate() {
            assert_eq!(qos_class(spec), *want, "case {i}");
        }
    }

    #[test]
    fn recorded_class_wins() {
        let pod = Pod {
            spec: Some(spec(vec![container("a", &[], &[])], vec![])),
            status: Some(PodStatus {
                qos_class: Some("Burstable".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pod_qos_class(&pod), BURSTABLE);
    }
}
