//! One container's CRI `ContainerConfig` (upstream's `generateContainerConfig`,
//! `makeMounts` of both `kubelet_pods.go` and `kuberuntime_container.go`, and `labels.go`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};

use super::env::{expand_command_and_args, expand_sub_path_expr};
use super::hosts::ETC_HOSTS_PATH;
use super::resources::{linux_container_resources, NodeResources};
use super::sandbox::{POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL};
use super::security::{linux_container_security_context, verify_run_as_non_root, SecurityOptions};
use super::{go_quote, pod_name, pod_namespace, pod_uid, ConfigError};
use crate::runtime::api::{
    ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig, Mount,
    MountPropagation, NamespaceMode,
};

pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const CONTAINER_HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
pub const CONTAINER_HASH_WITHOUT_RESOURCES_ANNOTATION: &str =
    "io.kubernetes.container.hashWithoutResources";
pub const RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePolicy";
pub const PRE_STOP_HANDLER_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";
pub const PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";
pub const DELETION_GRACE_PERIOD_ANNOTATION: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const TERMINATION_GRACE_PERIOD_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";

/// The API's defaults, for containers that were not defaulted by an apiserver.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
pub const DEFAULT_TERMINATION_MESSAGE_POLICY: &str = "File";

/// Prepares a volume subpath for bind-mounting (creating it safely inside the volume and
/// pinning it so a symlink swap cannot escape the volume), returning the host path to mount.
/// `crate::volumes::subpath::prepare` is the real one; any `Fn(&Path, &str)` fits.
pub trait SubPathPreparer {
    fn prepare(&self, volume_dir: &Path, sub_path: &str) -> Result<PathBuf, String>;
}

impl<F> SubPathPreparer for F
where
    F: Fn(&Path, &str) -> Result<PathBuf, String>,
{
    fn prepare(&self, volume_dir: &Path, sub_path: &str) -> Result<PathBuf, String> {
        self(volume_dir, sub_path)
    }
}

/// The kubelet's own subpath preparation, [`crate::volumes::subpath::prepare`].
#[derive(Debug, Clone, Copy, Default)]
pub struct VolumeSubPaths;

impl SubPathPreparer for VolumeSubPaths {
    fn prepare(&self, volume_dir: &Path, sub_path: &str) -> Result<PathBuf, String> {
        crate::volumes::subpath::prepare(volume_dir, sub_path).map_err(|e| e.to_string())
    }
}

/// Go's `encoding/json` string form (HTML-safe escaping included), so hashes computed from JSON
/// come out as upstream's.
fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The hash that tells the kubelet a running container no longer matches its spec (upstream's
/// `HashContainer` since v1.31): FNV-32a over the container's name and image only, since every
/// other field of a pod's container is immutable in the API (resources change in place, not by
/// restart). It is computed byte for byte as upstream does (the `%v` dump of the JSON bytes of
/// `{"image":…,"name":…}`), so containers started by either kubelet compare equal.
pub fn container_hash(container: &Container) -> u64 {
    let json = format!(
        "{{\"image\":{},\"name\":{}}}",
        go_json_string(container.image.as_deref().unwrap_or_default()),
        go_json_string(&container.name)
    );
    let bytes: Vec<String> = json.bytes().map(|b| b.to_string()).collect();
    let dumped = format!("([]uint8)[{}]", bytes.join(" "));
    let mut hash: u32 = 0x811c_9dc5;
    for b in dumped.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    u64::from(hash)
}

/// Upstream's `buildContainerLogsPath`: `<container name>/<restart count>.log`, relative to the
/// sandbox's log directory.
pub fn container_log_path(name: &str, restart_count: u32) -> String {
    format!("{name}/{restart_count}.log")
}

/// Upstream's `newContainerLabels`.
pub fn container_labels(pod: &Pod, container: &Container) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME_LABEL.to_string(), pod_name(pod).to_string()),
        (
            POD_NAMESPACE_LABEL.to_string(),
            pod_namespace(pod).to_string(),
        ),
        (POD_UID_LABEL.to_string(), pod_uid(pod).to_string()),
        (CONTAINER_NAME_LABEL.to_string(), container.name.clone()),
    ])
}

fn termination_message_path(container: &Container) -> &str {
    container
        .termination_message_path
        .as_deref()
        .unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH)
}

