//! One pass over a pod that should run: mount its volumes, make sure it has a ready sandbox,
//! run its init containers in order and then its containers, restarting what its restart
//! policy asks for with crash-loop back-off, as upstream's `SyncPod` / `computePodActions`.
//! The status is reported at the end from a fresh read of the runtime.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::api_status::{self, Terminal, Waiting};
use super::assemble::{self, Prepared, Sandbox};
use super::context::Shared;
use super::kill;
use super::runtime_state::{self, PodRuntime};
use crate::events::{self, Kind};
use crate::runtime::api;

/// What a sync learned: why containers wait, and when to look again.
#[derive(Default)]
pub struct Outcome {
    pub waiting: HashMap<String, Waiting>,
    /// The soonest a timer (back-off, retry) wants the pod synced again.
    pub wake_in: Option<Duration>,
    pub terminal: Option<Terminal>,
}

impl Outcome {
    fn wake(&mut self, d: Duration) {
        self.wake_in = Some(self.wake_in.map_or(d, |w| w.min(d)));
    }

    fn wait(&mut self, container: &str, reason: &str, message: String) {
        self.waiting.insert(
            container.to_string(),
            Waiting {
                reason: reason.into(),
                message,
            },
        );
    }
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// How long until the pod's activeDeadlineSeconds runs out (zero once it has).
fn until_deadline(pod: &Pod) -> Option<Duration> {
    let deadline = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?.0;
    let active = k8s_openapi::jiff::Timestamp::now()
        .duration_since(start)
        .as_secs();
    Some(Duration::from_secs(
        u64::try_from(deadline - active).unwrap_or(0),
    ))
}

/// Syncs a pod that should be running. Returns what the status should say beyond the
/// runtime's facts.
pub async fn sync(shared: &Shared, pod: &Pod) -> Outcome {
    let mut out = Outcome::default();
    let rt = match runtime_state::read(shared.runtime.as_ref(), uid(pod)).await {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(pod = %assemble::pod_key(pod), error = %e.message(), "reading pod from the runtime");
            out.wake(Duration::from_secs(1));
            return out;
        }
    };
    let deadline = until_deadline(pod);
    if deadline == Some(Duration::ZERO) {
        let message = "Pod was active on the node longer than the specified deadline";
        shared
            .events
            .record(
                &events::pod_ref(pod),
                Kind::Normal,
                "DeadlineExceeded",
                message,
            )
            .await;
        kill::stop_pod(shared, pod, &rt, None).await;
        out.terminal = Some(Terminal {
            phase: "Failed",
            reason: "DeadlineExceeded".into(),
            message: message.into(),
            disruption: false,
        });
        return out;
    }
    if let Some(d) = deadline {
        out.wake(d);
    }
    act(shared, pod, &rt, &mut out).await;
    out
}

