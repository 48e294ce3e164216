//! DefaultPreemption: upstream's PostFilter plugin. When no node fits a pod, it looks for a
//! node where evicting lower-priority pods would make room, picks the victims and the node
//! as upstream's preemption evaluator does, and hands them back in a `PostFilterResult`.
//!
//! The API side effects (the DisruptionTarget condition and deletion of the victims,
//! `status.nominatedNodeName` on the preemptor, clearing the nominations of lower-priority
//! pods on the chosen node, see [`lower_priority_nominated`]) belong to the scheduling loop.

mod args;
mod evaluator;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use args::DefaultPreemptionArgs;

use super::{PluginContext, Registered};
use crate::cache::Cluster;
use crate::framework::{
    CycleState, Framework, NodeStatuses, Plugin, PodInfo, PostFilterPlugin, PostFilterResult,
    Status,
};

pub const NAME: &str = "DefaultPreemption";

pub struct DefaultPreemption {
    args: DefaultPreemptionArgs,
}

impl DefaultPreemption {
    pub fn new(args: DefaultPreemptionArgs) -> DefaultPreemption {
        DefaultPreemption { args }
    }

    pub fn args(&self) -> &DefaultPreemptionArgs {
        &self.args
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    let args = DefaultPreemptionArgs::from_value(args)?;
    Ok(Registered {
        post_filter: Some(Arc::new(DefaultPreemption::new(args))),
        ..Default::default()
    })
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilterPlugin for DefaultPreemption {
    /// Success: `nominated_node` is the chosen node and `victims` the pods to evict.
    /// Unschedulable with `nominated_node == Some("")`: preemption cannot help, and the pod's
    /// nomination is to be cleared (upstream's `NewPostFilterResultWithNominatedNode("")`).
    /// Unschedulable or Error with `nominated_node == None`: leave the nomination as it is.
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
        framework: &Framework,
        statuses: &NodeStatuses,
    ) -> (Status, PostFilterResult) {
        let attempt = evaluator::Attempt::new(framework, cluster, pod);
        attempt.preempt(state, statuses, &self.args, |n| rand::random_range(0..n))
    }
}

/// Pods nominated to `node` with a priority below `priority`: once a preemptor is nominated
/// there they may no longer fit, so their nomination is cleared and they go back to the
/// queue to look elsewhere sooner (upstream's `getLowerPriorityNominatedPods`).
pub fn lower_priority_nominated(cluster: &Cluster, node: &str, priority: i32) -> Vec<Arc<PodInfo>> {
    cluster
        .nominated_on(node)
        .iter()
        .filter(|p| p.priority() < priority)
        .cloned()
        .collect()
}