/// Upstream's `newContainerAnnotations`: what the kubelet needs to stop and report on a
/// container whose pod it no longer has (hash, restart count, termination message settings,
/// grace periods, preStop hook, ports).
pub fn container_annotations(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
) -> HashMap<String, String> {
    let hash = format!("{:x}", container_hash(container));
    let mut a = HashMap::from([
        (CONTAINER_HASH_ANNOTATION.to_string(), hash.clone()),
        // InPlacePodVerticalScaling is on by default in v1.33.
        (
            CONTAINER_HASH_WITHOUT_RESOURCES_ANNOTATION.to_string(),
            hash,
        ),
        (
            RESTART_COUNT_ANNOTATION.to_string(),
            restart_count.to_string(),
        ),
        (
            TERMINATION_MESSAGE_PATH_ANNOTATION.to_string(),
            termination_message_path(container).to_string(),
        ),
        (
            TERMINATION_MESSAGE_POLICY_ANNOTATION.to_string(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_POLICY.to_string()),
        ),
    ]);
    if let Some(grace) = pod.metadata.deletion_grace_period_seconds {
        a.insert(
            DELETION_GRACE_PERIOD_ANNOTATION.to_string(),
            grace.to_string(),
        );
    }
    if let Some(grace) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        a.insert(
            TERMINATION_GRACE_PERIOD_ANNOTATION.to_string(),
            grace.to_string(),
        );
    }
    let pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref());
    if let Some(json) = pre_stop.and_then(|h| serde_json::to_string(h).ok()) {
        a.insert(PRE_STOP_HANDLER_ANNOTATION.to_string(), json);
    }
    let ports = container.ports.as_ref().filter(|p| !p.is_empty());
    if let Some(json) = ports.and_then(|p| serde_json::to_string(p).ok()) {
        a.insert(PORTS_ANNOTATION.to_string(), json);
    }
    a
}

/// Upstream's `translateMountPropagation`.
pub fn mount_propagation(mode: Option<&str>) -> Result<MountPropagation, ConfigError> {
    match mode {
        None | Some("None") => Ok(MountPropagation::PropagationPrivate),
        Some("HostToContainer") => Ok(MountPropagation::PropagationHostToContainer),
        Some("Bidirectional") => Ok(MountPropagation::PropagationBidirectional),
        Some(other) => Err(ConfigError(format!(
            "invalid MountPropagation mode: {}",
            go_quote(other)
        ))),
    }
}

/// Upstream's `resolveRecursiveReadOnly`.
fn recursive_read_only(m: &VolumeMount, runtime_supports: bool) -> Result<bool, ConfigError> {
    let mode = match m.recursive_read_only.as_deref() {
        None | Some("Disabled") => return Ok(false),
        Some(mode) => mode,
    };
    if !m.read_only.unwrap_or(false) {
        return Err(ConfigError(format!(
            "volume {} requested recursive read-only mode, but it is not read-only",
            go_quote(&m.name)
        )));
    }
    if let Some(p) = m.mount_propagation.as_deref().filter(|p| *p != "None") {
        return Err(ConfigError(format!(
            "volume {} requested recursive read-only mode, but it is not compatible with propagation {}",
            go_quote(&m.name),
            go_quote(p)
        )));
    }
    match mode {
        "IfPossible" => Ok(runtime_supports),
        "Enabled" if runtime_supports => Ok(true),
        "Enabled" => Err(ConfigError(format!(
            "volume {} requested recursive read-only mode, but it is not supported by the runtime",
            go_quote(&m.name)
        ))),
        other => Err(ConfigError(format!(
            "unknown recursive read-only mode {}",
            go_quote(other)
        ))),
    }
}

