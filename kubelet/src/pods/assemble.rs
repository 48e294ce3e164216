//! The steps of a sync that touch the node: volumes, the sandbox config, pulling an image,
//! creating and starting a container with its hooks, and asking the probes. Each turns the
//! kubelet's parts (`volumes`, `container`, `images`, `hooks`, `prober`) into one call for
//! the pod worker, and their events into Events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::Api;

use super::context::Shared;
use super::labels;
use crate::container::{self, config, env, hosts, resources, sandbox};
use crate::events::{self, Kind};
use crate::prober::RunState;
use crate::runtime::api;
use crate::volumes;

/// What a pod needs on the node before its sandbox and containers: its volumes.
pub struct Prepared {
    pub volumes: BTreeMap<String, (PathBuf, bool)>,
}

/// A ready sandbox: its id and the config it was made with.
pub struct Sandbox {
    pub id: String,
    pub config: api::PodSandboxConfig,
    /// The pod's IPs, primary first.
    pub ips: Vec<String>,
}

/// A step that failed, as the Event to record.
pub struct StepError {
    pub reason: String,
    pub message: String,
}

/// Why a container is not starting, for its waiting state.
pub struct StartError {
    pub reason: String,
    pub message: String,
    pub retry_in: Duration,
}

pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn pod_dir(shared: &Shared, pod: &Pod) -> PathBuf {
    volumes::pod_dir(&shared.settings.dirs.root, uid(pod))
}

/// Mounts (or refreshes) the pod's volumes and starts its probes.
pub async fn prepare(shared: &Shared, pod: &Pod) -> Result<Prepared, StepError> {
    shared.probes.add_pod(pod);
    let mounted = volumes::mount_all(&shared.volumes, pod)
        .await
        .map_err(|e| StepError {
            reason: "FailedMount".into(),
            message: e.to_string(),
        })?;
    Ok(Prepared {
        volumes: mounted
            .volumes
            .into_iter()
            .map(|(name, v)| (name, (v.host_path, v.read_only)))
            .collect(),
    })
}

/// Unmounts the pod's volumes and forgets its probes, once its containers are gone.
pub async fn release(shared: &Shared, pod: &Pod) {
    shared.probes.remove_pod(uid(pod));
    if let Err(e) = volumes::unmount_all(&shared.volumes, uid(pod)).await {
        tracing::warn!(pod = %pod_key(pod), error = %e, "cleaning up pod volumes");
    }
    let logs = sandbox::pod_logs_directory(
        &shared.settings.dirs.pod_logs,
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or(""),
        uid(pod),
    );
    let _ = std::fs::remove_dir_all(logs);
}

fn dns(shared: &Shared) -> sandbox::DnsSettings {
    sandbox::DnsSettings {
        cluster_dns: shared.settings.cluster_dns.clone(),
        cluster_domain: shared.settings.cluster_domain.clone(),
        resolv_conf: std::fs::read_to_string(&shared.settings.resolv_conf).ok(),
        node_ips: shared.host_ips(),
    }
}

/// The sandbox config and runtime handler for the pod's `attempt`-th sandbox.
pub async fn sandbox_config(
    shared: &Shared,
    pod: &Pod,
    attempt: u32,
    creating: bool,
) -> Result<(api::PodSandboxConfig, String), String> {
    let qos = container::qos::pod_qos_class(pod);
    let cgroup_parent = resources::pod_cgroup_parent(
        &shared.settings.cgroup_root,
        resources::CgroupDriver::Cgroupfs,
        qos,
        uid(pod),
    );
    let dns = dns(shared);
    let built = sandbox::pod_sandbox_config(
        pod,
        &sandbox::SandboxInputs {
            attempt,
            pod_logs_root: &shared.settings.dirs.pod_logs,
            cgroup_parent: &cgroup_parent,
            dns: &dns,
            node: &shared.node_resources,
            extra_supplemental_groups: &[],
        },
    )
    .map_err(|e| e.to_string())?;
    // The config is rebuilt on every sync; its warnings belong to the sandbox's creation.
    for e in built.events.iter().filter(|_| creating) {
        shared
            .events
            .record(&events::pod_ref(pod), Kind::Warning, e.reason, &e.message)
            .await;
    }
    let mut config = built.config;
    config
        .labels
        .insert(labels::KUBELET_MANAGED.into(), "true".into());
    let class = match pod.spec.as_ref().and_then(|s| s.runtime_class_name.clone()) {
        Some(name) if !name.is_empty() => Api::<RuntimeClass>::all(shared.client.clone())
            .get_opt(&name)
            .await
            .map_err(|e| e.to_string())?,
        _ => None,
    };
    let handler = sandbox::runtime_handler(pod, class.as_ref()).map_err(|e| e.to_string())?;
    Ok((config, handler))
}

/// The pod's image pull secrets that exist.
async fn pull_secrets(shared: &Shared, pod: &Pod) -> Vec<Secret> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), ns);
    let mut out = Vec::new();
    for r in pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
    {
        if let Ok(Some(s)) = api.get_opt(&r.name).await {
            out.push(s);
        }
    }
    out
}

