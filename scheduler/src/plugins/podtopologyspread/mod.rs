//! PodTopologySpread: spreads pods matching a selector evenly across topology domains, as
//! upstream's plugin of the same name. `DoNotSchedule` constraints filter, `ScheduleAnyway`
//! constraints score; pods without constraints get the profile's default ones, selecting
//! the pods of the same Services and controller.

mod filtering;
mod scoring;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrokube_common::labels::{validate_qualified_name, Selector};
use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use serde::Deserialize;

use super::helpers::{first_untolerated, pod_requires_node, taints, tolerations};
use super::{PluginContext, Registered};
use crate::cache::Cluster;
use crate::events::{ActionType, ClusterEvent, EventResource};
use crate::framework::{Plugin, PodInfo};

pub const NAME: &str = "PodTopologySpread";

/// Nodes plus pods a cycle's walk must visit before it is split over threads (a few
/// hundred microseconds of work, against tens for starting a thread).
const MIN_COST_PER_THREAD: usize = 4000;

pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
const SYSTEM_DEFAULTING: &str = "System";
const LIST_DEFAULTING: &str = "List";

/// One constraint of the pod (or a default one), with its selector parsed and upstream's
/// defaults for the optional fields applied.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Selector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

/// Which nodes count for a constraint, decided once per node and shared by its constraints
/// (the policy checks are the costly part).
struct NodeEligibility<'a> {
    pod: &'a Pod,
    node: &'a Node,
    affinity: Option<bool>,
    taints: Option<bool>,
}

impl<'a> NodeEligibility<'a> {
    fn new(pod: &'a Pod, node: &'a Node) -> Self {
        NodeEligibility {
            pod,
            node,
            affinity: None,
            taints: None,
        }
    }

    /// Upstream's `matchNodeInclusionPolicies`.
    fn admits(&mut self, c: &Constraint) -> bool {
        let (pod, node) = (self.pod, self.node);
        if c.honor_node_affinity
            && !*self
                .affinity
                .get_or_insert_with(|| pod_requires_node(pod, node))
        {
            return false;
        }
        if c.honor_node_taints {
            let tolerated = *self.taints.get_or_insert_with(|| {
                first_untolerated(taints(node), tolerations(pod), |t| {
                    t.effect == "NoSchedule" || t.effect == "NoExecute"
                })
                .is_none()
            });
            if !tolerated {
                return false;
            }
        }
        true
    }
}

/// Whether the node has every constraint's topology key.
fn has_all_keys(labels: &BTreeMap<String, String>, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// Upstream's `countPodsMatchSelector`: terminating pods and other namespaces don't count,
/// and an empty selector counts nothing.
fn count_matching(pods: &[Arc<PodInfo>], selector: &Selector, namespace: &str) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    pods.iter()
        .filter(|p| {
            p.namespace() == namespace
                && p.pod.metadata.deletion_timestamp.is_none()
                && selector.matches(p.labels())
        })
        .count() as i64
}

