//! The scheduling framework: the extension points upstream's plugins implement, and the
//! per-profile runner that calls them in order.

pub mod cycle_state;
pub mod node_info;
pub mod pod_info;
pub mod resource;
pub mod status;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

pub use cycle_state::CycleState;
pub use node_info::NodeInfo;
pub use pod_info::PodInfo;
pub use resource::Resource;
pub use status::{Code, Status};

use crate::cache::Cluster;
use crate::events::ClusterEvent;

/// Scores plugins return lie in [0, MAX_NODE_SCORE] after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Cluster events after which a pod this plugin rejected may now fit, so the queue
    /// moves it out of the unschedulable pods.
    fn events(&self) -> Vec<ClusterEvent> {
        Vec::new()
    }
}

/// Nodes a PreFilter narrowed the search to (`None`: all nodes).
pub type NodeNames = Option<HashSet<String>>;

pub trait PreFilterPlugin: Plugin {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
    ) -> (Status, NodeNames);

    /// Preemption's what-if: `other` is added to `node` in this cycle's state.
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _other: &Arc<PodInfo>,
        _node: &NodeInfo,
        _cluster: &Cluster,
    ) -> Status {
        Status::success()
    }

    /// Preemption's what-if: `other` is removed from `node` in this cycle's state.
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _other: &Arc<PodInfo>,
        _node: &NodeInfo,
        _cluster: &Cluster,
    ) -> Status {
        Status::success()
    }
}

pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// What PostFilter (preemption) decided.
#[derive(Clone, Debug, Default)]
pub struct PostFilterResult {
    /// The node the pod should wait for, recorded as `status.nominatedNodeName`.
    pub nominated_node: Option<String>,
    /// Pods to delete (gracefully, with a DisruptionTarget condition) to make room.
    pub victims: Vec<Arc<Pod>>,
}

/// The outcome of filtering for each node that did not fit.
pub type NodeStatuses = std::collections::HashMap<String, Status>;

pub trait PostFilterPlugin: Plugin {
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        cluster: &Cluster,
        framework: &Framework,
        statuses: &NodeStatuses,
    ) -> (Status, PostFilterResult);
}

pub trait PreScorePlugin: Plugin {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        cluster: &Cluster,
    ) -> Status;
}

pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// Maps raw scores (one per node, in the order of the filtered nodes) into
    /// [0, MAX_NODE_SCORE]. The default leaves them as they are.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) -> Status {
        Status::success()
    }
}

pub trait ReservePlugin: Plugin {
    fn reserve(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
        cluster: &Cluster,
    ) -> Status;
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

/// Runs after the cycle, off the scheduling loop, before Bind.
#[async_trait]
pub trait PreBindPlugin: Plugin {
    async fn pre_bind(&self, state: &CycleState, pod: &Pod, node: &str) -> Status;
}

#[async_trait]
pub trait BindPlugin: Plugin {
    async fn bind(&self, state: &CycleState, pod: &Pod, node: &str) -> Status;
}

/// Admits a pod to the active queue, or holds it (SchedulingGates).
pub trait PreEnqueuePlugin: Plugin {
    fn pre_enqueue(&self, pod: &Pod) -> Status;
}

mod runner;
pub use runner::{Framework, ScoredPlugin};
