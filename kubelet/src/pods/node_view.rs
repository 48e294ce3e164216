//! What the kubelet's server sees of the pods: the pods with the status the kubelet last
//! computed, their containers' log files from the runtime, and the runtime's streaming
//! URLs for exec, attach and port-forward (upstream's GetExec, GetAttach, GetPortForward
//! and RunInContainer).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

use super::{runtime_state, PodManager};
use crate::prober::gofmt::quote;
use crate::runtime::api;
use crate::server::{
    select_container_status, ContainerLog, LogLookupError, NodeView, StreamError, StreamOptions,
};

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

    /// What the runtime has for the pod now.
    async fn runtime_pod(&self, pod: &Pod) -> Result<runtime_state::PodRuntime, StreamError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        runtime_state::read(self.0.shared.runtime.as_ref(), uid)
            .await
            .map_err(|e| StreamError::runtime(&e))
    }

    /// The runtime ID of the running container `name` of the pod (upstream's
    /// findContainer), None when it does not run or `uid` names another pod.
    async fn running_container(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, StreamError> {
        if uid.is_some_and(|u| Some(u) != pod.metadata.uid.as_deref()) {
            return Ok(None);
        }
        let rt = self.runtime_pod(pod).await?;
        let id = rt
            .named(name)
            .find(|c| runtime_state::is_running(c))
            .map(|c| c.id.clone());
        Ok(id)
    }
}

/// `name_namespace`, as upstream's kubecontainer.GetPodFullName.
fn full_name(pod: &Pod) -> String {
    format!(
        "{}_{}",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or("")
    )
}

/// The `tty` of the container named `name` in the pod's spec, regular, init or ephemeral;
/// None when the spec has no such container.
fn container_tty(pod: &Pod, name: &str) -> Option<bool> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .map(|c| c.tty.unwrap_or(false))
        .or_else(|| {
            spec.ephemeral_containers
                .iter()
                .flatten()
                .find(|c| c.name == name)
                .map(|c| c.tty.unwrap_or(false))
        })
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

    async fn summary(&self, only_cpu_and_memory: bool) -> Result<serde_json::Value, String> {
        let shared = &self.0.shared;
        Ok(crate::stats::summary(
            &shared.stats,
            shared.runtime.as_ref(),
            &shared.node_name,
            &self.pods(),
            &shared.settings.dirs.pod_logs,
            only_cpu_and_memory,
        )
        .await)
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
        // The relist reports every change to the pod's containers; the container's state is
        // looked at again after each one (and after missed ones, when the receiver lagged).
        let mut changes = self.0.runtime_changes();
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let until = async move {
            loop {
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
                loop {
                    match changes.recv().await {
                        Ok(uid) if uid == pod_uid => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        };
        Ok(ContainerLog::running(status.log_path, until))
    }

    async fn exec_url(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        container: &str,
        command: Vec<String>,
        opts: StreamOptions,
    ) -> Result<String, StreamError> {
        let Some(id) = self.running_container(pod, uid, container).await? else {
            return Err(StreamError::other(format!(
                "container not found ({})",
                quote(container)
            )));
        };
        let resp = self
            .0
            .shared
            .runtime
            .exec(api::ExecRequest {
                container_id: id,
                cmd: command,
                tty: opts.tty,
                stdin: opts.stdin,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .map_err(|e| StreamError::runtime(&e))?;
        Ok(resp.url)
    }

    async fn attach_url(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        container: &str,
        opts: StreamOptions,
    ) -> Result<String, StreamError> {
        let not_found = || {
            StreamError::other(format!(
                "container {container} not found in pod {}",
                full_name(pod)
            ))
        };
        let Some(id) = self.running_container(pod, uid, container).await? else {
            return Err(not_found());
        };
        // Whether the process has a terminal was settled when it started: the spec says.
        let tty = container_tty(pod, container).ok_or_else(not_found)?;
        let resp = self
            .0
            .shared
            .runtime
            .attach(api::AttachRequest {
                container_id: id,
                stdin: opts.stdin,
                tty,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .map_err(|e| StreamError::runtime(&e))?;
        Ok(resp.url)
    }

    async fn port_forward_url(&self, pod: &Pod, ports: Vec<i32>) -> Result<String, StreamError> {
        let rt = self.runtime_pod(pod).await?;
        if rt.ready_sandbox().is_none() && !rt.any_running() {
            return Err(StreamError::other(format!(
                "pod not found ({})",
                quote(&full_name(pod))
            )));
        }
        let Some(sandbox) = rt.sandboxes.first() else {
            return Err(StreamError::other(format!(
                "failed to find sandboxID for pod {}",
                full_name(pod)
            )));
        };
        let resp = self
            .0
            .shared
            .runtime
            .port_forward(api::PortForwardRequest {
                pod_sandbox_id: sandbox.id.clone(),
                port: ports,
            })
            .await
            .map_err(|e| StreamError::runtime(&e))?;
        Ok(resp.url)
    }

    async fn run_in_container(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        container: &str,
        command: Vec<String>,
    ) -> Result<Vec<u8>, StreamError> {
        let Some(id) = self.running_container(pod, uid, container).await? else {
            return Err(StreamError::other(format!(
                "container not found ({})",
                quote(container)
            )));
        };
        let resp = self
            .0
            .shared
            .runtime
            .exec_sync(api::ExecSyncRequest {
                container_id: id,
                cmd: command.clone(),
                timeout: 0,
            })
            .await
            .map_err(|e| StreamError::runtime(&e))?;
        if resp.exit_code != 0 {
            return Err(StreamError::other(format!(
                "command '{}' exited with {}: {}",
                command.join(" "),
                resp.exit_code,
                String::from_utf8_lossy(&resp.stderr)
            )));
        }
        let mut out = resp.stdout;
        out.extend_from_slice(&resp.stderr);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttys_come_from_the_spec() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {
                "containers": [{"name": "app", "tty": true}, {"name": "side"}],
                "initContainers": [{"name": "init", "tty": true}],
                "ephemeralContainers": [{"name": "debug", "tty": false}],
            },
        }))
        .unwrap();
        assert_eq!(container_tty(&pod, "app"), Some(true));
        assert_eq!(container_tty(&pod, "side"), Some(false));
        assert_eq!(container_tty(&pod, "init"), Some(true));
        assert_eq!(container_tty(&pod, "debug"), Some(false));
        assert_eq!(container_tty(&pod, "nope"), None);
        assert_eq!(full_name(&pod), "web_ns");
    }
}
