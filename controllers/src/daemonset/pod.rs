//! Daemon pods: stamped from the template for one node, and which node a pod is for.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::eligibility;
use crate::shared::{history, pods};

/// The label upstream still stamps with the DaemonSet's generation.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The template's pod spec with the daemon tolerations, as eligibility is judged on.
pub fn judged_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    eligibility::add_daemon_tolerations(&mut spec);
    spec
}

/// A pod for `node`, pinned to it through required node affinity on `metadata.name` (so the
/// scheduler binds it there), carrying the revision hash.
pub fn for_node(ds: &DaemonSet, node: &str, hash: &str, owner: OwnerReference) -> Pod {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let template = ds.spec.clone().unwrap_or_default().template;
    let mut pod = pods::from_template(&template, &ns, owner, &pods::generate_name_prefix(&name));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(history::REVISION_LABEL.to_string(), hash.to_string());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.to_string(), g.to_string());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    eligibility::add_daemon_tolerations(spec);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    });
    pod
}

/// The node a daemon pod is on or is meant for: its nodeName once bound, else the node its
/// affinity pins it to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|r| {
            let values = r.values.as_deref()?;
            (r.key == "metadata.name" && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}
