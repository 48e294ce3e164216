//! A pod as the scheduler sees it: the object plus what every cycle would otherwise
//! recompute (its requests and its parsed inter-pod affinity terms).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferrokube_common::labels::{LabelSet, Selector};
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use super::resource::{pod_requests, Resource};

/// One parsed pod (anti-)affinity term.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    /// Namespaces named in the term (the pod's own when neither this nor a selector is set).
    pub namespaces: BTreeSet<String>,
    /// Matches namespaces by label; `None` when the term has no namespaceSelector.
    pub namespace_selector: Option<Selector>,
    pub selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn parse(term: &PodAffinityTerm, pod_namespace: &str) -> AffinityTerm {
        let selector = term
            .label_selector
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| Selector::from_label_selector(&v).ok())
            // A missing selector matches no pods, as upstream.
            .unwrap_or_else(Selector::nothing);
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .map(|v| Selector::from_label_selector(&v).unwrap_or_else(|_| Selector::nothing()));
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.insert(pod_namespace.to_string());
        }
        AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` (in a namespace with `ns_labels`) is selected by this term.
    pub fn matches(&self, pod: &Pod, ns_labels: Option<&BTreeMap<String, String>>) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let in_namespace = self.namespaces.contains(ns)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                let empty = BTreeMap::new();
                s.matches(ns_labels.unwrap_or(&empty))
            });
        if !in_namespace {
            return false;
        }
        let empty = BTreeMap::new();
        self.selector
            .matches(pod.metadata.labels.as_ref().unwrap_or(&empty) as &dyn LabelSet)
    }
}

#[derive(Clone, Debug)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// The effective request (see `resource::pod_requests`).
    pub requests: Resource,
    /// The request with upstream's scoring defaults for containers that ask for nothing.
    pub non_zero_requests: Resource,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(t, &ns))
                .collect()
        };
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|t| WeightedAffinityTerm {
                        term: AffinityTerm::parse(&t.pod_affinity_term, &ns),
                        weight: t.weight,
                    })
                    .collect::<Vec<_>>()
            };
        PodInfo {
            requests: pod_requests(&pod, false),
            non_zero_requests: pod_requests(&pod, true),
            required_affinity: required(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            pod,
        }
    }

    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// `namespace/name`, as events and logs name pods.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    pub fn priority(&self) -> i32 {
        self.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
    }

    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}
