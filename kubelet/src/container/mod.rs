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

/// Go's `strconv.Quote`, which upstream's messages and downward-API maps use (`%q`).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

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

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote("\u{1}é"), "\"\\x01é\"");
    }
}
