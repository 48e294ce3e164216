//! InterPodAffinity: required pod affinity and anti-affinity (Filter), and preferred terms
//! of both the incoming pod and the pods already placed (Score), as upstream's plugin of the
//! same name.
//!
//! PreFilter counts, per topology pair (`key=value` of a node label), the pods relevant to
//! the incoming pod, so Filter is a handful of map lookups per node.

mod filtering;
mod scoring;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::bail;
use ferrokube_common::labels::Selector;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use super::{PluginContext, Registered};
use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::pod_info::AffinityTerm;
use crate::framework::Plugin;

pub const NAME: &str = "InterPodAffinity";

/// Nodes plus pods a cycle's walk must visit before it is split over threads (a few
/// hundred microseconds of work, against tens for starting a thread).
const MIN_COST_PER_THREAD: usize = 4000;

pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";

/// `InterPodAffinityArgs`, after upstream's defaulting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub hard_pod_affinity_weight: i32,
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawArgs {
    // A typed config carries these in the args; they say nothing about the values.
    #[serde(rename = "apiVersion")]
    _api_version: Option<serde::de::IgnoredAny>,
    #[serde(rename = "kind")]
    _kind: Option<serde::de::IgnoredAny>,
    hard_pod_affinity_weight: Option<i32>,
    ignore_preferred_terms_of_existing_pods: Option<bool>,
}

impl Args {
    pub fn parse(args: &serde_json::Value) -> anyhow::Result<Args> {
        if args.is_null() {
            return Ok(Args::default());
        }
        let raw: RawArgs = serde_json::from_value(args.clone())
            .map_err(|e| anyhow::anyhow!("decoding InterPodAffinityArgs: {e}"))?;
        let args = Args {
            hard_pod_affinity_weight: raw.hard_pod_affinity_weight.unwrap_or(1),
            ignore_preferred_terms_of_existing_pods: raw
                .ignore_preferred_terms_of_existing_pods
                .unwrap_or(false),
        };
        let w = args.hard_pod_affinity_weight;
        if !(0..=100).contains(&w) {
            bail!("hardPodAffinityWeight: Invalid value: {w}: not in valid range [0, 100]");
        }
        Ok(args)
    }
}

pub struct InterPodAffinity {
    args: Args,
}

fn events() -> Vec<ClusterEvent> {
    vec![
        // A new pod may satisfy affinity; a deleted or relabelled one may lift anti-affinity.
        ClusterEvent::new(
            EventResource::AssignedPod,
            ActionType::ADD | ActionType::UPDATE_POD_LABEL | ActionType::DELETE,
        ),
        // Without queueing hints upstream also listens for taint updates, since a node that
        // stops being tainted may only then be considered at all.
        ClusterEvent::new(
            EventResource::Node,
            ActionType::ADD | ActionType::UPDATE_NODE_LABEL | ActionType::UPDATE_NODE_TAINT,
        ),
    ]
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        events()
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    build(args)
}

fn build(args: &serde_json::Value) -> anyhow::Result<Registered> {
    let plugin = Arc::new(InterPodAffinity {
        args: Args::parse(args)?,
    });
    Ok(Registered {
        pre_filter: Some(plugin.clone()),
        filter: Some(plugin.clone()),
        pre_score: Some(plugin.clone()),
        score: Some(plugin),
        events: events(),
        ..Default::default()
    })
}

/// One of the incoming pod's terms with its namespaceSelector already resolved against the
/// cluster's namespaces (upstream's `mergeAffinityTermNamespacesIfNotEmpty`), so matching a
/// placed pod needs no namespace label lookup.
#[derive(Debug)]
pub(crate) struct IncomingTerm {
    namespaces: BTreeSet<String>,
    /// The term had an empty namespaceSelector (`{}`): every namespace.
    any_namespace: bool,
    selector: Selector,
    topology_key: String,
    weight: i64,
}

impl IncomingTerm {
    fn resolve(term: &AffinityTerm, weight: i32, cluster: &Cluster) -> IncomingTerm {
        let mut namespaces = term.namespaces.clone();
        let mut any_namespace = false;
        if let Some(sel) = &term.namespace_selector {
            if sel.is_empty() {
                any_namespace = true;
            } else {
                namespaces.extend(
                    cluster
                        .namespaces
                        .iter()
                        .filter(|(_, labels)| sel.matches(*labels))
                        .map(|(name, _)| name.clone()),
                );
            }
        }
        IncomingTerm {
            namespaces,
            any_namespace,
            selector: term.selector.clone(),
            topology_key: term.topology_key.clone(),
            weight: i64::from(weight),
        }
    }

    fn matches(&self, pod: &Pod) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if !self.any_namespace && !self.namespaces.contains(ns) {
            return false;
        }
        match pod.metadata.labels.as_ref() {
            Some(labels) => self.selector.matches(labels),
            None => self.selector.matches(&BTreeMap::<String, String>::new()),
        }
    }
}

/// Upstream's `podMatchesAllAffinityTerms`: false for no terms.
fn matches_all(terms: &[IncomingTerm], pod: &Pod) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod))
}

/// Counts per topology pair, keyed by label key then value so lookups borrow the node's
/// labels instead of building a pair. Entries that drop to zero are removed, as upstream,
/// so "no pair at all" can be told apart.
#[derive(Clone, Debug, Default)]
pub(crate) struct PairCounts(HashMap<String, HashMap<String, i64>>);

impl PairCounts {
    fn add(&mut self, node_labels: &BTreeMap<String, String>, key: &str, delta: i64) {
        let Some(value) = node_labels.get(key) else {
            return;
        };
        if let Some(values) = self.0.get_mut(key) {
            if let Some(n) = values.get_mut(value.as_str()) {
                *n += delta;
                if *n == 0 {
                    values.remove(value.as_str());
                    if values.is_empty() {
                        self.0.remove(key);
                    }
                }
            } else if delta != 0 {
                values.insert(value.clone(), delta);
            }
        } else if delta != 0 {
            self.0
                .insert(key.to_string(), HashMap::from([(value.clone(), delta)]));
        }
    }

    fn merge(&mut self, other: PairCounts) {
        for (key, values) in other.0 {
            match self.0.get_mut(&key) {
                None => {
                    self.0.insert(key, values);
                }
                Some(mine) => {
                    for (value, n) in values {
                        *mine.entry(value).or_insert(0) += n;
                    }
                    mine.retain(|_, n| *n != 0);
                    if mine.is_empty() {
                        self.0.remove(&key);
                    }
                }
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