async fn act(shared: &Shared, pod: &Pod, rt: &PodRuntime, out: &mut Outcome) {
    let prepared = match assemble::prepare(shared, pod).await {
        Ok(p) => p,
        Err(e) => {
            shared
                .events
                .record(&events::pod_ref(pod), Kind::Warning, &e.reason, &e.message)
                .await;
            out.wake(Duration::from_secs(2));
            return;
        }
    };
    let Some(sandbox) = ensure_sandbox(shared, pod, rt, out).await else {
        return;
    };
    let rt = match runtime_state::read(shared.runtime.as_ref(), uid(pod)).await {
        Ok(rt) => rt,
        Err(_) => {
            out.wake(Duration::from_secs(1));
            return;
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    // Init containers run one at a time, in order; sidecars among them keep running.
    for c in spec.init_containers.iter().flatten() {
        let latest = rt.latest(&c.name);
        if is_sidecar(c) {
            match latest {
                Some(l) if runtime_state::is_running(l) => {
                    if !assemble::started(shared, pod, c, l) {
                        return;
                    }
                    continue;
                }
                _ => {
                    if !start_or_back_off(shared, pod, c, &rt, &sandbox, &prepared, out).await {
                        return;
                    }
                    // A sidecar must have started before the next init container runs.
                    return;
                }
            }
        }
        match latest {
            Some(l) if runtime_state::is_exited(l) && l.exit_code == 0 => continue,
            Some(l) if runtime_state::is_exited(l) => {
                if restart_policy(pod) == "Never" {
                    return;
                }
                start_or_back_off(shared, pod, c, &rt, &sandbox, &prepared, out).await;
                return;
            }
            Some(_) => return,
            None => {
                start_or_back_off(shared, pod, c, &rt, &sandbox, &prepared, out).await;
                return;
            }
        }
    }
    for c in &spec.containers {
        match rt.latest(&c.name) {
            Some(l) if runtime_state::is_running(l) => {
                if let Some(why) = assemble::needs_restart(shared, pod, c, l) {
                    kill::stop_container(shared, pod, c, l, why.as_str(), None).await;
                    out.wake(Duration::ZERO);
                }
            }
            Some(l) if runtime_state::is_exited(l) => {
                let restart = match restart_policy(pod) {
                    "Always" => true,
                    "OnFailure" => l.exit_code != 0,
                    _ => false,
                };
                if restart {
                    start_or_back_off(shared, pod, c, &rt, &sandbox, &prepared, out).await;
                }
            }
            Some(l) => {
                // Created but never started (the kubelet stopped in between): start it.
                let _ = shared
                    .runtime
                    .start_container(api::StartContainerRequest {
                        container_id: l.id.clone(),
                    })
                    .await;
            }
            None => {
                start_or_back_off(shared, pod, c, &rt, &sandbox, &prepared, out).await;
            }
        }
    }
    // Ephemeral containers (`kubectl debug`) run once each and are never restarted.
    for e in spec.ephemeral_containers.iter().flatten() {
        if rt.latest(&e.name).is_some() {
            continue;
        }
        let Some(c) = ephemeral_as_container(e) else {
            continue;
        };
        let target = e
            .target_container_name
            .as_deref()
            .and_then(|t| rt.latest(t))
            .filter(|t| runtime_state::is_running(t))
            .map(|t| t.id.clone());
        if let Err(err) =
            assemble::start_container(shared, pod, &c, target.as_deref(), 0, &sandbox, &prepared)
                .await
        {
            out.wait(&c.name, &err.reason, err.message);
        }
    }
    remove_dead_instances(shared, &rt).await;
}

/// An ephemeral container as the Container it is run as (the same fields, less the target).
fn ephemeral_as_container(e: &k8s_openapi::api::core::v1::EphemeralContainer) -> Option<Container> {
    let mut v = serde_json::to_value(e).ok()?;
    v.as_object_mut()?.remove("targetContainerName");
    serde_json::from_value(v).ok()
}

/// The ready sandbox, creating one (after stopping what is left of the old) when there is
/// none. None when the pod cannot have one now.
async fn ensure_sandbox(
    shared: &Shared,
    pod: &Pod,
    rt: &PodRuntime,
    out: &mut Outcome,
) -> Option<Sandbox> {
    let attempt = u32::try_from(rt.sandboxes.len()).unwrap_or(0);
    if let Some(s) = rt.ready_sandbox() {
        let attempt = s.metadata.as_ref().map_or(0, |m| m.attempt);
        return match assemble::sandbox_config(shared, pod, attempt, false).await {
            Ok((config, _)) => Some(Sandbox {
                id: s.id.clone(),
                config,
                ips: rt.pod_ips(),
            }),
            Err(e) => {
                out.wake(Duration::from_secs(2));
                tracing::warn!(pod = %assemble::pod_key(pod), error = %e, "sandbox config");
                None
            }
        };
    }
    // A pod that never restarts gets no second sandbox once its containers ran.
    if !rt.sandboxes.is_empty() && restart_policy(pod) == "Never" && !rt.containers.is_empty() {
        return None;
    }
    if !rt.sandboxes.is_empty() {
        kill::stop_pod(shared, pod, rt, None).await;
        shared
            .events
            .record(
                &events::pod_ref(pod),
                Kind::Normal,
                "SandboxChanged",
                "Pod sandbox changed, it will be killed and re-created.",
            )
            .await;
    }
    let (config, handler) = match assemble::sandbox_config(shared, pod, attempt, true).await {
        Ok(c) => c,
        Err(e) => {
            shared
                .events
                .record(
                    &events::pod_ref(pod),
                    Kind::Warning,
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                )
                .await;
            out.wake(Duration::from_secs(2));
            return None;
        }
    };
    match shared
        .runtime
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler,
        })
        .await
    {
        Ok(r) => {
            let ips = shared
                .runtime
                .pod_sandbox_status(api::PodSandboxStatusRequest {
                    pod_sandbox_id: r.pod_sandbox_id.clone(),
                    verbose: false,
                })
                .await
                .ok()
                .and_then(|st| st.status)
                .and_then(|st| st.network)
                .map(|n| {
                    std::iter::once(n.ip)
                        .chain(n.additional_ips.into_iter().map(|i| i.ip))
                        .filter(|ip| !ip.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            Some(Sandbox {
                id: r.pod_sandbox_id,
                config,
                ips,
            })
        }
        Err(e) => {
            shared
                .events
                .record(
                    &events::pod_ref(pod),
                    Kind::Warning,
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {}", e.message()),
                )
                .await;
            out.wake(Duration::from_secs(2));
            None
        }
    }
}

/// Starts the container unless its last exit is still in back-off. True when it started.
#[allow(clippy::too_many_arguments)]
async fn start_or_back_off(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    rt: &PodRuntime,
    sandbox: &Sandbox,
    prepared: &Prepared,
    out: &mut Outcome,
) -> bool {
    let previous = rt.latest(&c.name);
    if let Some(p) = previous.filter(|p| runtime_state::is_exited(p)) {
        let key = format!("{}/{}", uid(pod), c.name);
        let delay = shared.backoff.delay_for(&key, p.started_at, p.finished_at);
        let finished = k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(p.finished_at))
            .unwrap_or_default();
        let since = k8s_openapi::jiff::Timestamp::now().duration_since(finished);
        let elapsed = Duration::from_secs_f64(since.as_secs_f64().max(0.0));
        if elapsed < delay {
            let pod_desc = crate::container::format_pod(pod);
            out.wait(
                &c.name,
                "CrashLoopBackOff",
                format!(
                    "back-off {}s restarting failed container={} pod={pod_desc}",
                    delay.as_secs(),
                    c.name
                ),
            );
            shared
                .events
                .record(
                    &events::container_ref(pod, &c.name),
                    Kind::Warning,
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container {} in pod {pod_desc}",
                        c.name
                    ),
                )
                .await;
            out.wake(delay - elapsed);
            return false;
        }
    }
    let restart_count = previous.map_or(0, |p| runtime_state::restart_count(p) + 1);
    match assemble::start_container(shared, pod, c, None, restart_count, sandbox, prepared).await {
        Ok(()) => true,
        Err(e) => {
            out.wait(&c.name, &e.reason, e.message.clone());
            out.wake(e.retry_in);
            false
        }
    }
}

/// Keeps the newest two instances of each container (the current one and the one
/// `--previous` shows); older dead ones are removed, as upstream's container GC does.
async fn remove_dead_instances(shared: &Shared, rt: &PodRuntime) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in &rt.containers {
        let n = seen.entry(runtime_state::container_name(c)).or_insert(0);
        *n += 1;
        if *n > 2 && runtime_state::is_exited(c) {
            let _ = shared
                .runtime
                .remove_container(api::RemoveContainerRequest {
                    container_id: c.id.clone(),
                })
                .await;
        }
    }
}

/// Builds and reports the pod's status from a fresh read of the runtime.
pub async fn report(shared: &Shared, pod: &Pod, outcome: &Outcome) {
    let Ok(rt) = runtime_state::read(shared.runtime.as_ref(), uid(pod)).await else {
        return;
    };
    let host_ips = shared.host_ips();
    let ready = |name: &str, id: &str| assemble::ready(shared, pod, name, id);
    let started = |name: &str, id: &str| assemble::started_by_id(shared, pod, name, id);
    let qos = crate::container::qos::pod_qos_class(pod);
    let status = api_status::build(&api_status::Inputs {
        pod,
        runtime: &rt,
        runtime_name: &shared.runtime_name,
        host_ips: &host_ips,
        waiting: &outcome.waiting,
        ready: &ready,
        started: &started,
        terminal: outcome.terminal.as_ref(),
        qos_class: qos,
        now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ),
    });
    shared.status.set(pod, status);
}