/// Go's `filepath.Clean` for an absolute path.
fn clean_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// What a container config depends on besides the pod and container.
#[derive(Clone, Copy)]
pub struct ContainerInputs<'a> {
    /// Restarts so far; the first instance is 0.
    pub restart_count: u32,
    /// The image as pulled (its ID or digest reference); the spec's image goes alongside.
    pub image_ref: &'a str,
    /// The image's configured user, numeric or by name (for `runAsUser` and `runAsNonRoot`).
    pub image_uid: Option<i64>,
    pub image_user: &'a str,
    /// The container's environment from [`super::env::make_environment`].
    pub envs: &'a [(String, String)],
    /// Each pod volume's directory on the host and whether the volume forces read-only.
    pub volumes: &'a BTreeMap<String, (PathBuf, bool)>,
    /// The pod's managed hosts file, when it is to be mounted (see
    /// [`super::hosts::should_mount_hosts_file`]).
    pub etc_hosts: Option<&'a Path>,
    /// The per-instance file behind the container's termination message path.
    pub termination_log: Option<&'a Path>,
    pub node: &'a NodeResources,
    pub security: SecurityOptions<'a>,
    /// For an ephemeral container that targets another: that container's runtime ID, whose
    /// PID namespace it joins.
    pub pid_target: Option<&'a str>,
    /// The runtime can make read-only mounts recursively read-only.
    pub runtime_supports_rro: bool,
    /// SELinux is enabled on the host, so the kubelet's own mounts are relabelled.
    pub selinux_enabled: bool,
}

/// The container's mounts (upstream's two `makeMounts`): its volume mounts, with subpaths
/// prepared; the managed `/etc/hosts` unless the container mounts its own; the termination
/// message file.
pub fn container_mounts(
    container: &Container,
    inputs: &ContainerInputs<'_>,
    subpaths: &dyn SubPathPreparer,
) -> Result<Vec<Mount>, ConfigError> {
    let mut mounts = Vec::new();
    let mut mount_hosts = inputs.etc_hosts.is_some();
    for m in container.volume_mounts.iter().flatten() {
        mount_hosts &= m.mount_path != ETC_HOSTS_PATH;
        let Some((volume_dir, volume_read_only)) = inputs.volumes.get(&m.name) else {
            return Err(ConfigError(format!(
                "cannot find volume {} to mount into container {}",
                go_quote(&m.name),
                go_quote(&container.name)
            )));
        };
        let mut host_path = volume_dir.clone();
        let mut sub_path = m.sub_path.clone().unwrap_or_default();
        if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            sub_path = expand_sub_path_expr(expr, inputs.envs)?;
        }
        if !sub_path.is_empty() {
            if sub_path.starts_with('/') {
                return Err(ConfigError(format!(
                    "error SubPath `{sub_path}` must not be an absolute path"
                )));
            }
            if sub_path.split('/').any(|p| p == "..") {
                return Err(ConfigError(format!(
                    "unable to provision SubPath `{sub_path}`: must not contain '..'"
                )));
            }
            host_path = subpaths.prepare(volume_dir, &sub_path).map_err(|e| {
                tracing::warn!(container = %container.name, volume = %m.name, error = %e, "failed to prepare subPath");
                // As upstream, the details stay in the log: they describe the host's filesystem.
                ConfigError(format!(
                    "failed to prepare subPath for volumeMount {} of container {}",
                    go_quote(&m.name),
                    go_quote(&container.name)
                ))
            })?;
        }
        let container_path = if m.mount_path.starts_with('/') {
            m.mount_path.clone()
        } else {
            clean_absolute(&format!("/{}", m.mount_path))
        };
        let propagation = mount_propagation(m.mount_propagation.as_deref())?;
        let rro = recursive_read_only(m, inputs.runtime_supports_rro)
            .map_err(|e| ConfigError(format!("failed to resolve recursive read-only mode: {e}")))?;
        mounts.push(Mount {
            container_path,
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: m.read_only.unwrap_or(false) || *volume_read_only,
            propagation: propagation as i32,
            recursive_read_only: rro,
            ..Default::default()
        });
    }
    if let Some(hosts) = inputs.etc_hosts.filter(|_| mount_hosts) {
        mounts.push(Mount {
            container_path: ETC_HOSTS_PATH.to_string(),
            host_path: hosts.to_string_lossy().into_owned(),
            readonly: false,
            selinux_relabel: inputs.selinux_enabled,
            ..Default::default()
        });
    }
    let path = termination_message_path(container);
    if let Some(file) = inputs.termination_log.filter(|_| !path.is_empty()) {
        mounts.push(Mount {
            container_path: clean_absolute(&format!("/{path}")),
            host_path: file.to_string_lossy().into_owned(),
            selinux_relabel: inputs.selinux_enabled,
            ..Default::default()
        });
    }
    Ok(mounts)
}

