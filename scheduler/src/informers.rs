//! Watches that feed the scheduling loop: every object the cache or a plugin reads arrives
//! as an `Input` on one channel, so the loop is the cache's only writer.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;

use crate::framework::{CycleState, PodInfo, Status};

/// A change to one kind of object.
pub enum Change<K> {
    Apply(Box<K>),
    Delete(Box<K>),
    /// A complete list (at start and after the watch had to relist): anything the loop
    /// holds that is not in it was deleted meanwhile.
    Relist(Vec<K>),
}

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
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listing: Vec<K> = Vec::new();
        while let Some(event) = stream.next().await {
            let input = match event {
                Ok(Event::Init) => {
                    listing.clear();
                    continue;
                }
                Ok(Event::InitApply(obj)) => {
                    listing.push(obj);
                    continue;
                }
                Ok(Event::InitDone) => wrap(Change::Relist(std::mem::take(&mut listing))),
                Ok(Event::Apply(obj)) => wrap(Change::Apply(Box::new(obj))),
                Ok(Event::Delete(obj)) => wrap(Change::Delete(Box::new(obj))),
                Err(e) => {
                    tracing::warn!("watch: {e}");
                    continue;
                }
            };
            if tx.send(input).is_err() {
                return;
            }
        }
    });
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