/// The pod's current IPs, from the runtime.
async fn pod_ips(shared: &Shared, pod: &Pod) -> Vec<String> {
    super::runtime_state::read(shared.runtime.as_ref(), uid(pod))
        .await
        .map(|rt| rt.pod_ips())
        .unwrap_or_default()
}

/// Writes the pod's managed /etc/hosts; returns its path.
fn write_hosts(shared: &Shared, pod: &Pod, ips: &[String]) -> Result<PathBuf, String> {
    let (hostname, domain) = hosts::pod_hostname_and_domain(pod, &shared.settings.cluster_domain)
        .map_err(|e| e.to_string())?;
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let text = hosts::hosts_file_content(pod, ips, &hostname, &domain, &node_hosts);
    let dir = pod_dir(shared, pod);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("etc-hosts");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    Ok(path)
}

/// The empty file behind one container instance's termination message path.
fn termination_log(
    shared: &Shared,
    pod: &Pod,
    name: &str,
    restart: u32,
) -> Result<PathBuf, String> {
    let dir = pod_dir(shared, pod).join("containers").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{restart}"));
    std::fs::write(&path, b"").map_err(|e| e.to_string())?;
    // Any user in the container may write its message.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| e.to_string())?;
    Ok(path)
}

fn config_error(message: String) -> StartError {
    StartError {
        reason: "CreateContainerConfigError".into(),
        message,
        retry_in: Duration::from_secs(2),
    }
}

/// Pulls the image if needed, then creates and starts the container and runs its postStart
/// hook, recording upstream's events on the way.
pub async fn start_container(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    pid_target: Option<&str>,
    restart_count: i32,
    sandbox: &Sandbox,
    prepared: &Prepared,
) -> Result<(), StartError> {
    let sandbox_config = &sandbox.config;
    let object = events::container_ref(pod, &c.name);
    let secrets = pull_secrets(shared, pod).await;
    let pulled = shared
        .images
        .ensure_image(
            shared.runtime.as_ref(),
            pod,
            c,
            &secrets,
            Some(sandbox_config),
        )
        .await;
    for e in &pulled.events {
        shared
            .events
            .record(&object, e.event_type, e.reason, &e.message)
            .await;
    }
    let image_ref = match pulled.image {
        Ok(r) => r,
        Err(e) => {
            let retry_in = shared
                .images
                .backoff_delay(uid(pod), c.image.as_deref().unwrap_or(""))
                .unwrap_or(Duration::from_secs(1));
            return Err(StartError {
                reason: e.reason().to_string(),
                message: e.message.clone(),
                retry_in,
            });
        }
    };
    let (image_uid, image_user) = image_user(shared, &image_ref).await;
    let ips = sandbox.ips.clone();
    let host_ips = shared.host_ips();
    let services = shared.services.state();
    let services: Vec<_> = services.iter().map(|s| (**s).clone()).collect();
    let envs = env::make_environment(
        &env::EnvContext {
            pod,
            pod_ips: &ips,
            host_ips: &host_ips,
            node_allocatable: &shared.volumes.node_allocatable,
            services: &services,
        },
        c,
        &env::ApiLookup::new(shared.client.clone()),
    )
    .await
    .map_err(|e| config_error(e.to_string()))?;
    let etc_hosts = if hosts::should_mount_hosts_file(&ips)
        || pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
    {
        Some(write_hosts(shared, pod, &ips).map_err(config_error)?)
    } else {
        None
    };
    let restart = u32::try_from(restart_count).unwrap_or(0);
    let term_log = termination_log(shared, pod, &c.name, restart).map_err(config_error)?;
    let log_dir = Path::new(&sandbox_config.log_directory).join(&c.name);
    std::fs::create_dir_all(&log_dir).map_err(|e| config_error(e.to_string()))?;
    let seccomp_root = shared.settings.dirs.root.join("seccomp");
    let mut cfg = config::container_config(
        pod,
        c,
        &config::ContainerInputs {
            restart_count: restart,
            image_ref: &image_ref,
            image_uid,
            image_user: &image_user,
            envs: &envs,
            volumes: &prepared.volumes,
            etc_hosts: etc_hosts.as_deref(),
            termination_log: Some(&term_log),
            node: &shared.node_resources,
            security: container::security::SecurityOptions {
                seccomp_profile_root: &seccomp_root,
                seccomp_default: false,
                extra_supplemental_groups: &[],
            },
            pid_target,
            runtime_supports_rro: false,
            selinux_enabled: false,
        },
        &config::VolumeSubPaths,
    )
    .map_err(|e| config_error(e.to_string()))?;
    cfg.labels
        .insert(labels::KUBELET_MANAGED.into(), "true".into());
    let created = shared
        .runtime
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.id.clone(),
            config: Some(cfg),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await;
    let id = match created {
        Ok(r) => r.container_id,
        Err(e) => {
            let message = e.message().to_string();
            shared
                .events
                .record(
                    &object,
                    Kind::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                )
                .await;
            return Err(StartError {
                reason: "CreateContainerError".into(),
                message,
                retry_in: Duration::from_secs(2),
            });
        }
    };
    shared
        .events
        .record(
            &object,
            Kind::Normal,
            "Created",
            &format!("Created container: {}", c.name),
        )
        .await;
    if let Err(e) = shared
        .runtime
        .start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
    {
        let message = e.message().to_string();
        shared
            .events
            .record(
                &object,
                Kind::Warning,
                "Failed",
                &format!("Error: {message}"),
            )
            .await;
        return Err(StartError {
            reason: "RunContainerError".into(),
            message,
            retry_in: Duration::from_secs(2),
        });
    }
    shared
        .events
        .record(
            &object,
            Kind::Normal,
            "Started",
            &format!("Started container {}", c.name),
        )
        .await;
    shared
        .probes
        .update_pod_ip(uid(pod), ips.first().map(String::as_str));
    shared.probes.update_container(
        uid(pod),
        &c.name,
        &id,
        RunState::Running {
            started_at: SystemTime::now(),
        },
    );
    let hook = crate::hooks::post_start(&crate::hooks::HookTarget {
        runtime: shared.runtime.as_ref(),
        pod,
        container: c,
        container_id: &id,
        pod_ip: ips.first().map(String::as_str),
    })
    .await;
    record_hook_events(shared, pod, c, &hook.events).await;
    if let Err(message) = hook.result {
        let _ = shared
            .runtime
            .stop_container(api::StopContainerRequest {
                container_id: id,
                timeout: 2,
            })
            .await;
        return Err(StartError {
            reason: crate::hooks::POST_START_HOOK_ERROR.into(),
            message,
            retry_in: Duration::from_secs(1),
        });
    }
    Ok(())
}

