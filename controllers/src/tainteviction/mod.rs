//! The taint eviction controller (upstream's `pkg/controller/tainteviction`): a pod on a
//! node with NoExecute taints is deleted at once unless it tolerates them all, and otherwise
//! when the shortest of its tolerationSeconds has passed (never, if every toleration lasts
//! forever). Before deleting, the pod gets the DisruptionTarget condition.
//!
//! As upstream, a toleration's time counts from when this controller first saw the pod on the
//! tainted node, so a pod newly bound to a long-tainted node still gets its full toleration.

pub mod tolerate;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{applier, trigger_self, trigger_with, Action, Config};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde_json::json;

use crate::context::Context;
use crate::disruption::backoff::Backoff;
use crate::disruption::SyncError;
use tolerate::Verdict;

pub const NAME: &str = "taint-eviction-controller";

struct State {
    ctx: Arc<Context>,
    nodes: Store<Node>,
    recorder: Recorder,
    backoff: Backoff,
    /// Pod uid → when it was first seen on a node with NoExecute taints.
    tainted_since: Mutex<HashMap<String, Instant>>,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (node_store, node_writer) = reflector::store::<Node>();
        let (pod_store, pod_writer) = reflector::store::<Pod>();
        let nodes = reflector::reflector(
            node_writer,
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .touched_objects();
        let pods = reflector::reflector(
            pod_writer,
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .touched_objects();
        let pods_of_nodes = pod_store.clone();
        let node_triggers = trigger_with(nodes, move |n: Node| {
            let name = n.metadata.name.unwrap_or_default();
            pods_of_nodes
                .state()
                .iter()
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
                })
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        });
        let queue = futures::stream::select(trigger_self(pods, ()), node_triggers);
        let state = Arc::new(State {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: NAME.into(),
                    instance: None,
                },
            ),
            ctx,
            nodes: node_store,
            backoff: Backoff::default(),
            tainted_since: Mutex::default(),
        });
        applier(
            |pod, st| -> Pin<Box<dyn Future<Output = Result<Action, SyncError>> + Send>> {
                Box::pin(reconcile(pod, st))
            },
            error_policy,
            state,
            pod_store,
            queue,
            Config::default(),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
        Ok(())
    })
}

fn forget(st: &State, uid: &str) {
    if let Ok(mut m) = st.tainted_since.lock() {
        m.remove(uid);
    }
}

async fn reconcile(pod: Arc<Pod>, st: Arc<State>) -> Result<Action, SyncError> {
    st.ctx.metrics.inc("workqueue_adds_total", NAME);
    if st.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let node = node_name.and_then(|n| st.nodes.get(&ObjectRef::new(&n)));
    let taints: Vec<Taint> = node
        .as_ref()
        .and_then(|n| n.spec.as_ref()?.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    if pod.metadata.deletion_timestamp.is_some() || taints.is_empty() {
        forget(&st, &uid);
        return Ok(Action::await_change());
    }
    let since = match st.tainted_since.lock() {
        Ok(mut m) => *m.entry(uid.clone()).or_insert_with(Instant::now),
        Err(_) => Instant::now(),
    };
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let refs: Vec<&Taint> = taints.iter().collect();
    match tolerate::verdict(&refs, &tolerations) {
        Verdict::Stay => Ok(Action::await_change()),
        Verdict::EvictAfter(d) if since.elapsed() < d => Ok(Action::requeue(
            d - since.elapsed() + Duration::from_millis(50),
        )),
        Verdict::EvictNow | Verdict::EvictAfter(_) => {
            evict(&st, &pod).await?;
            forget(&st, &uid);
            st.backoff.reset(&uid);
            Ok(Action::await_change())
        }
    }
}

async fn evict(st: &State, pod: &Pod) -> Result<(), SyncError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &ns);
    let ev = Event {
        type_: EventType::Normal,
        reason: "TaintManagerEviction".into(),
        note: Some(format!("Marking for deletion Pod {ns}/{name}")),
        action: "Delete".into(),
        secondary: None,
    };
    if let Err(e) = st.recorder.publish(&ev, &pod.object_ref(&())).await {
        tracing::debug!(error = %e, "recording a taint eviction event");
    }
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if !conditions
        .iter()
        .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    {
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(Timestamp::now())),
            ..Default::default()
        });
        let patch = json!({
            "metadata": {"resourceVersion": pod.metadata.resource_version},
            "status": {"conditions": conditions},
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn error_policy(pod: Arc<Pod>, err: &SyncError, st: Arc<State>) -> Action {
    st.ctx.metrics.inc("workqueue_retries_total", NAME);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    tracing::warn!(pod = ?pod.metadata.name, error = %err, "taint eviction failed");
    Action::requeue(st.backoff.next(&uid))
}