/// `PodTopologySpreadArgs`, after upstream's defaulting and validation.
#[derive(Clone, Debug)]
pub struct Args {
    pub default_constraints: Vec<TopologySpreadConstraint>,
    pub system_defaulted: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawArgs {
    // A typed config carries these in the args; they say nothing about the values.
    #[serde(rename = "apiVersion")]
    _api_version: Option<serde::de::IgnoredAny>,
    #[serde(rename = "kind")]
    _kind: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    default_constraints: Vec<RawConstraint>,
    #[serde(default)]
    defaulting_type: String,
}

/// Lenient about missing fields so that validation, not decoding, reports them.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawConstraint {
    #[serde(default)]
    max_skew: i32,
    #[serde(default)]
    topology_key: String,
    #[serde(default)]
    when_unsatisfiable: String,
    label_selector: Option<serde_json::Value>,
    min_domains: Option<i32>,
    node_affinity_policy: Option<String>,
    node_taints_policy: Option<String>,
    match_label_keys: Option<Vec<String>>,
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl Args {
    pub fn parse(args: &serde_json::Value) -> anyhow::Result<Args> {
        let raw: RawArgs = if args.is_null() {
            RawArgs::default()
        } else {
            serde_json::from_value(args.clone())
                .map_err(|e| anyhow::anyhow!("decoding PodTopologySpreadArgs: {e}"))?
        };
        let defaulting = if raw.defaulting_type.is_empty() {
            SYSTEM_DEFAULTING.to_string()
        } else {
            raw.defaulting_type
        };

        let mut errs = Vec::new();
        if defaulting != SYSTEM_DEFAULTING && defaulting != LIST_DEFAULTING {
            errs.push(format!(
                "defaultingType: Unsupported value: {}: supported values: \"{SYSTEM_DEFAULTING}\", \"{LIST_DEFAULTING}\"",
                quote(&defaulting)
            ));
        } else if defaulting == SYSTEM_DEFAULTING && !raw.default_constraints.is_empty() {
            errs.push(format!(
                "defaultingType: Invalid value: {}: when .defaultConstraints are not empty",
                quote(&defaulting)
            ));
        }
        for (i, c) in raw.default_constraints.iter().enumerate() {
            let p = format!("defaultConstraints[{i}]");
            if c.max_skew <= 0 {
                errs.push(format!(
                    "{p}.maxSkew: Invalid value: {}: not in valid range (0, inf)",
                    c.max_skew
                ));
            }
            if c.topology_key.is_empty() {
                errs.push(format!("{p}.topologyKey: Required value: can not be empty"));
            } else {
                for msg in validate_qualified_name(&c.topology_key) {
                    errs.push(format!(
                        "{p}.topologyKey: Invalid value: {}: {msg}",
                        quote(&c.topology_key)
                    ));
                }
            }
            match c.when_unsatisfiable.as_str() {
                "" => errs.push(format!(
                    "{p}.whenUnsatisfiable: Required value: can not be empty"
                )),
                DO_NOT_SCHEDULE | SCHEDULE_ANYWAY => {}
                other => errs.push(format!(
                    "{p}.whenUnsatisfiable: Unsupported value: {}: supported values: \"{DO_NOT_SCHEDULE}\", \"{SCHEDULE_ANYWAY}\"",
                    quote(other)
                )),
            }
            if c.label_selector.as_ref().is_some_and(|s| !s.is_null()) {
                errs.push(format!(
                    "{p}.labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"
                ));
            }
            let repeated = raw.default_constraints[..i].iter().any(|o| {
                o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
            });
            if repeated {
                errs.push(format!(
                    "{p}: Duplicate value: {}",
                    quote(&format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable))
                ));
            }
        }
        match errs.len() {
            0 => {}
            1 => anyhow::bail!("{}", errs[0]),
            _ => anyhow::bail!("[{}]", errs.join(", ")),
        }

        let system_defaulted = defaulting == SYSTEM_DEFAULTING;
        let default_constraints = if system_defaulted {
            system_default_constraints()
        } else {
            raw.default_constraints
                .into_iter()
                .map(|c| TopologySpreadConstraint {
                    max_skew: c.max_skew,
                    topology_key: c.topology_key,
                    when_unsatisfiable: c.when_unsatisfiable,
                    label_selector: None,
                    min_domains: c.min_domains,
                    node_affinity_policy: c.node_affinity_policy,
                    node_taints_policy: c.node_taints_policy,
                    match_label_keys: c.match_label_keys,
                })
                .collect()
        };
        Ok(Args {
            default_constraints,
            system_defaulted,
        })
    }
}

/// Upstream's `systemDefaultConstraints`.
fn system_default_constraints() -> Vec<TopologySpreadConstraint> {
    let soft = |key: &str, max_skew: i32| TopologySpreadConstraint {
        max_skew,
        topology_key: key.to_string(),
        when_unsatisfiable: SCHEDULE_ANYWAY.to_string(),
        ..Default::default()
    };
    vec![soft(LABEL_HOSTNAME, 3), soft(LABEL_ZONE, 5)]
}

