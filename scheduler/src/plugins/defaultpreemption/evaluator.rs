//! Upstream's preemption evaluator with DefaultPreemption's choices plugged in: who may
//! preempt, which nodes to dry-run, the victims on each and the node to nominate.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ferrokube_common::labels::Selector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::DefaultPreemptionArgs;
use crate::cache::Cluster;
use crate::framework::{
    Code, CycleState, Framework, NodeInfo, NodeStatuses, PodInfo, PostFilterResult, Status,
};

/// The reason given for nodes the dry run never looked at.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// The reason given for a node with no pod of lower priority than the preemptor.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A node preemption would make room on, with what it costs.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    /// Most important first (see `importance`).
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// A PodDisruptionBudget reduced to what the victim split reads. Budgets whose selector is
/// missing, empty or invalid select no pod and are left out.
#[derive(Clone, Debug)]
pub struct Budget {
    namespace: String,
    selector: Selector,
    allowed: i32,
    /// Pods the API server already counted as disrupted: evicting them again costs nothing.
    disrupted: HashSet<String>,
}

impl Budget {
    pub fn from_pdb(pdb: &PodDisruptionBudget) -> Option<Budget> {
        let raw = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())?;
        let selector = Selector::from_label_selector(&raw).ok()?;
        if selector.is_empty() || selector.matches_nothing() {
            return None;
        }
        let status = pdb.status.as_ref();
        Some(Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector,
            allowed: status.map(|s| s.disruptions_allowed).unwrap_or(0),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        })
    }
}

/// When a pod started, in nanoseconds; pods that have not started count as starting `now`,
/// as upstream's `GetPodStartTime`.
fn start_time(pod: &Pod, now: i128) -> i128 {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_nanosecond())
        .unwrap_or(now)
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Upstream's `MoreImportantPod` as an ordering: higher priority first, then the pod that
/// has been running longer.
fn importance(a: &PodInfo, b: &PodInfo, now: i128) -> Ordering {
    b.priority()
        .cmp(&a.priority())
        .then_with(|| start_time(&a.pod, now).cmp(&start_time(&b.pod, now)))
}