/// The container's config for `CreateContainer` (upstream's `generateContainerConfig`):
/// `runAsNonRoot` checked against the image's user, command and args expanded with the
/// environment, mounts, labels and annotations, the log path
/// `<name>/<restart count>.log`, terminal settings, resources and security context.
///
/// The caller creates the container's log directory (`<sandbox log dir>/<name>`) beforehand.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    inputs: &ContainerInputs<'_>,
    subpaths: &dyn SubPathPreparer,
) -> Result<ContainerConfig, ConfigError> {
    let user_name = (!inputs.image_user.is_empty()).then_some(inputs.image_user);
    verify_run_as_non_root(pod, container, inputs.image_uid, user_name).map_err(ConfigError)?;
    let (command, args) = expand_command_and_args(container, inputs.envs);
    let mounts = container_mounts(container, inputs, subpaths)?;
    let mut security = linux_container_security_context(
        pod,
        container,
        inputs.image_uid,
        inputs.image_user,
        &inputs.security,
    )?;
    if let (Some(target), Some(ns)) = (inputs.pid_target, security.namespace_options.as_mut()) {
        if ns.pid == NamespaceMode::Container as i32 {
            ns.pid = NamespaceMode::Target as i32;
            ns.target_id = target.to_string();
        }
    }
    Ok(ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: container.name.clone(),
            attempt: inputs.restart_count,
        }),
        image: Some(ImageSpec {
            image: inputs.image_ref.to_string(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: inputs
            .envs
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels: container_labels(pod, container),
        annotations: container_annotations(pod, container, inputs.restart_count),
        log_path: container_log_path(&container.name, inputs.restart_count),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(LinuxContainerConfig {
            resources: Some(linux_container_resources(pod, container, inputs.node)),
            security_context: Some(security),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, ExecAction, Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    // The value upstream's container_hash_test.go pins (args and ports do not count).
    #[test]
    fn hash_matches_upstream() {
        let c = Container {
            name: "test_container".into(),
            image: Some("foo/image:v1".into()),
            args: Some(vec!["/bin/sh".into(), "-c".into(), "echo abc".into()]),
            ports: Some(vec![ContainerPort {
                container_port: 8001,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(container_hash(&c), 0x8e45_cbd0);
        let mut other = c.clone();
        other.image = Some("foo/image:v2".into());
        assert_ne!(container_hash(&other), container_hash(&c));
        assert_eq!(
            go_json_string("a<b>&\"\u{1}"),
            "\"a\\u003cb\\u003e\\u0026\\\"\\u0001\""
        );
    }

    fn pod(container: Container) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-0".into()),
                deletion_grace_period_seconds: Some(10),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container],
                termination_grace_period_seconds: Some(30),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn volumes() -> BTreeMap<String, (PathBuf, bool)> {
        BTreeMap::from([
            (
                "data".to_string(),
                (
                    PathBuf::from(
                        "/var/lib/kubelet/pods/uid-0/volumes/kubernetes.io~empty-dir/data",
                    ),
                    false,
                ),
            ),
            (
                "cfg".to_string(),
                (
                    PathBuf::from(
                        "/var/lib/kubelet/pods/uid-0/volumes/kubernetes.io~configmap/cfg",
                    ),
                    true,
                ),
            ),
        ])
    }

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        }
    }

    fn prepare(dir: &Path, sub: &str) -> Result<PathBuf, String> {
        Ok(dir.join(sub))
    }

    #[test]
    fn full_config() {
        let container = Container {
            name: "app".into(),
            image: Some("busybox:1.36".into()),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec!["echo $(GREETING) from $(POD)".into()]),
            working_dir: Some("/work".into()),
            tty: Some(true),
            stdin: Some(true),
            volume_mounts: Some(vec![
                VolumeMount {
                    sub_path_expr: Some("logs/$(POD)".into()),
                    mount_propagation: Some("HostToContainer".into()),
                    ..mount("data", "/data")
                },
                VolumeMount {
                    read_only: Some(false),
                    ..mount("cfg", "etc/app/../cfg")
                },
            ]),
            ports: Some(vec![ContainerPort {
                container_port: 80,
                ..Default::default()
            }]),
            lifecycle: Some(Lifecycle {
                pre_stop: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(vec!["drain".into()]),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = pod(container.clone());
        let envs = vec![
            ("GREETING".to_string(), "hello".to_string()),
            ("POD".to_string(), "web-0".to_string()),
        ];
        let vols = volumes();
        let node = NodeResources {
            memory_capacity: 1 << 30,
            ..Default::default()
        };
        let inputs = ContainerInputs {
            restart_count: 3,
            image_ref: "sha256:abc",
            image_uid: Some(0),
            image_user: "",
            envs: &envs,
            volumes: &vols,
            etc_hosts: Some(Path::new("/var/lib/kubelet/pods/uid-0/etc-hosts")),
            termination_log: Some(Path::new(
                "/var/lib/kubelet/pods/uid-0/containers/app/1a2b3c4d",
            )),
            node: &node,
            security: SecurityOptions {
                seccomp_profile_root: Path::new("/var/lib/kubelet/seccomp"),
                seccomp_default: true,
                extra_supplemental_groups: &[],
            },
            pid_target: None,
            runtime_supports_rro: true,
            selinux_enabled: false,
        };
        let cfg = container_config(&p, &container, &inputs, &prepare).unwrap();
        let meta = cfg.metadata.as_ref().unwrap();
        assert_eq!((meta.name.as_str(), meta.attempt), ("app", 3));
        let image = cfg.image.as_ref().unwrap();
        assert_eq!(
            (image.image.as_str(), image.user_specified_image.as_str()),
            ("sha256:abc", "busybox:1.36")
        );
        assert_eq!(cfg.command, ["sh", "-c"]);
        assert_eq!(cfg.args, ["echo hello from web-0"]);
        assert_eq!(cfg.working_dir, "/work");
        assert_eq!(cfg.log_path, "app/3.log");
        assert!(cfg.tty && cfg.stdin && !cfg.stdin_once);
        assert_eq!(cfg.envs.len(), 2);
        let paths: Vec<(&str, &str, bool)> = cfg
            .mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.host_path.as_str(), m.readonly))
            .collect();
        assert_eq!(
            paths,
            [
                (
                    "/data",
                    "/var/lib/kubelet/pods/uid-0/volumes/kubernetes.io~empty-dir/data/logs/web-0",
                    false
                ),
                (
                    "/etc/cfg",
                    "/var/lib/kubelet/pods/uid-0/volumes/kubernetes.io~configmap/cfg",
                    true
                ),
                ("/etc/hosts", "/var/lib/kubelet/pods/uid-0/etc-hosts", false),
                (
                    "/dev/termination-log",
                    "/var/lib/kubelet/pods/uid-0/containers/app/1a2b3c4d",
                    false
                ),
            ]
        );
        assert_eq!(
            cfg.mounts[0].propagation,
            MountPropagation::PropagationHostToContainer as i32
        );
        assert_eq!(cfg.labels[CONTAINER_NAME_LABEL], "app");
        assert_eq!(cfg.labels[POD_UID_LABEL], "uid-0");
        let a = &cfg.annotations;
        assert_eq!(
            a[CONTAINER_HASH_ANNOTATION],
            format!("{:x}", container_hash(&container))
        );
        assert_eq!(a[RESTART_COUNT_ANNOTATION], "3");
        assert_eq!(
            a[TERMINATION_MESSAGE_PATH_ANNOTATION],
            "/dev/termination-log"
        );
        assert_eq!(a[TERMINATION_MESSAGE_POLICY_ANNOTATION], "File");
        assert_eq!(a[DELETION_GRACE_PERIOD_ANNOTATION], "10");
        assert_eq!(a[TERMINATION_GRACE_PERIOD_ANNOTATION], "30");
        assert_eq!(
            a[PRE_STOP_HANDLER_ANNOTATION],
            r#"{"exec":{"command":["drain"]}}"#
        );
        assert_eq!(a[PORTS_ANNOTATION], r#"[{"containerPort":80}]"#);
        let linux = cfg.linux.unwrap();
        let sc = linux.security_context.unwrap();
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(0));
        assert_eq!(linux.resources.unwrap().oom_score_adj, 1000);
    }

    fn base_inputs<'a>(
        vols: &'a BTreeMap<String, (PathBuf, bool)>,
        node: &'a NodeResources,
    ) -> ContainerInputs<'a> {
        ContainerInputs {
            restart_count: 0,
            image_ref: "img",
            image_uid: None,
            image_user: "",
            envs: &[],
            volumes: vols,
            etc_hosts: Some(Path::new("/pods/u/etc-hosts")),
            termination_log: None,
            node,
            security: SecurityOptions {
                seccomp_profile_root: Path::new("/s"),
                seccomp_default: false,
                extra_supplemental_groups: &[],
            },
            pid_target: Some("target-id"),
            runtime_supports_rro: false,
            selinux_enabled: true,
        }
    }

    #[test]
    fn mount_errors_and_own_hosts_file() {
        let vols = volumes();
        let node = NodeResources::default();
        let inputs = base_inputs(&vols, &node);
        let with = |mounts: Vec<VolumeMount>| Container {
            name: "app".into(),
            volume_mounts: Some(mounts),
            ..Default::default()
        };
        let err = |c: Container| container_mounts(&c, &inputs, &prepare).unwrap_err().0;
        assert_eq!(
            err(with(vec![mount("nope", "/x")])),
            "cannot find volume \"nope\" to mount into container \"app\""
        );
        assert_eq!(
            err(with(vec![VolumeMount {
                sub_path: Some("/abs".into()),
                ..mount("data", "/x")
            }])),
            "error SubPath `/abs` must not be an absolute path"
        );
        assert_eq!(
            err(with(vec![VolumeMount {
                sub_path: Some("a/../../b".into()),
                ..mount("data", "/x")
            }])),
            "unable to provision SubPath `a/../../b`: must not contain '..'"
        );
        assert_eq!(
            err(with(vec![VolumeMount {
                sub_path_expr: Some("$(MISSING)".into()),
                ..mount("data", "/x")
            }])),
            "missing value for MISSING"
        );
        assert_eq!(
            err(with(vec![VolumeMount {
                mount_propagation: Some("Sideways".into()),
                ..mount("data", "/x")
            }])),
            "invalid MountPropagation mode: \"Sideways\""
        );
        assert_eq!(
            err(with(vec![VolumeMount { recursive_read_only: Some("Enabled".into()), read_only: Some(true), ..mount("data", "/x") }])),
            "failed to resolve recursive read-only mode: volume \"data\" requested recursive read-only mode, but it is not supported by the runtime"
        );
        let failing =
            |_: &Path, _: &str| -> Result<PathBuf, String> { Err("symlink escapes".into()) };
        let c = with(vec![VolumeMount {
            sub_path: Some("x".into()),
            ..mount("data", "/x")
        }]);
        assert_eq!(
            container_mounts(&c, &inputs, &failing).unwrap_err().0,
            "failed to prepare subPath for volumeMount \"data\" of container \"app\""
        );
        // A container mounting its own /etc/hosts does not get the managed one.
        let own =
            container_mounts(&with(vec![mount("data", "/etc/hosts")]), &inputs, &prepare).unwrap();
        assert_eq!(own.len(), 1);
        // No termination log file, or an empty path: no mount.
        let plain = container_mounts(&with(vec![]), &inputs, &prepare).unwrap();
        assert_eq!(plain.len(), 1);
        assert!(plain[0].selinux_relabel);
    }

    #[test]
    fn run_as_non_root_and_pid_target() {
        let vols = volumes();
        let node = NodeResources::default();
        let inputs = ContainerInputs {
            image_uid: Some(0),
            ..base_inputs(&vols, &node)
        };
        let c = Container {
            name: "app".into(),
            ..Default::default()
        };
        let mut p = pod(c.clone());
        let cfg = container_config(&p, &c, &inputs, &prepare).unwrap();
        let ns = cfg
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(
            (ns.pid, ns.target_id.as_str()),
            (NamespaceMode::Target as i32, "target-id")
        );
        if let Some(s) = p.spec.as_mut() {
            s.security_context = Some(PodSecurityContext {
                run_as_non_root: Some(true),
                ..Default::default()
            });
        }
        assert_eq!(
            container_config(&p, &c, &inputs, &prepare).unwrap_err().0,
            "container has runAsNonRoot and image will run as root (pod: \"web-0_ns(uid-0)\", container: app)"
        );
    }
}
