//! Pod garbage collection: keeps at most `terminated_pod_gc_threshold` finished pods (evicted
//! ones and then the oldest go first), force-deletes pods bound to nodes that no longer exist
//! (marking them Failed with a DisruptionTarget condition first, since no kubelet will), and
//! force-deletes terminating pods that were never scheduled.
//!
//! Upstream sweeps every 20 seconds; here each pod is judged whenever it or a node changes,
//! which reaches the same state without a timer.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;

use crate::context::Context;
use crate::shared::informer::{self, watch_and_map, watch_main};
use crate::shared::retry::{is_status, Backoff, ReconcileError};

pub const NAME: &str = "podgc";

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (pods, main) = watch_main(Api::<Pod>::all(client.clone()), watcher::Config::default());
        // A node going away concerns every pod bound to it.
        let bound = pods.clone();
        let (nodes, node_triggers) = watch_and_map(
            Api::<Node>::all(client),
            watcher::Config::default(),
            move |node: &Node| {
                let name = node.metadata.name.clone().unwrap_or_default();
                bound
                    .state()
                    .into_iter()
                    .filter(|p| node_of(p) == Some(name.as_str()))
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
        let state = Arc::new(State {
            ctx,
            pods: pods.clone(),
            nodes,
            backoff: Backoff::default(),
        });
        informer::run(
            pods,
            main,
            vec![node_triggers],
            reconcile,
            error_policy,
            state,
        )
        .await;
        Ok(())
    })
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream counts any phase other than Pending, Running and Unknown as terminated.
fn terminated(pod: &Pod) -> bool {
    !matches!(phase(pod), "" | "Pending" | "Running" | "Unknown")
}

fn evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The terminated pods beyond `threshold`, in deletion order: evicted first, then oldest,
/// names breaking ties.
fn excess(pods: Vec<Arc<Pod>>, threshold: usize) -> Vec<Arc<Pod>> {
    let mut done: Vec<Arc<Pod>> = pods.into_iter().filter(|p| terminated(p)).collect();
    if threshold == 0 || done.len() <= threshold {
        return Vec::new();
    }
    done.sort_by(|a, b| {
        (!evicted(a))
            .cmp(&!evicted(b))
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let n = done.len() - threshold;
    done.truncate(n);
    done
}

async fn reconcile(pod: Arc<Pod>, state: Arc<State>) -> Result<Action, ReconcileError> {
    state.ctx.metrics.inc("reconciles_total", NAME);
    let k = key(&pod);
    judge(&pod, &state).await?;
    state.backoff.succeeded(&k);
    Ok(Action::await_change())
}

async fn judge(pod: &Pod, state: &State) -> Result<(), ReconcileError> {
    if terminated(pod) {
        // Deleting every excess pod from whichever pod's change is seen keeps the count right
        // without a sweep; since the oldest go first, repeated passes only meet 404s.
        let doomed = excess(
            state.pods.state(),
            state.ctx.settings.terminated_pod_gc_threshold,
        );
        for p in &doomed {
            force_delete(state, p, None).await?;
        }
    }
    if let Some(node) = node_of(pod) {
        let cached = state.nodes.get(&ObjectRef::new(node)).is_some();
        // A node missing from the cache may just not have reached it yet: only the apiserver
        // can say it is gone.
        if !cached && !node_exists(state, node).await? {
            let cond = json!({
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
                "lastTransitionTime": Time(Timestamp::now()),
            });
            force_delete(state, pod, Some(cond)).await?;
        }
    } else if pod.metadata.deletion_timestamp.is_some() {
        force_delete(state, pod, None).await?;
    }
    Ok(())
}

async fn node_exists(state: &State, name: &str) -> Result<bool, ReconcileError> {
    let nodes: Api<Node> = Api::all(state.ctx.client.clone());
    Ok(nodes.get_opt(name).await?.is_some())
}

/// Marks a pod that has not finished as Failed (no kubelet may ever do it), then deletes it
/// with no grace period.
async fn force_delete(
    state: &State,
    pod: &Pod,
    condition: Option<serde_json::Value>,
) -> Result<(), ReconcileError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), ns);
    if !matches!(phase(pod), "Succeeded" | "Failed") {
        let mut status = json!({"phase": "Failed"});
        if let Some(c) = condition {
            status["conditions"] = json!([c]);
        }
        // The uid guards against failing a newer pod of the same name.
        let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": status});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    match api
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => {
            tracing::info!("podgc force-deleted {ns}/{name}");
            Ok(())
        }
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn error_policy(pod: Arc<Pod>, err: &ReconcileError, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("reconcile_errors_total", NAME);
    let k = key(&pod);
    tracing::debug!("podgc {k}: {err:#}");
    Action::requeue(state.backoff.failed(&k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, phase: &str, reason: Option<&str>) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created},
                "status": {"phase": phase, "reason": reason}
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn evicted_then_oldest_beyond_the_threshold() {
        let pods = vec![
            pod("new", "2024-01-01T00:00:03Z", "Succeeded", None),
            pod("old", "2024-01-01T00:00:01Z", "Failed", None),
            pod("run", "2024-01-01T00:00:00Z", "Running", None),
            pod("ev", "2024-01-01T00:00:05Z", "Failed", Some("Evicted")),
            pod("mid", "2024-01-01T00:00:02Z", "Succeeded", None),
        ];
        let names = |v: Vec<Arc<Pod>>| -> Vec<String> {
            v.iter().filter_map(|p| p.metadata.name.clone()).collect()
        };
        assert_eq!(names(excess(pods.clone(), 2)), ["ev", "old"]);
        assert!(excess(pods.clone(), 4).is_empty());
        assert!(excess(pods, 0).is_empty());
    }
}
