//! The node lifecycle controller (upstream's `pkg/controller/nodelifecycle`): a node whose
//! kubelet stops heartbeating (through its Ready condition or its Lease in kube-node-lease)
//! for longer than --node-monitor-grace-period has its kubelet conditions set to Unknown and
//! its pods marked not ready; condition taints follow the conditions, among them the
//! not-ready/unreachable NoExecute taints that the taint eviction controller acts on.
//!
//! The grace period is timed from when this controller *saw* a heartbeat change, not from the
//! timestamp inside it, as upstream does, so that clock skew between nodes cannot make a node
//! look dead or alive.

pub mod health;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{Future, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{applier, trigger_self, trigger_with, Action, Config};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde_json::json;

use crate::context::Context;
use crate::disruption::backoff::Backoff;
use crate::disruption::SyncError;

pub const NAME: &str = "node-lifecycle";

struct State {
    ctx: Arc<Context>,
    leases: Store<Lease>,
    recorder: Recorder,
    backoff: Backoff,
    /// Per node: the last heartbeat seen (Ready's heartbeat time and the Lease's renew time)
    /// and when this controller first saw it.
    seen: Mutex<HashMap<String, (String, Instant)>>,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (node_store, node_writer) = reflector::store::<Node>();
        let (lease_store, lease_writer) = reflector::store::<Lease>();
        let nodes = reflector::reflector(
            node_writer,
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .touched_objects();
        let leases = reflector::reflector(
            lease_writer,
            watcher(
                Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
                watcher::Config::default(),
            )
            .default_backoff(),
        )
        .touched_objects();
        // A node's Lease carries its name.
        let lease_triggers = trigger_with(leases, |l: Lease| {
            l.metadata.name.map(|n| ObjectRef::<Node>::new(&n))
        });
        let queue = futures::stream::select(trigger_self(nodes, ()), lease_triggers);
        let state = Arc::new(State {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "node-controller".into(),
                    instance: None,
                },
            ),
            ctx,
            leases: lease_store,
            backoff: Backoff::default(),
            seen: Mutex::default(),
        });
        applier(
            |node, st| -> Pin<Box<dyn Future<Output = Result<Action, SyncError>> + Send>> {
                Box::pin(reconcile(node, st))
            },
            error_policy,
            state,
            node_store,
            queue,
            Config::default(),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
        Ok(())
    })
}

fn heartbeat_signature(node: &Node, lease: Option<&Lease>) -> String {
    let ready = health::condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let renewed = lease
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    format!("{ready}|{renewed}")
}

async fn reconcile(node: Arc<Node>, st: Arc<State>) -> Result<Action, SyncError> {
    st.ctx.metrics.inc("workqueue_adds_total", NAME);
    if st.leases.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let lease = st
        .leases
        .get(&ObjectRef::new(&name).within("kube-node-lease"));
    let signature = heartbeat_signature(&node, lease.as_deref());
    let since = match st.seen.lock() {
        Ok(mut seen) => {
            let entry = seen
                .entry(name.clone())
                .or_insert_with(|| (signature.clone(), Instant::now()));
            if entry.0 != signature {
                *entry = (signature, Instant::now());
            }
            entry.1
        }
        Err(_) => Instant::now(),
    };
    let grace = st.ctx.settings.node_monitor_grace_period;
    let silent_for = since.elapsed();
    let mut current = node.as_ref().clone();
    let nodes: Api<Node> = Api::all(st.ctx.client.clone());
    let was_ready = health::condition(&current, "Ready").is_some_and(|c| c.status == "True");

    if silent_for >= grace {
        if let Some(conditions) = health::silenced_conditions(&current, Timestamp::now()) {
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "status": {"conditions": conditions},
            });
            current = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    let is_ready = health::condition(&current, "Ready").is_some_and(|c| c.status == "True");
    if was_ready && !is_ready {
        node_event(
            &st,
            &current,
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        )
        .await;
    }

    if let Some(taints) =
        health::reconcile_taints(&current, health::wanted_taints(&current, Timestamp::now()))
    {
        let patch = json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "spec": {"taints": taints},
        });
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    if !is_ready {
        mark_pods_not_ready(&st, &name).await?;
    }
    st.backoff.reset(&name);
    // Only the grace period is a reason to look again without a change.
    Ok(if silent_for < grace {
        Action::requeue(grace - silent_for + Duration::from_millis(50))
    } else {
        Action::await_change()
    })
}

async fn node_event(st: &State, node: &Node, reason: &str, note: String) {
    let ev = Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = st.recorder.publish(&ev, &node.object_ref(&())).await {
        tracing::debug!(error = %e, "recording a node event");
    }
}

/// Pods on a node that is not ready cannot be serving: their Ready condition turns False so
/// that endpoints drop them.
async fn mark_pods_not_ready(st: &State, node: &str) -> Result<(), SyncError> {
    let pods: Api<Pod> = Api::all(st.ctx.client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    for mut pod in on_node.items {
        let Some(status) = pod.status.as_mut() else {
            continue;
        };
        let Some(ready) = status.conditions.as_mut().and_then(|cs| {
            cs.iter_mut()
                .find(|c| c.type_ == "Ready" && c.status == "True")
        }) else {
            continue;
        };
        ready.status = "False".into();
        ready.last_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &ns);
        match api
            .replace_status(&name, &PostParams::default(), &pod)
            .await
        {
            Ok(_) => {}
            // Gone or changed meanwhile: the next sync of the node sees the new state.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn error_policy(node: Arc<Node>, err: &SyncError, st: Arc<State>) -> Action {
    st.ctx.metrics.inc("workqueue_retries_total", NAME);
    let name = node.metadata.name.clone().unwrap_or_default();
    tracing::warn!(node = %name, error = %err, "node lifecycle sync failed");
    Action::requeue(st.backoff.next(&name))
}
