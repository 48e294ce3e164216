//! Watches that feed the scheduling loop: every object the cache or a plugin reads arrives
//! as an `Input` on one channel, so the loop is the cache's only writer.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;

use crate::framework::{CycleState, PodInfo, Status};

pub use ferrokube_component::informer::Change;

pub enum Input {
    Node(Change<Node>),
    Pod(Change<Pod>),
    Pvc(Change<PersistentVolumeClaim>),
    Pv(Change<PersistentVolume>),
    StorageClass(Change<StorageClass>),
    CsiNode(Change<CSINode>),
    Namespace(Change<Namespace>),
    Pdb(Change<PodDisruptionBudget>),
    Service(Change<Service>),
    ReplicaSet(Change<ReplicaSet>),
    ReplicationController(Change<ReplicationController>),
    StatefulSet(Change<StatefulSet>),
    /// A binding task finished.
    Bound(Box<BindOutcome>),
}

pub struct BindOutcome {
    pub pod: Arc<PodInfo>,
    pub node: String,
    pub profile: String,
    pub state: CycleState,
    pub status: Status,
}

fn spawn<K>(api: Api<K>, tx: UnboundedSender<Input>, wrap: fn(Change<K>) -> Input)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    ferrokube_component::informer::spawn(api, watcher::Config::default(), tx, wrap);
}

/// How many watches `start` opens: the loop waits for that many initial lists.
pub const WATCHES: usize = 12;

pub fn start(client: &kube::Client, tx: &UnboundedSender<Input>) {
    let c = || client.clone();
    let t = || tx.clone();
    spawn(Api::<Node>::all(c()), t(), Input::Node);
    spawn(Api::<Pod>::all(c()), t(), Input::Pod);
    spawn(Api::<PersistentVolumeClaim>::all(c()), t(), Input::Pvc);
    spawn(Api::<PersistentVolume>::all(c()), t(), Input::Pv);
    spawn(Api::<StorageClass>::all(c()), t(), Input::StorageClass);
    spawn(Api::<CSINode>::all(c()), t(), Input::CsiNode);
    spawn(Api::<Namespace>::all(c()), t(), Input::Namespace);
    spawn(Api::<PodDisruptionBudget>::all(c()), t(), Input::Pdb);
    spawn(Api::<Service>::all(c()), t(), Input::Service);
    spawn(Api::<ReplicaSet>::all(c()), t(), Input::ReplicaSet);
    spawn(
        Api::<ReplicationController>::all(c()),
        t(),
        Input::ReplicationController,
    );
    spawn(Api::<StatefulSet>::all(c()), t(), Input::StatefulSet);
}
