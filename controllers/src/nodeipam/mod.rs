//! Node IPAM (upstream's `pkg/controller/nodeipam` with the RangeAllocator): every node
//! without a pod range gets the lowest free range of --node-cidr-mask-size cut from
//! --cluster-cidr, in spec.podCIDR and spec.podCIDRs. Ranges are free when no node holds them,
//! so a deleted node's range returns to the pool.

pub mod cidr;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::Resource;
use serde_json::json;

use crate::context::Context;
use crate::disruption::backoff::Backoff;
use crate::disruption::SyncError;
use cidr::CidrSet;

pub const NAME: &str = "nodeipam";

struct State {
    ctx: Arc<Context>,
    set: CidrSet,
    nodes: Store<Node>,
    recorder: Recorder,
    backoff: Backoff,
    /// Ranges handed out but not yet seen on their node in the cache, so that two nodes
    /// synced back to back do not get the same one.
    pending: Mutex<HashMap<String, usize>>,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let Some(cluster_cidr) = ctx.settings.cluster_cidr.clone() else {
            // As upstream: without --cluster-cidr there is nothing to allocate from.
            tracing::info!("node IPAM is off: no --cluster-cidr");
            return Ok(());
        };
        let set = CidrSet::new(&cluster_cidr, ctx.settings.node_cidr_mask_size)
            .map_err(anyhow::Error::msg)?;
        let client = ctx.client.clone();
        let controller =
            Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
        let state = Arc::new(State {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "cidrAllocator".into(),
                    instance: None,
                },
            ),
            nodes: controller.store(),
            ctx,
            set,
            backoff: Backoff::default(),
            pending: Mutex::default(),
        });
        controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await;
        Ok(())
    })
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let mut out: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if let Some(c) = spec.and_then(|s| s.pod_cidr.clone()) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

async fn reconcile(node: Arc<Node>, st: Arc<State>) -> Result<Action, SyncError> {
    st.ctx.metrics.inc("workqueue_adds_total", NAME);
    // Until every node is known, a taken range could look free.
    if st.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    if node.metadata.deletion_timestamp.is_some() || !pod_cidrs(&node).is_empty() {
        if let Ok(mut p) = st.pending.lock() {
            p.remove(&name);
        }
        return Ok(Action::await_change());
    }
    let chosen = {
        let Ok(mut pending) = st.pending.lock() else {
            return Err(SyncError(anyhow::anyhow!("allocator state poisoned")));
        };
        let nodes = st.nodes.state();
        pending.retain(|n, _| {
            nodes
                .iter()
                .any(|o| o.metadata.name.as_deref() == Some(n.as_str()))
        });
        let mut used = vec![false; st.set.len()];
        for n in &nodes {
            for c in pod_cidrs(n) {
                if let Some(i) = st.set.index_of(&c) {
                    used[i] = true;
                }
            }
        }
        for (n, i) in pending.iter() {
            if *n != name {
                used[*i] = true;
            }
        }
        let free = pending
            .get(&name)
            .copied()
            .filter(|i| !used[*i])
            .or_else(|| used.iter().position(|u| !u));
        if let Some(i) = free {
            pending.insert(name.clone(), i);
        }
        free
    };
    let Some(index) = chosen else {
        let ev = Event {
            type_: EventType::Normal,
            reason: "CIDRNotAvailable".into(),
            note: Some(format!("Node {name} status is now: CIDRNotAvailable")),
            action: "Allocate".into(),
            secondary: None,
        };
        let _ = st.recorder.publish(&ev, &node.object_ref(&())).await;
        return Err(SyncError(anyhow::anyhow!(
            "no remaining CIDRs for node {name}"
        )));
    };
    let range = st.set.range(index);
    let patch = json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"podCIDR": range, "podCIDRs": [range]},
    });
    let nodes: Api<Node> = Api::all(st.ctx.client.clone());
    nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    st.backoff.reset(&name);
    Ok(Action::await_change())
}

fn error_policy(node: Arc<Node>, err: &SyncError, st: Arc<State>) -> Action {
    st.ctx.metrics.inc("workqueue_retries_total", NAME);
    let name = node.metadata.name.clone().unwrap_or_default();
    tracing::warn!(node = %name, error = %err, "node CIDR allocation failed");
    Action::requeue(st.backoff.next(&name))
}
