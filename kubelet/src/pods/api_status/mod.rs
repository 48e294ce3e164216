//! The PodStatus the kubelet reports, built from what the runtime has and what the last sync
//! learned, as upstream's `generateAPIPodStatus`: phase, the kubelet's conditions,
//! container statuses with state, last state, restarts and readiness, and the pod's IPs.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::runtime_state::{self, PodRuntime};
use crate::runtime::api;

/// Why a container is not running, as the last sync found it (CrashLoopBackOff,
/// ErrImagePull, CreateContainerConfigError...).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// A phase the kubelet decided on its own (activeDeadlineSeconds, eviction).
#[derive(Debug, Clone)]
pub struct Terminal {
    pub phase: &'static str,
    pub reason: String,
    pub message: String,
    /// The kubelet itself ended the pod (eviction): a DisruptionTarget condition says so.
    pub disruption: bool,
}

pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a PodRuntime,
    pub runtime_name: &'a str,
    pub host_ips: &'a [String],
    pub waiting: &'a HashMap<String, Waiting>,
    /// Whether a running container passes its readiness probe (true without one).
    pub ready: &'a dyn Fn(&str, &str) -> bool,
    /// Whether a running container passed its startup probe (true without one).
    pub started: &'a dyn Fn(&str, &str) -> bool,
    pub terminal: Option<&'a Terminal>,
    pub qos_class: &'a str,
    pub now: Time,
}

fn time_from_nanos(n: i64) -> Option<Time> {
    (n > 0).then(|| {
        Time(k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(n)).unwrap_or_default())
    })
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn terminated(c: &api::ContainerStatus, runtime_name: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(if c.reason.is_empty() {
            if c.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_string()
        } else {
            c.reason.clone()
        }),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: time_from_nanos(c.started_at),
        finished_at: time_from_nanos(c.finished_at),
        container_id: Some(format!("{runtime_name}://{}", c.id)),
        signal: None,
    }
}

/// One container's status: its newest instance's state, the one before as last state.
fn container_status(spec: &Container, inputs: &Inputs<'_>, init: bool) -> ContainerStatus {
    let name = spec.name.as_str();
    let mut instances = inputs.runtime.named(name);
    let latest = instances.next();
    let previous = instances.find(|c| runtime_state::is_exited(c));
    let old = inputs
        .pod
        .status
        .as_ref()
        .and_then(|s| {
            if init {
                s.init_container_statuses.as_ref()
            } else {
                s.container_statuses.as_ref()
            }
        })
        .and_then(|l| l.iter().find(|c| c.name == name));
    let mut status = ContainerStatus {
        name: name.to_string(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        ..Default::default()
    };
    let waiting = inputs.waiting.get(name);
    match latest {
        Some(c) => {
            status.container_id = Some(format!("{}://{}", inputs.runtime_name, c.id));
            status.image_id = c.image_ref.clone();
            status.restart_count = runtime_state::restart_count(c);
            if runtime_state::is_running(c) {
                let started = (inputs.started)(name, &c.id);
                status.started = Some(started);
                status.ready = started && (inputs.ready)(name, &c.id);
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time_from_nanos(c.started_at),
                    }),
                    ..Default::default()
                });
            } else if runtime_state::is_exited(c) {
                let t = terminated(c, inputs.runtime_name);
                match waiting {
                    // Waiting to be restarted: the exit becomes the last state.
                    Some(w) => {
                        status.state = Some(waiting_state(w));
                        status.last_state = Some(ContainerState {
                            terminated: Some(t),
                            ..Default::default()
                        });
                    }
                    None => {
                        status.state = Some(ContainerState {
                            terminated: Some(t),
                            ..Default::default()
                        });
                    }
                }
            } else {
                status.state = Some(waiting_state(waiting.unwrap_or(&Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                })));
            }
            if status.last_state.is_none() {
                if let Some(p) = previous {
                    status.last_state = Some(ContainerState {
                        terminated: Some(terminated(p, inputs.runtime_name)),
                        ..Default::default()
                    });
                }
            }
        }
        None => {
            // Never run (or its instances were removed): keep what was reported before
            // about restarts and the last exit, as upstream does from the old status.
            if let Some(o) = old {
                status.restart_count = o.restart_count;
                status.last_state = o.last_state.clone();
                if o.state.as_ref().is_some_and(|s| s.terminated.is_some()) && waiting.is_none() {
                    status.state = o.state.clone();
                    status.container_id = o.container_id.clone();
                    status.image_id = o.image_id.clone();
                    return status;
                }
            }
            let default_reason = if init {
                "PodInitializing"
            } else {
                "ContainerCreating"
            };
            status.state = Some(waiting_state(waiting.unwrap_or(&Waiting {
                reason: default_reason.into(),
                message: String::new(),
            })));
        }
    }
    if spec.resources.is_some() && status.state.as_ref().is_some_and(|s| s.running.is_some()) {
        status.resources = spec.resources.clone();
    }
    status
}