/// Whether the pod is being deleted because the scheduler preempted it.
fn terminating_by_preemption(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_none() {
        return false;
    }
    // Upstream looks at the first DisruptionTarget condition only.
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
        .is_some_and(|c| c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler"))
}

/// Splits victims (in importance order, which both halves keep) into those whose eviction
/// would take a budget below zero and the rest. Budgets are drawn down as the list is
/// walked, so of two pods under a budget allowing one disruption only the second violates.
pub fn split_by_pdb(
    pods: Vec<Arc<PodInfo>>,
    budgets: &[Budget],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.allowed).collect();
    let mut violating = Vec::new();
    let mut fine = Vec::new();
    for pod in pods {
        let mut violates = false;
        // A pod without labels matches no budget.
        if !pod.labels().is_empty() {
            for (i, budget) in budgets.iter().enumerate() {
                if budget.namespace != pod.namespace()
                    || !budget.selector.matches(pod.labels())
                    || budget.disrupted.contains(pod.name())
                {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violates = true;
                }
            }
        }
        if violates {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

/// One PostFilter call: the preemptor and the cluster as this cycle sees them.
pub struct Attempt<'a> {
    pub framework: &'a Framework,
    pub cluster: &'a Cluster,
    pub pod: &'a PodInfo,
    /// Stands in for the start time of pods that have not started (fixed for the call so
    /// comparisons stay consistent).
    pub now: i128,
}

/// A node with some pods taken off, and the cycle state to match.
struct WhatIf {
    node: NodeInfo,
    state: CycleState,
}

impl<'a> Attempt<'a> {
    pub fn new(framework: &'a Framework, cluster: &'a Cluster, pod: &'a PodInfo) -> Attempt<'a> {
        Attempt {
            framework,
            cluster,
            pod,
            now: jiff_now(),
        }
    }

    /// Upstream's `Evaluator.Preempt` with DefaultPreemption's `PostFilter` wrapping.
    /// `offset` picks where among the potential nodes the dry run starts (random in
    /// production), given how many there are.
    pub fn preempt(
        &self,
        state: &CycleState,
        statuses: &NodeStatuses,
        args: &DefaultPreemptionArgs,
        offset: impl FnOnce(usize) -> usize,
    ) -> (Status, PostFilterResult) {
        let keep_nomination = PostFilterResult::default();
        if let Err(why) = self.eligible(statuses) {
            return (
                Status::unschedulable(format!("preemption: {why}")),
                keep_nomination,
            );
        }

        let all_nodes: Vec<&Arc<NodeInfo>> = self
            .cluster
            .nodes()
            .iter()
            .filter(|n| n.node.is_some())
            .collect();
        if all_nodes.is_empty() {
            return (
                Status::error("preemption: no nodes available"),
                keep_nomination,
            );
        }
        // Nodes whose filters said Unschedulable may fit once pods are gone; nodes without a
        // status were never filtered (PreFilter narrowed them out) and count as unresolvable,
        // as upstream's default for absent nodes.
        let potential: Vec<&Arc<NodeInfo>> = all_nodes
            .iter()
            .copied()
            .filter(|n| statuses.get(&n.name).map(|s| s.code) == Some(Code::Unschedulable))
            .collect();

        let (candidates, node_statuses, errors) = if potential.is_empty() {
            (Vec::new(), NodeStatuses::new(), Vec::new())
        } else {
            let budgets: Vec<Budget> = self
                .cluster
                .pdbs
                .values()
                .filter_map(|p| Budget::from_pdb(p))
                .collect();
            let start = offset(potential.len()) % potential.len();
            let wanted = args.num_candidates(potential.len());
            self.dry_run(state, &potential, &budgets, start, wanted)
        };

        if candidates.is_empty() {
            if !errors.is_empty() {
                return (
                    Status::error(format!("preemption: {}", aggregate(&errors))),
                    keep_nomination,
                );
            }
            let clear_nomination = PostFilterResult {
                nominated_node: Some(String::new()),
                victims: Vec::new(),
            };
            return (
                Status::unschedulable(format!(
                    "preemption: {}",
                    no_fit_message(all_nodes.len(), &node_statuses)
                )),
                clear_nomination,
            );
        }

        let Some(best) = self.pick(&candidates) else {
            return (
                Status::unschedulable("preemption: no candidate node for preemption"),
                keep_nomination,
            );
        };
        (
            Status::success(),
            PostFilterResult {
                nominated_node: Some(best.node.clone()),
                victims: best.victims.iter().map(|v| v.pod.clone()).collect(),
            },
        )
    }

    /// Upstream's `PodEligibleToPreemptOthers`.
    pub fn eligible(&self, statuses: &NodeStatuses) -> Result<(), &'static str> {
        let pod = &self.pod.pod;
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.preemption_policy.as_deref())
            == Some("Never")
        {
            return Err("not eligible due to preemptionPolicy=Never.");
        }
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .unwrap_or_default();
        if nominated.is_empty() {
            return Ok(());
        }
        // A nominated node that can no longer take the pod anyway is no reason to wait.
        let code = statuses
            .get(nominated)
            .map(|s| s.code)
            .unwrap_or(Code::UnschedulableAndUnresolvable);
        if code == Code::UnschedulableAndUnresolvable {
            return Ok(());
        }
        // Victims of an earlier preemption still terminating there: wait for them rather
        // than evict more pods.
        let mine = self.pod.priority();
        let waiting = self
            .cluster
            .node(nominated)
            .filter(|n| n.node.is_some())
            .is_some_and(|n| {
                n.pods
                    .iter()
                    .any(|p| p.priority() < mine && terminating_by_preemption(&p.pod))
            });
        if waiting {
            return Err("not eligible due to a terminating pod on the nominated node.");
        }
        Ok(())
    }

    /// Upstream's `DryRunPreemption`, run in order from `start` instead of in parallel:
    /// looks for `wanted` candidates, stopping once it has that many and at least one
    /// violates no budget. Candidates that violate none come first. Also returns why each
    /// node that was tried and is no candidate failed, and the errors among those.
    pub fn dry_run(
        &self,
        state: &CycleState,
        potential: &[&Arc<NodeInfo>],
        budgets: &[Budget],
        start: usize,
        wanted: usize,
    ) -> (Vec<Candidate>, NodeStatuses, Vec<String>) {
        let mut fine: Vec<Candidate> = Vec::new();
        let mut violating: Vec<Candidate> = Vec::new();
        let mut statuses = NodeStatuses::new();
        let mut errors = Vec::new();
        for i in 0..potential.len() {
            let node = potential[(start + i) % potential.len()];
            let failed = match self.select_victims(state, node, budgets) {
                Ok((victims, _)) if victims.is_empty() => Status::error(format!(
                    "expected at least one victim pod on node {:?}",
                    node.name
                )),
                Ok((victims, pdb_violations)) => {
                    let c = Candidate {
                        node: node.name.clone(),
                        victims,
                        pdb_violations,
                    };
                    // Upstream's candidate lists hold `wanted` each and drop the overflow.
                    let list = if pdb_violations == 0 {
                        &mut fine
                    } else {
                        &mut violating
                    };
                    if list.len() < wanted {
                        list.push(c);
                    }
                    if !fine.is_empty() && fine.len() + violating.len() >= wanted {
                        break;
                    }
                    continue;
                }
                Err(s) => s,
            };
            if failed.code == Code::Error {
                errors.push(failed.to_string());
            }
            statuses.insert(node.name.clone(), failed);
        }
        fine.append(&mut violating);
        (fine, statuses, errors)
    }

    /// Upstream's `SelectVictimsOnNode`: the fewest pods to evict for the preemptor to fit,
    /// most important first, and how many of them violate a budget.
    pub fn select_victims(
        &self,
        state: &CycleState,
        node: &NodeInfo,
        budgets: &[Budget],
    ) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
        let mut w = WhatIf {
            node: node.clone(),
            state: state.clone(),
        };
        let mine = self.pod.priority();
        let mut potential: Vec<Arc<PodInfo>> = w
            .node
            .pods
            .iter()
            .filter(|p| p.priority() < mine)
            .cloned()
            .collect();
        for p in &potential {
            self.remove(&mut w, p)?;
        }
        if potential.is_empty() {
            return Err(Status::unresolvable(NO_VICTIMS));
        }
        // Removing every lower-priority pod is the best preemption can do on this node.
        let s = self.filter(&w);
        if !s.is_success() {
            return Err(s);
        }

        potential.sort_by(|a, b| importance(a, b, self.now));
        // Give back as many pods as still leave room, budget-protected ones first, each
        // group from the most important down.
        let (violating, fine) = split_by_pdb(potential, budgets);
        let mixed = !violating.is_empty() && !fine.is_empty();
        let mut victims = Vec::new();
        let mut pdb_violations = 0;
        for p in violating {
            if !self.reprieve(&mut w, &p)? {
                victims.push(p);
                pdb_violations += 1;
            }
        }
        for p in fine {
            if !self.reprieve(&mut w, &p)? {
                victims.push(p);
            }
        }
        if mixed {
            victims.sort_by(|a, b| importance(a, b, self.now));
        }
        Ok((victims, pdb_violations))
    }

    /// Puts `p` back on the node; takes it off again (false) when the preemptor then no
    /// longer fits.
    fn reprieve(&self, w: &mut WhatIf, p: &Arc<PodInfo>) -> Result<bool, Status> {
        self.add(w, p)?;
        if self.filter(w).is_success() {
            return Ok(true);
        }
        self.remove(w, p)?;
        Ok(false)
    }

    fn filter(&self, w: &WhatIf) -> Status {
        self.framework.run_filter_with_nominated(
            &w.state,
            self.pod,
            &w.node,
            self.cluster.nominated_on(&w.node.name),
            self.cluster,
        )
    }

    fn remove(&self, w: &mut WhatIf, p: &Arc<PodInfo>) -> Result<(), Status> {
        if !w.node.remove_pod(p.uid()) {
            return Err(Status::error(format!(
                "no corresponding pod {} in pods of node {}",
                p.name(),
                w.node.name
            )));
        }
        for plugin in &self.framework.pre_filter {
            if w.state.skip_filter.contains(&plugin.name()) {
                continue;
            }
            let s = plugin.remove_pod(&mut w.state, self.pod, p, &w.node, self.cluster);
            if !s.is_success() {
                return Err(Status::error(format!(
                    "running RemovePod on PreFilter plugin {:?}: {s}",
                    plugin.name()
                )));
            }
        }
        Ok(())
    }

    fn add(&self, w: &mut WhatIf, p: &Arc<PodInfo>) -> Result<(), Status> {
        w.node.add_pod(p.clone());
        for plugin in &self.framework.pre_filter {
            if w.state.skip_filter.contains(&plugin.name()) {
                continue;
            }
            let s = plugin.add_pod(&mut w.state, self.pod, p, &w.node, self.cluster);
            if !s.is_success() {
                return Err(Status::error(format!(
                    "running AddPod on PreFilter plugin {:?}: {s}",
                    plugin.name()
                )));
            }
        }
        Ok(())
    }

    /// Upstream's `pickOneNodeForPreemption`: each criterion in turn narrows the field to
    /// the best scorers until one node is left; then the first of them.
    pub fn pick<'c>(&self, candidates: &'c [Candidate]) -> Option<&'c Candidate> {
        let now = self.now;
        let criteria: [&dyn Fn(&Candidate) -> i128; 5] = [
            // Fewest budget violations.
            &|c| -(c.pdb_violations as i128),
            // Lowest priority among the most important victims.
            &|c| -i128::from(c.victims.first().map(|v| v.priority()).unwrap_or(i32::MIN)),
            // Smallest sum of priorities, each shifted to be non-negative so that many
            // negative-priority victims do not look cheaper than few.
            &|c| {
                -c.victims
                    .iter()
                    .map(|v| i128::from(v.priority()) + i128::from(i32::MAX) + 1)
                    .sum::<i128>()
            },
            // Fewest victims.
            &|c| -(c.victims.len() as i128),
            // Latest start among the highest-priority victims: evict what has run least.
            &|c| earliest_top_priority_start(&c.victims, now),
        ];
        let mut field: Vec<&Candidate> = candidates.iter().collect();
        for score in criteria {
            if field.len() <= 1 {
                break;
            }
            let best = field.iter().map(|c| score(c)).max()?;
            field.retain(|c| score(c) == best);
        }
        field.first().copied()
    }
}

