//! Turning a pod's spec into CRI sandbox and container configs, as upstream's kuberuntime and
//! `kubelet_pods.go` do. Everything here is a pure function of its inputs (the pod, the node's
//! settings, values the caller looked up), except the ConfigMap/Secret lookups of
//! [`env::make_environment`], which go through the [`env::Lookup`] trait.
//!
//! Order of use for one pod, as the kubelet's sync loop does it:
//! 1. [`sandbox::SysctlAllowlist::admit`] at admission;
//! 2. [`resources::pod_cgroup_parent`] and [`sandbox::pod_sandbox_config`] for `RunPodSandbox`
//!    (with [`sandbox::runtime_handler`]);
//! 3. per container: [`env::make_environment`], then the managed hosts file from [`hosts`] (written
//!    by the caller), then [`config::container_config`] for `CreateContainer`.

pub mod config;
pub mod env;
pub mod hosts;
pub mod qos;
pub mod resources;
pub mod sandbox;
pub mod security;

use k8s_openapi::api::core::v1::{Container, Pod};

/// A pod or container the kubelet cannot turn into a runtime config (upstream's
/// `CreateContainerConfigError` and sandbox-config failures). The message is upstream's wording,
/// since it ends up in the pod's status and events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// Upstream's `format.Pod`: `name_namespace(uid)`, the form its messages use.
pub fn format_pod(pod: &Pod) -> String {
    format!("{}_{}({})", pod_name(pod), pod_namespace(pod), pod_uid(pod))
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Go's `%q`, which upstream's messages use.
use ferrokube_common::gofmt::quote as go_quote;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn format_pod_is_upstreams() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("1234".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(format_pod(&pod), "web_default(1234)");
    }
}
