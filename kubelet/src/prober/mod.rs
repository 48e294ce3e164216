//! Liveness, readiness and startup probes, as upstream's prober manager runs them: one worker
//! per container and probe kind, probing every `periodSeconds` once `initialDelaySeconds` have
//! passed since the container started, and changing the container's result only after
//! `successThreshold` / `failureThreshold` runs in a row agree.
//!
//! The manager knows containers only through what the pod worker tells it
//! ([`ProbeManager::update_container`], [`ProbeManager::update_pod_ip`]); it tells back through
//! a channel of [`ProbeNotice`]s: a [`ResultChange`] whenever a container's result changes (a
//! liveness or startup `Failure` means the container must be restarted; a readiness change
//! means the pod's status must be refreshed), and a [`ProbeEvent`] for every run upstream would
//! record an event for (`Unhealthy`, `ProbeWarning`).

pub(crate) mod gofmt;
mod grpc;
pub(crate) mod http;
pub(crate) mod net;
pub(crate) mod run;
mod worker;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::events::Kind as EventType;
use crate::runtime::Runtime;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Readiness,
        ProbeKind::Liveness,
    ];

    /// The container's probe of this kind.
    pub fn spec(self, container: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
            ProbeKind::Startup => container.startup_probe.as_ref(),
        }
    }

    /// The result a container has before its probe has passed either threshold.
    fn initial(self) -> ProbeResult {
        match self {
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Startup => ProbeResult::Unknown,
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        })
    }
}

/// A container's probe result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Unknown,
    Success,
    Failure,
}

/// What one probe run came to, before thresholds (upstream's `probe.Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Succeeded, with something worth an event (an HTTP redirect off the pod's host).
    Warning,
    Failure,
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Warning => "warning",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// A container's result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultChange {
    pub pod_uid: String,
    pub container_name: String,
    pub container_id: String,
    pub kind: ProbeKind,
    pub result: ProbeResult,
    /// The last run's event text when a run caused the change (`Liveness probe failed: ...`);
    /// `None` when the change is the initial value for a new container.
    pub message: Option<String>,
}

/// An event upstream records on the container for one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    pub pod_uid: String,
    pub container_name: String,
    pub container_id: String,
    pub kind: ProbeKind,
    pub event_type: EventType,
    /// `Unhealthy` or `ProbeWarning`.
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeNotice {
    Result(ResultChange),
    Event(ProbeEvent),
}

/// A container's state as the pod worker last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Waiting,
    Running { started_at: SystemTime },
    Terminated,
}

#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    /// Spread the first probes of workers started soon after the manager over one period, as
    /// upstream does after a kubelet restart.
    pub start_jitter: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions { start_jitter: true }
    }
}

/// The probe workers of every pod on the node.
#[derive(Clone)]
pub struct ProbeManager {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    runtime: Arc<dyn Runtime>,
    options: ProbeOptions,
    started: Instant,
    notices: mpsc::UnboundedSender<ProbeNotice>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    workers: HashMap<WorkerKey, WorkerHandle>,
    pods: HashMap<String, PodState>,
    /// By probe kind and container id, as upstream's results managers key them.
    results: HashMap<(ProbeKind, String), ProbeResult>,
    next_serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WorkerKey {
    pod_uid: String,
    container: String,
    kind: ProbeKind,
}

struct WorkerHandle {
    serial: u64,
    /// Dropping it stops the worker.
    _stop: oneshot::Sender<()>,
    trigger: mpsc::Sender<()>,
}

#[derive(Default)]
struct PodState {
    ip: String,
    containers: HashMap<String, ContainerState>,
}

#[derive(Debug, Clone)]
struct ContainerState {
    id: String,
    run: RunState,
    /// `started_at` on the runtime's clock, placed on tokio's so that delays follow it.
    running_since: Option<Instant>,
}

impl ProbeManager {
    pub fn new(runtime: Arc<dyn Runtime>) -> (ProbeManager, mpsc::UnboundedReceiver<ProbeNotice>) {
        ProbeManager::with_options(runtime, ProbeOptions::default())
    }

