//! Stopping containers and pods: the preStop hook, then SIGTERM and, after the grace
//! period, SIGKILL (the runtime's StopContainer timeout), then the sandbox.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::assemble;
use super::context::Shared;
use super::runtime_state::{self, PodRuntime};
use crate::events::{self, Kind};
use crate::runtime::api;

/// Upstream never gives a container less than this to stop.
const MIN_GRACE_SECONDS: i64 = 2;

/// The grace period for stopping the pod: a deletion's own, else the spec's.
pub fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(30)
}

/// Stops one running container, with `why` as the Killing event's message.
pub async fn stop_container(
    shared: &Shared,
    pod: &Pod,
    spec: &Container,
    status: &api::ContainerStatus,
    why: &str,
    grace: Option<i64>,
) {
    let grace = grace.unwrap_or_else(|| grace_seconds(pod));
    shared
        .events
        .record(
            &events::container_ref(pod, &spec.name),
            Kind::Normal,
            "Killing",
            why,
        )
        .await;
    let begun = Instant::now();
    assemble::pre_stop(
        shared,
        pod,
        spec,
        status,
        Duration::from_secs(u64::try_from(grace.max(0)).unwrap_or(0)),
    )
    .await;
    let left = grace - i64::try_from(begun.elapsed().as_secs()).unwrap_or(0);
    let timeout = left.max(MIN_GRACE_SECONDS);
    if let Err(e) = shared
        .runtime
        .stop_container(api::StopContainerRequest {
            container_id: status.id.clone(),
            timeout,
        })
        .await
    {
        tracing::warn!(container = %spec.name, error = %e.message(), "stopping container");
    }
}

/// Stops every running container of the pod (sidecars last, in reverse order) and its
/// sandboxes.
pub async fn stop_pod(shared: &Shared, pod: &Pod, rt: &PodRuntime, grace: Option<i64>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let grace = grace.unwrap_or_else(|| grace_seconds(pod));
    let running = |c: &Container| {
        rt.latest(&c.name)
            .filter(|s| runtime_state::is_running(s))
            .cloned()
    };
    let regular: Vec<(Container, api::ContainerStatus)> = spec
        .containers
        .iter()
        .chain(
            spec.init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() != Some("Always")),
        )
        .filter_map(|c| running(c).map(|s| (c.clone(), s)))
        .collect();
    let reasons: Vec<String> = regular
        .iter()
        .map(|(c, _)| format!("Stopping container {}", c.name))
        .collect();
    futures::future::join_all(
        regular
            .iter()
            .zip(&reasons)
            .map(|((c, s), why)| stop_container(shared, pod, c, s, why, Some(grace))),
    )
    .await;
    let sidecars: Vec<(Container, api::ContainerStatus)> = spec
        .init_containers
        .iter()
        .flatten()
        .rev()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .filter_map(|c| running(c).map(|s| (c.clone(), s)))
        .collect();
    for (c, s) in &sidecars {
        stop_container(
            shared,
            pod,
            c,
            s,
            &format!("Stopping container {}", c.name),
            Some(MIN_GRACE_SECONDS.max(grace / 2)),
        )
        .await;
    }
    // Anything else still running (ephemeral containers, ones no longer in the spec).
    for c in rt
        .containers
        .iter()
        .filter(|c| runtime_state::is_running(c))
    {
        let _ = shared
            .runtime
            .stop_container(api::StopContainerRequest {
                container_id: c.id.clone(),
                timeout: MIN_GRACE_SECONDS,
            })
            .await;
    }
    for s in &rt.sandboxes {
        if let Err(e) = shared
            .runtime
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await
        {
            tracing::warn!(sandbox = %s.id, error = %e.message(), "stopping sandbox");
        }
    }
}

/// Removes every container and sandbox of a pod that is gone for good.
pub async fn remove_pod(shared: &Shared, rt: &PodRuntime) {
    for c in &rt.containers {
        let _ = shared
            .runtime
            .remove_container(api::RemoveContainerRequest {
                container_id: c.id.clone(),
            })
            .await;
    }
    for s in &rt.sandboxes {
        let _ = shared
            .runtime
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await;
    }
}
