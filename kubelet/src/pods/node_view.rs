//! What the kubelet's server sees of the pods: the pods with the status the kubelet last
//! computed, and their containers' log files from the runtime.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

use super::{runtime_state, PodManager};
use crate::runtime::api;
use crate::server::{select_container_status, ContainerLog, LogLookupError, NodeView};

/// How often a followed log checks whether its container still runs.
const EXIT_POLL: Duration = Duration::from_millis(500);

pub struct PodsView(pub Arc<PodManager>);

impl PodsView {
    /// The pod with its freshest status: the one the kubelet computed if it has one.
    fn with_status(&self, pod: Pod) -> Pod {
        let mut pod = pod;
        if let Some(status) = pod
            .metadata
            .uid
            .as_deref()
            .and_then(|uid| self.0.shared.status.get(uid))
        {
            pod.status = Some(status);
        }
        pod
    }
}

#[async_trait]
impl NodeView for PodsView {
    fn pods(&self) -> Vec<Pod> {
        self.0
            .pods()
            .into_iter()
            .map(|p| self.with_status(p))
            .collect()
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.0
            .find(namespace, name)
            .map(|p| self.with_status((*p).clone()))
    }

    async fn container_log(
        &self,
        pod: &Pod,
        container: &str,
        previous: bool,
    ) -> Result<ContainerLog, LogLookupError> {
        let id = select_container_status(pod, container, previous)?;
        let id = id
            .split_once("://")
            .map_or(id.as_str(), |(_, id)| id)
            .to_string();
        let runtime = self.0.shared.runtime.clone();
        let status = runtime
            .container_status(api::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .map_err(|e| {
                LogLookupError(format!(
                    "failed to get container status {id:?}: {}",
                    e.message()
                ))
            })?
            .status
            .ok_or_else(|| LogLookupError(format!("container {id:?} has no status")))?;
        if !runtime_state::is_running(&status) {
            return Ok(ContainerLog::exited(status.log_path));
        }
        let until = async move {
            loop {
                tokio::time::sleep(EXIT_POLL).await;
                let running = runtime
                    .container_status(api::ContainerStatusRequest {
                        container_id: id.clone(),
                        verbose: false,
                    })
                    .await
                    .ok()
                    .and_then(|r| r.status)
                    .is_some_and(|s| runtime_state::is_running(&s));
                if !running {
                    return;
                }
            }
        };
        Ok(ContainerLog::running(status.log_path, until))
    }
}