    pub fn with_options(
        runtime: Arc<dyn Runtime>,
        options: ProbeOptions,
    ) -> (ProbeManager, mpsc::UnboundedReceiver<ProbeNotice>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Inner {
            runtime,
            options,
            started: Instant::now(),
            notices: tx,
            state: Mutex::new(State::default()),
        };
        (
            ProbeManager {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Starts a worker for every probe of the pod's containers and sidecars (init containers
    /// with `restartPolicy: Always`). A probe that already has a worker keeps it.
    pub fn add_pod(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(pod.clone());
        let mut state = self.inner.lock();
        state.pods.entry(uid.clone()).or_default();
        for container in probed_containers(&pod) {
            for kind in ProbeKind::ALL {
                let Some(spec) = kind.spec(container) else {
                    continue;
                };
                let key = WorkerKey {
                    pod_uid: uid.clone(),
                    container: container.name.clone(),
                    kind,
                };
                if state.workers.contains_key(&key) {
                    continue;
                }
                state.next_serial += 1;
                let serial = state.next_serial;
                let (stop_tx, stop_rx) = oneshot::channel();
                let (trigger_tx, trigger_rx) = mpsc::channel(1);
                state.workers.insert(
                    key.clone(),
                    WorkerHandle {
                        serial,
                        _stop: stop_tx,
                        trigger: trigger_tx,
                    },
                );
                let w = worker::Worker::new(
                    self.inner.clone(),
                    key,
                    serial,
                    pod.clone(),
                    container.clone(),
                    spec.clone(),
                );
                tokio::spawn(w.run(stop_rx, trigger_rx));
            }
        }
    }

    /// Stops the pod's workers and forgets its containers and results.
    pub fn remove_pod(&self, pod_uid: &str) {
        let mut state = self.inner.lock();
        state.workers.retain(|k, _| k.pod_uid != pod_uid);
        if let Some(pod) = state.pods.remove(pod_uid) {
            for c in pod.containers.values() {
                for kind in ProbeKind::ALL {
                    state.results.remove(&(kind, c.id.clone()));
                }
            }
        }
    }

    /// Stops the liveness and startup workers of a pod that is shutting down, so that a slow
    /// shutdown is not taken for a failed container; readiness goes on.
    pub fn stop_liveness_and_startup(&self, pod_uid: &str) {
        let mut state = self.inner.lock();
        state
            .workers
            .retain(|k, _| k.pod_uid != pod_uid || k.kind == ProbeKind::Readiness);
    }

    /// Removes every pod not in `keep`.
    pub fn cleanup_pods(&self, keep: &HashSet<String>) {
        let gone: Vec<String> = {
            let state = self.inner.lock();
            let mut uids: HashSet<&String> = state.pods.keys().collect();
            uids.extend(state.workers.keys().map(|k| &k.pod_uid));
            uids.into_iter()
                .filter(|u| !keep.contains(*u))
                .cloned()
                .collect()
        };
        for uid in gone {
            self.remove_pod(&uid);
        }
    }

    /// The pod's primary IP, which HTTP, TCP and gRPC probes go to unless they name a host.
    pub fn update_pod_ip(&self, pod_uid: &str, ip: Option<&str>) {
        let mut state = self.inner.lock();
        state.pods.entry(pod_uid.to_string()).or_default().ip = ip.unwrap_or("").to_string();
    }

    /// The container's current instance (`container_id`, empty when there is none) and state.
    /// A new id restarts the container's probing from the initial results.
    pub fn update_container(
        &self,
        pod_uid: &str,
        container: &str,
        container_id: &str,
        run: RunState,
    ) {
        let mut state = self.inner.lock();
        let pod = state.pods.entry(pod_uid.to_string()).or_default();
        let running_since = match run {
            RunState::Running { started_at } => {
                let age = SystemTime::now()
                    .duration_since(started_at)
                    .unwrap_or_default();
                let now = Instant::now();
                Some(now.checked_sub(age).unwrap_or(now))
            }
            _ => None,
        };
        let previous = pod.containers.insert(
            container.to_string(),
            ContainerState {
                id: container_id.to_string(),
                run,
                running_since,
            },
        );
        let changed = previous.is_none_or(|p| p.id != container_id || p.run != run);
        if changed {
            // Probe a new or changed container now rather than at the next period.
            for kind in ProbeKind::ALL {
                let key = WorkerKey {
                    pod_uid: pod_uid.to_string(),
                    container: container.to_string(),
                    kind,
                };
                if let Some(w) = state.workers.get(&key) {
                    let _ = w.trigger.try_send(());
                }
            }
        }
    }

    /// Upstream's readiness rule for a container's status: not ready until it runs and has
    /// started; then ready once its readiness probe has succeeded, or at once when it has
    /// none. Asking about a container whose probe has not passed yet runs the probe now.
    pub fn ready(&self, pod_uid: &str, container: &str) -> bool {
        let state = self.inner.lock();
        let Some(c) = state.container(pod_uid, container) else {
            return false;
        };
        if !matches!(c.run, RunState::Running { .. }) || !state.started(pod_uid, container, c) {
            return false;
        }
        if state.results.get(&(ProbeKind::Readiness, c.id.clone())) == Some(&ProbeResult::Success) {
            return true;
        }
        match state.workers.get(&WorkerKey {
            pod_uid: pod_uid.to_string(),
            container: container.to_string(),
            kind: ProbeKind::Readiness,
        }) {
            Some(w) => {
                let _ = w.trigger.try_send(());
                false
            }
            None => true,
        }
    }

    /// Upstream's `started` for a container's status: running, and its startup probe has
    /// succeeded (or it has none).
    pub fn started(&self, pod_uid: &str, container: &str) -> bool {
        let state = self.inner.lock();
        match state.container(pod_uid, container) {
            Some(c) => state.started(pod_uid, container, c),
            None => false,
        }
    }

    /// The result for one container instance, as upstream's results managers answer it:
    /// `None` before the container has a worker-set value.
    pub fn result(&self, container_id: &str, kind: ProbeKind) -> Option<ProbeResult> {
        self.inner
            .lock()
            .results
            .get(&(kind, container_id.to_string()))
            .copied()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked mid-update leaves maps that are still consistent entries.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Upstream's results manager `Set`: a notice only when the value changes.
    fn set_result(
        &self,
        state: &mut State,
        key: &WorkerKey,
        container_id: &str,
        result: ProbeResult,
        message: Option<String>,
    ) {
        let previous = state
            .results
            .insert((key.kind, container_id.to_string()), result);
        if previous != Some(result) {
            let _ = self.notices.send(ProbeNotice::Result(ResultChange {
                pod_uid: key.pod_uid.clone(),
                container_name: key.container.clone(),
                container_id: container_id.to_string(),
                kind: key.kind,
                result,
                message,
            }));
        }
    }
}

impl State {
    fn container(&self, pod_uid: &str, name: &str) -> Option<&ContainerState> {
        self.pods.get(pod_uid)?.containers.get(name)
    }

    /// Upstream's `isContainerStarted`.
    fn started(&self, pod_uid: &str, name: &str, c: &ContainerState) -> bool {
        if !matches!(c.run, RunState::Running { .. }) {
            return false;
        }
        if let Some(r) = self.results.get(&(ProbeKind::Startup, c.id.clone())) {
            return *r == ProbeResult::Success;
        }
        !self.workers.contains_key(&WorkerKey {
            pod_uid: pod_uid.to_string(),
            container: name.to_string(),
            kind: ProbeKind::Startup,
        })
    }
}

/// The containers upstream probes: regular ones and restartable init containers.
fn probed_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.map(|s| s.containers.iter())
        .into_iter()
        .flatten()
        .chain(sidecars)
}

/// The grace period a container killed for failing this probe gets, when the probe sets its
/// own (`terminationGracePeriodSeconds` on liveness and startup probes); the pod's otherwise.
pub fn probe_termination_grace_period(container: &Container, kind: ProbeKind) -> Option<i64> {
    match kind {
        ProbeKind::Liveness | ProbeKind::Startup => kind
            .spec(container)
            .and_then(|p| p.termination_grace_period_seconds),
        ProbeKind::Readiness => None,
    }
}

/// Upstream's `ResolveContainerPort`: a number, or a container port's name (or a number
/// written as a string), within 1..=65535.
pub(crate) fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let n: i64 = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()));
            match named {
                Some(p) => i64::from(p.container_port),
                None => name.parse::<i64>().map_err(|_| {
                    format!(
                        "strconv.Atoi: parsing {}: invalid syntax",
                        gofmt::quote(name)
                    )
                })?,
            }
        }
    };
    if n > 0 && n < 65536 {
        Ok(n as u16)
    } else {
        Err(format!("invalid port number: {n}"))
    }
}