pub struct PodTopologySpread {
    args: Args,
}

impl PodTopologySpread {
    /// The pod's own constraints for `action`, or the defaults when it has none of any kind.
    fn constraints(
        &self,
        pod: &PodInfo,
        cluster: &Cluster,
        action: &str,
    ) -> Result<Vec<Constraint>, String> {
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        if !own.is_empty() {
            return parse_constraints(own, pod.labels(), action);
        }
        let mut constraints =
            parse_constraints(&self.args.default_constraints, pod.labels(), action)?;
        if constraints.is_empty() {
            return Ok(constraints);
        }
        let selector = default_selector(&pod.pod, cluster);
        if selector.is_empty() {
            return Ok(Vec::new());
        }
        for c in &mut constraints {
            c.selector = selector.clone();
        }
        Ok(constraints)
    }
}

/// Upstream's `filterTopologySpreadConstraints`: the constraints for `action`, with
/// matchLabelKeys turned into requirements on the pod's own values.
fn parse_constraints(
    list: &[TopologySpreadConstraint],
    pod_labels: &BTreeMap<String, String>,
    action: &str,
) -> Result<Vec<Constraint>, String> {
    let mut out = Vec::new();
    for c in list.iter().filter(|c| c.when_unsatisfiable == action) {
        let mut selector = match &c.label_selector {
            None => Selector::nothing(),
            Some(ls) => serde_json::to_value(ls)
                .map_err(|e| e.to_string())
                .and_then(|v| Selector::from_label_selector(&v).map_err(|e| e.to_string()))?,
        };
        let keyed: BTreeMap<&String, &String> = c
            .match_label_keys
            .iter()
            .flatten()
            .filter_map(|k| pod_labels.get_key_value(k))
            .collect();
        // A selector that matches nothing stays so, as upstream (it has no requirements to
        // carry over).
        if !keyed.is_empty() && !selector.matches_nothing() {
            selector = Selector::from_set(keyed).add_requirements(selector.requirements().to_vec());
        }
        out.push(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c
                .node_affinity_policy
                .as_deref()
                .is_none_or(|p| p == "Honor"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        });
    }
    Ok(out)
}

/// Upstream's `helper.DefaultSelector`: the selectors of the Services selecting the pod,
/// and of the ReplicationController, ReplicaSet or StatefulSet controlling it.
fn default_selector(pod: &Pod, cluster: &Cluster) -> Selector {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let Some(owners) = cluster.owner_selectors.get(ns) else {
        return Selector::everything();
    };
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&EMPTY);
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    let mut requirements = Vec::new();
    for o in owners {
        let Some((kind, name)) = o.owner.split_once('/') else {
            continue;
        };
        let selected = match kind {
            "Service" => o.selector.matches(labels),
            "ReplicationController" | "ReplicaSet" | "StatefulSet" => {
                let api_version = if kind == "ReplicationController" {
                    "v1"
                } else {
                    "apps/v1"
                };
                controller.is_some_and(|r| {
                    r.kind == kind && r.name == name && r.api_version == api_version
                })
            }
            _ => false,
        };
        if selected && !o.selector.matches_nothing() {
            requirements.extend(o.selector.requirements().iter().cloned());
        }
    }
    Selector::everything().add_requirements(requirements)
}

fn events() -> Vec<ClusterEvent> {
    vec![
        ClusterEvent::new(
            EventResource::AssignedPod,
            ActionType::ADD | ActionType::UPDATE_POD_LABEL | ActionType::DELETE,
        ),
        // Nodes coming, going or changing labels change the domains; a taint change matters
        // to constraints with nodeTaintsPolicy Honor.
        ClusterEvent::new(
            EventResource::Node,
            ActionType::ADD
                | ActionType::DELETE
                | ActionType::UPDATE_NODE_LABEL
                | ActionType::UPDATE_NODE_TAINT,
        ),
    ]
}

impl Plugin for PodTopologySpread {
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
    let plugin = Arc::new(PodTopologySpread {
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