/// The earliest start time among the victims with the highest priority (upstream's
/// `GetEarliestPodStartTime`).
fn earliest_top_priority_start(victims: &[Arc<PodInfo>], now: i128) -> i128 {
    let Some(top) = victims.iter().map(|v| priority(&v.pod)).max() else {
        return i128::MIN;
    };
    victims
        .iter()
        .filter(|v| priority(&v.pod) == top)
        .map(|v| start_time(&v.pod, now))
        .min()
        .unwrap_or(i128::MIN)
}

/// Upstream's `FitError` text for the nodes of a preemption that found no candidate:
/// `0/N nodes are available: <count> <reason>, ...` with the reasons sorted as strings and
/// every node without a status counted as "not helpful".
pub fn no_fit_message(all_nodes: usize, statuses: &NodeStatuses) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for status in statuses.values() {
        for reason in &status.reasons {
            *counts.entry(reason.as_str()).or_default() += 1;
        }
    }
    if statuses.len() < all_nodes {
        *counts.entry(NOT_HELPFUL).or_default() += all_nodes - statuses.len();
    }
    let mut reasons: Vec<String> = counts
        .into_iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    reasons.sort();
    let mut msg = format!("0/{all_nodes} nodes are available:");
    if !reasons.is_empty() {
        msg += &format!(" {}.", reasons.join(", "));
    }
    msg
}

/// Several errors as upstream's aggregate prints them: repeats dropped, brackets around
/// more than one.
fn aggregate(errors: &[String]) -> String {
    let mut seen = HashSet::new();
    let distinct: Vec<&str> = errors
        .iter()
        .map(String::as_str)
        .filter(|e| seen.insert(*e))
        .collect();
    match distinct.as_slice() {
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn jiff_now() -> i128 {
    k8s_openapi::jiff::Timestamp::now().as_nanosecond()
}
