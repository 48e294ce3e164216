//! What the runtime has for one pod: its sandboxes and containers, newest first, read
//! straight from the runtime at the start of every sync so that decisions never rest on a
//! stale cache.

use std::collections::HashMap;

use tonic::Status;

use super::labels;
use crate::runtime::{api, Runtime};

#[derive(Debug, Clone, Default)]
pub struct PodRuntime {
    /// Newest first.
    pub sandboxes: Vec<api::PodSandboxStatus>,
    /// Every container of the pod the runtime still has, newest first.
    pub containers: Vec<api::ContainerStatus>,
}

impl PodRuntime {
    /// The newest sandbox, if it is ready.
    pub fn ready_sandbox(&self) -> Option<&api::PodSandboxStatus> {
        self.sandboxes
            .first()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
    }

    pub fn pod_ips(&self) -> Vec<String> {
        self.ready_sandbox()
            .and_then(|s| s.network.as_ref())
            .map(|n| {
                let mut ips = vec![n.ip.clone()];
                ips.extend(n.additional_ips.iter().map(|i| i.ip.clone()));
                ips.retain(|i| !i.is_empty());
                ips
            })
            .unwrap_or_default()
    }

    /// The containers named `name`, newest first.
    pub fn named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a api::ContainerStatus> + 'a {
        self.containers
            .iter()
            .filter(move |c| container_name(c) == name)
    }

    /// The newest container named `name`.
    pub fn latest(&self, name: &str) -> Option<&api::ContainerStatus> {
        self.containers.iter().find(|c| container_name(c) == name)
    }

    /// Whether any container of the pod still runs.
    pub fn any_running(&self) -> bool {
        self.containers.iter().any(is_running)
    }
}

pub fn container_name(c: &api::ContainerStatus) -> &str {
    c.metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .or_else(|| c.labels.get(labels::CONTAINER_NAME).map(String::as_str))
        .unwrap_or("")
}

pub fn is_running(c: &api::ContainerStatus) -> bool {
    c.state == api::ContainerState::ContainerRunning as i32
}

pub fn is_exited(c: &api::ContainerStatus) -> bool {
    c.state == api::ContainerState::ContainerExited as i32
}

/// The restart count the kubelet recorded on the container when it created it.
pub fn restart_count(c: &api::ContainerStatus) -> i32 {
    c.annotations
        .get(labels::CONTAINER_RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            c.metadata
                .as_ref()
                .and_then(|m| i32::try_from(m.attempt).ok())
        })
        .unwrap_or(0)
}

/// Reads the pod's sandboxes and containers from the runtime.
pub async fn read(runtime: &dyn Runtime, pod_uid: &str) -> Result<PodRuntime, Status> {
    let by_uid: HashMap<String, String> =
        [(labels::POD_UID.to_string(), pod_uid.to_string())].into();
    let sandboxes = runtime
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: by_uid.clone(),
                ..Default::default()
            }),
        })
        .await?
        .items;
    let mut out = PodRuntime::default();
    for s in sandboxes {
        match runtime
            .pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: s.id.clone(),
                verbose: false,
            })
            .await
        {
            Ok(r) => out.sandboxes.extend(r.status),
            // Removed between the list and the status call.
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.sandboxes
        .sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let containers = runtime
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                label_selector: by_uid,
                ..Default::default()
            }),
        })
        .await?
        .containers;
    for c in containers {
        match runtime
            .container_status(api::ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            })
            .await
        {
            Ok(r) => out.containers.extend(r.status),
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.containers
        .sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(out)
}