async fn record_hook_events(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    evs: &[crate::hooks::HookEvent],
) {
    for e in evs {
        let object = match e.object {
            crate::hooks::EventObject::Pod => events::pod_ref(pod),
            crate::hooks::EventObject::Container => events::container_ref(pod, &c.name),
        };
        shared
            .events
            .record(&object, e.event_type, e.reason, &e.message)
            .await;
    }
}

/// The image's configured user: a uid when numeric, else the name.
async fn image_user(shared: &Shared, image_ref: &str) -> (Option<i64>, String) {
    let status = shared
        .runtime
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image_ref.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .ok()
        .and_then(|r| r.image);
    match status {
        Some(img) => {
            let uid = img.uid.map(|u| u.value);
            (uid, img.username)
        }
        None => (None, String::new()),
    }
}

/// Runs the container's preStop hook within `grace`.
pub async fn pre_stop(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    status: &api::ContainerStatus,
    grace: Duration,
) {
    let ips = pod_ips(shared, pod).await;
    let run = crate::hooks::pre_stop(
        &crate::hooks::HookTarget {
            runtime: shared.runtime.as_ref(),
            pod,
            container: c,
            container_id: &status.id,
            pod_ip: ips.first().map(String::as_str),
        },
        i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
    )
    .await;
    record_hook_events(shared, pod, c, &run.events).await;
}

/// Tells the probes about a running container instance (a new id restarts its probing).
fn observe(shared: &Shared, pod: &Pod, name: &str, status: &api::ContainerStatus) {
    let started_at =
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(status.started_at).unwrap_or(0));
    shared
        .probes
        .update_container(uid(pod), name, &status.id, RunState::Running { started_at });
}

/// Why a running container must be restarted: a failed liveness or startup probe, or a
/// spec whose hash changed.
pub fn needs_restart(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    status: &api::ContainerStatus,
) -> Option<String> {
    observe(shared, pod, &c.name, status);
    let want = format!("{:x}", config::container_hash(c));
    if status
        .annotations
        .get(config::CONTAINER_HASH_ANNOTATION)
        .is_some_and(|h| *h != want)
    {
        return Some(format!(
            "Container {} definition changed, will be restarted",
            c.name
        ));
    }
    for (kind, what) in [
        (crate::prober::ProbeKind::Liveness, "liveness"),
        (crate::prober::ProbeKind::Startup, "startup"),
    ] {
        if shared.probes.result(&status.id, kind) == Some(crate::prober::ProbeResult::Failure) {
            return Some(format!(
                "Container {} failed {what} probe, will be restarted",
                c.name
            ));
        }
    }
    None
}

/// Whether a running sidecar has started (its startup probe passed, or it has none).
pub fn started(shared: &Shared, pod: &Pod, c: &Container, status: &api::ContainerStatus) -> bool {
    observe(shared, pod, &c.name, status);
    shared.probes.started(uid(pod), &c.name)
}

pub fn started_by_id(shared: &Shared, pod: &Pod, name: &str, _id: &str) -> bool {
    shared.probes.started(uid(pod), name)
}

pub fn ready(shared: &Shared, pod: &Pod, name: &str, _id: &str) -> bool {
    shared.probes.ready(uid(pod), name)
}