fn waiting_state(w: &Waiting) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.reason.clone()),
            message: (!w.message.is_empty()).then(|| w.message.clone()),
        }),
        ..Default::default()
    }
}

/// Whether the pod's init containers are done: every regular one exited 0 and every
/// sidecar started.
fn initialized(spec_inits: &[Container], statuses: &[ContainerStatus]) -> Vec<String> {
    spec_inits
        .iter()
        .filter(|c| {
            let s = statuses.iter().find(|s| s.name == c.name);
            let done = if is_sidecar(c) {
                s.is_some_and(|s| s.started == Some(true))
            } else {
                s.and_then(|s| s.state.as_ref())
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            };
            !done
        })
        .map(|c| c.name.clone())
        .collect()
}

/// Upstream's `getPhase`.
fn phase(
    pod: &Pod,
    inits: &[ContainerStatus],
    containers: &[ContainerStatus],
    pending_init: bool,
) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_specs = spec.init_containers.unwrap_or_default();
    // An init container that failed for good fails the pod.
    if policy == "Never" {
        let failed_init = init_specs.iter().filter(|c| !is_sidecar(c)).any(|c| {
            inits
                .iter()
                .find(|s| s.name == c.name)
                .and_then(|s| s.state.as_ref())
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0)
        });
        if failed_init {
            return "Failed";
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in containers {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                None => waiting += 1,
            }
        }
    }
    if pending_init {
        return "Pending";
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            "OnFailure" if stopped != succeeded => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

fn condition(
    pod: &Pod,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let transition = old
        .filter(|o| o.status == status)
        .and_then(|o| o.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(transition),
        last_probe_time: None,
        observed_generation: None,
    }
}

fn unready_message(kind: &str, names: &[String]) -> String {
    format!("containers with {kind} status: [{}]", names.join(" "))
}

pub fn build(inputs: &Inputs<'_>) -> PodStatus {
    let pod = inputs.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let inits: Vec<ContainerStatus> = init_specs
        .iter()
        .map(|c| container_status(c, inputs, true))
        .collect();
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, inputs, false))
        .collect();
    let not_initialized = initialized(&init_specs, &inits);
    let mut containers = containers;
    if !not_initialized.is_empty() {
        // Upstream shows containers waiting on init containers as PodInitializing.
        for c in &mut containers {
            if let Some(w) = c.state.as_mut().and_then(|s| s.waiting.as_mut()) {
                if w.reason.as_deref() == Some("ContainerCreating") {
                    w.reason = Some("PodInitializing".into());
                }
            }
        }
    }
    let mut phase = phase(pod, &inits, &containers, !not_initialized.is_empty());
    let (mut reason, mut message) = (None, None);
    if let Some(t) = inputs.terminal {
        phase = t.phase;
        reason = (!t.reason.is_empty()).then(|| t.reason.clone());
        message = (!t.message.is_empty()).then(|| t.message.clone());
    }
    // A pod that already finished never goes back.
    if matches!(old.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        phase = if old.phase.as_deref() == Some("Succeeded") {
            "Succeeded"
        } else {
            "Failed"
        };
        reason = reason.or(old.reason.clone());
        message = message.or(old.message.clone());
    }
    let terminal = matches!(phase, "Succeeded" | "Failed");

    let now = &inputs.now;
    let sandbox_ready = inputs.runtime.ready_sandbox().is_some();
    let mut unready: Vec<String> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.clone())
        .collect();
    // Sidecars count toward readiness as regular containers do.
    for (c, s) in init_specs.iter().zip(&inits) {
        if is_sidecar(c) && !s.ready {
            unready.insert(0, s.name.clone());
        }
    }
    let containers_ready = unready.is_empty() && !terminal;
    let (ready_reason, ready_message) = if terminal {
        (Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(unready_message("unready", &unready)),
        )
    };
    let gates_message = readiness_gates_problem(pod);
    let mut conditions = vec![
        condition(
            pod,
            "PodReadyToStartContainers",
            sandbox_ready && !terminal,
            None,
            None,
            now,
        ),
        if not_initialized.is_empty() {
            condition(pod, "Initialized", true, None, None, now)
        } else {
            condition(
                pod,
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(unready_message("incomplete", &not_initialized)),
                now,
            )
        },
        condition(
            pod,
            "ContainersReady",
            containers_ready,
            ready_reason,
            ready_message.clone(),
            now,
        ),
        match (&gates_message, containers_ready) {
            (Some(m), true) => condition(
                pod,
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some(m.clone()),
                now,
            ),
            _ => condition(
                pod,
                "Ready",
                containers_ready,
                ready_reason,
                ready_message,
                now,
            ),
        },
    ];
    // Conditions other writers own (PodScheduled, DisruptionTarget, readiness gates) stay.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ];
    for c in old.conditions.clone().unwrap_or_default() {
        if !ours.contains(&c.type_.as_str()) {
            conditions.push(c);
        }
    }
    let order = |t: &str| match t {
        "PodReadyToStartContainers" => 0,
        "Initialized" => 1,
        "Ready" => 2,
        "ContainersReady" => 3,
        "PodScheduled" => 4,
        _ => 5,
    };
    if let Some(t) = inputs.terminal.filter(|t| t.disruption) {
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(condition(
            pod,
            "DisruptionTarget",
            true,
            Some("TerminationByKubelet"),
            Some(t.message.clone()),
            now,
        ));
    }
    conditions.sort_by_key(|c| order(&c.type_));

    let host_network = spec.host_network.unwrap_or(false);
    let mut pod_ips = if host_network {
        inputs.host_ips.to_vec()
    } else {
        inputs.runtime.pod_ips()
    };
    if pod_ips.is_empty() && !terminal {
        // Keep the old addresses while the sandbox is being replaced, as upstream does.
        pod_ips = old
            .pod_ips
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.ip)
            .collect();
    }
    PodStatus {
        phase: Some(phase.to_string()),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: inputs.host_ips.first().cloned(),
        host_ips: (!inputs.host_ips.is_empty()).then(|| {
            inputs
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.clone().or_else(|| Some(now.clone())),
        init_container_statuses: (!inits.is_empty()).then_some(inits),
        container_statuses: Some(containers),
        ephemeral_container_statuses: ephemeral_statuses(&spec, inputs),
        qos_class: Some(inputs.qos_class.to_string()),
        nominated_node_name: old.nominated_node_name.clone(),
        resize: old.resize.clone(),
        resource_claim_statuses: old.resource_claim_statuses.clone(),
        ..Default::default()
    }
}

/// Ephemeral containers' statuses: state and last state only, never ready.
fn ephemeral_statuses(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    inputs: &Inputs<'_>,
) -> Option<Vec<ContainerStatus>> {
    let list = spec
        .ephemeral_containers
        .as_ref()
        .filter(|l| !l.is_empty())?;
    Some(
        list.iter()
            .filter_map(|e| {
                let mut v = serde_json::to_value(e).ok()?;
                v.as_object_mut()?.remove("targetContainerName");
                let c: Container = serde_json::from_value(v).ok()?;
                let mut st = container_status(&c, inputs, false);
                st.ready = false;
                st.resources = None;
                Some(st)
            })
            .collect(),
    )
}

/// Upstream's readiness-gate message for the first gate whose condition is missing or false.
fn readiness_gates_problem(pod: &Pod) -> Option<String> {
    let gates = pod.spec.as_ref()?.readiness_gates.as_ref()?;
    let conds: BTreeMap<String, String> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    let mut missing = Vec::new();
    for g in gates {
        match conds.get(&g.condition_type).map(String::as_str) {
            None => missing.push(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                g.condition_type
            )),
            Some("True") => {}
            Some(_) => missing.push(format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but False",
                g.condition_type
            )),
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

#[cfg(test)]
mod tests;
