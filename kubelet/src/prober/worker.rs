//! One probe of one container: upstream's probe worker loop.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::run::{self, Target};
use super::{Inner, ProbeEvent, ProbeKind, ProbeNotice, ProbeResult, RunState, WorkerKey};
use crate::events::Kind as EventType;

/// Upstream's API defaults, for probes that reach the kubelet without them.
const DEFAULT_PERIOD_SECONDS: i32 = 10;
const DEFAULT_FAILURE_THRESHOLD: i32 = 3;
const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;

pub(super) struct Worker {
    /// Weak, so that dropping the manager drops its worker handles and so stops the workers.
    inner: Weak<Inner>,
    key: WorkerKey,
    serial: u64,
    pod: Arc<Pod>,
    container: Container,
    spec: Probe,
    /// The container instance the results below are about.
    container_id: String,
    last_result: Option<ProbeResult>,
    /// How many runs in a row gave `last_result`.
    run_length: i32,
    /// After a liveness or startup failure the container is about to be restarted: no more
    /// probing until a new instance shows up.
    on_hold: bool,
}

/// What the worker saw of its container before one probe.
struct Snapshot {
    pod_ip: String,
    id: String,
    run: RunState,
    running_since: Option<Instant>,
    started: bool,
}

impl Worker {
    pub(super) fn new(
        inner: Arc<Inner>,
        key: WorkerKey,
        serial: u64,
        pod: Arc<Pod>,
        container: Container,
        spec: Probe,
    ) -> Worker {
        Worker {
            inner: Arc::downgrade(&inner),
            key,
            serial,
            pod,
            container,
            spec,
            container_id: String::new(),
            last_result: None,
            run_length: 0,
            on_hold: false,
        }
    }

    fn period(&self) -> Duration {
        let p = positive_or(self.spec.period_seconds, DEFAULT_PERIOD_SECONDS);
        Duration::from_secs(p as u64)
    }

    pub(super) async fn run(
        mut self,
        mut stop: oneshot::Receiver<()>,
        mut trigger: mpsc::Receiver<()>,
    ) {
        let period = self.period();
        let Some(jitter) = self
            .inner
            .upgrade()
            .map(|i| i.options.start_jitter && period > i.started.elapsed())
        else {
            return;
        };
        // Workers started together after a kubelet restart would all probe at once; upstream
        // spreads their first probes over a period.
        if jitter {
            let fraction = random_fraction();
            tokio::select! {
                _ = &mut stop => return self.finish(),
                _ = tokio::time::sleep(period.mul_f64(fraction)) => {}
            }
        }
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            // A trigger that came before this run is answered by it.
            while trigger.try_recv().is_ok() {}
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            if !self.probe_once(&inner).await {
                break;
            }
            drop(inner);
            tokio::select! {
                _ = &mut stop => break,
                _ = ticker.tick() => {}
                Some(()) = trigger.recv() => {}
            }
        }
        self.finish();
    }

    /// The worker's results go with it, unless a new worker for the same probe has taken over.
    fn finish(&self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut state = inner.lock();
        let replaced = state
            .workers
            .get(&self.key)
            .is_some_and(|w| w.serial != self.serial);
        if replaced {
            return;
        }
        state.workers.remove(&self.key);
        if !self.container_id.is_empty() {
            state
                .results
                .remove(&(self.key.kind, self.container_id.clone()));
        }
    }

    fn snapshot(&self, inner: &Inner) -> Option<Snapshot> {
        let state = inner.lock();
        let pod = state.pods.get(&self.key.pod_uid)?;
        let c = pod.containers.get(&self.key.container)?;
        Some(Snapshot {
            pod_ip: pod.ip.clone(),
            id: c.id.clone(),
            run: c.run,
            running_since: c.running_since,
            started: state.started(&self.key.pod_uid, &self.key.container, c),
        })
    }

    fn set(&self, inner: &Inner, result: ProbeResult, message: Option<String>) {
        let mut state = inner.lock();
        inner.set_result(&mut state, &self.key, &self.container_id, result, message);
    }

    /// Upstream's `doProbe`: probes once and records the result; false when the worker should
    /// stop.
    async fn probe_once(&mut self, inner: &Inner) -> bool {
        let Some(snap) = self.snapshot(inner) else {
            // Not created yet, or already gone: wait to hear more.
            return true;
        };
        if snap.id.is_empty() {
            return true;
        }
        if snap.id != self.container_id {
            if !self.container_id.is_empty() {
                let mut state = inner.lock();
                state
                    .results
                    .remove(&(self.key.kind, self.container_id.clone()));
            }
            self.container_id = snap.id.clone();
            self.set(inner, self.key.kind.initial(), None);
            self.on_hold = false;
        }
        if self.on_hold {
            return true;
        }
        let RunState::Running { .. } = snap.run else {
            self.set(inner, ProbeResult::Failure, None);
            // Keep watching a container that will be started again.
            return snap.run != RunState::Terminated || self.will_restart();
        };
        let deleting = self.pod.metadata.deletion_timestamp.is_some();
        if deleting && matches!(self.key.kind, ProbeKind::Liveness | ProbeKind::Startup) {
            // A quiet shutdown: nothing more to restart.
            self.set(inner, ProbeResult::Success, None);
            return false;
        }
        let delay = self.spec.initial_delay_seconds.unwrap_or(0);
        let since = snap
            .running_since
            .map(|s| s.elapsed().as_secs())
            .unwrap_or(0);
        if (since as i64) < i64::from(delay) {
            return true;
        }
        // The startup probe gates the others; once it has passed it rests, kept for the
        // container's next instance.
        if snap.started == (self.key.kind == ProbeKind::Startup) {
            return true;
        }

        let target = Target {
            runtime: inner.runtime.as_ref(),
            pod: &self.pod,
            container: &self.container,
            container_id: strip_runtime_prefix(&self.container_id),
            pod_ip: &snap.pod_ip,
        };
        let verdict = run::probe(self.key.kind, &self.spec, &target).await;
        if let Some((reason, message)) = &verdict.event {
            let _ = inner.notices.send(ProbeNotice::Event(ProbeEvent {
                pod_uid: self.key.pod_uid.clone(),
                container_name: self.key.container.clone(),
                container_id: self.container_id.clone(),
                kind: self.key.kind,
                event_type: EventType::Warning,
                reason,
                message: message.clone(),
            }));
        }
        let Some(result) = verdict.result else {
            // The probe errored: upstream throws the run away.
            return true;
        };
        if self.last_result == Some(result) {
            self.run_length += 1;
        } else {
            self.last_result = Some(result);
            self.run_length = 1;
        }
        let failure_threshold = positive_or(self.spec.failure_threshold, DEFAULT_FAILURE_THRESHOLD);
        let success_threshold = positive_or(self.spec.success_threshold, DEFAULT_SUCCESS_THRESHOLD);
        if (result == ProbeResult::Failure && self.run_length < failure_threshold)
            || (result == ProbeResult::Success && self.run_length < success_threshold)
        {
            return true;
        }
        self.set(inner, result, verdict.event.map(|(_, m)| m));
        if result == ProbeResult::Failure
            && matches!(self.key.kind, ProbeKind::Liveness | ProbeKind::Startup)
        {
            self.on_hold = true;
            self.run_length = 0;
        }
        true
    }

    /// Whether an exited container comes back: sidecars always do, others unless the pod's
    /// policy is `Never`.
    fn will_restart(&self) -> bool {
        if self.container.restart_policy.as_deref() == Some("Always") {
            return true;
        }
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref());
        policy != Some("Never")
    }
}

fn positive_or(v: Option<i32>, default: i32) -> i32 {
    match v {
        Some(v) if v > 0 => v,
        _ => default,
    }
}

/// Container ids reach the kubelet's status as `containerd://<id>`; the runtime wants the id.
fn strip_runtime_prefix(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

/// A number in [0, 1) that differs between workers; the std hasher's per-process random keys
/// are enough for spreading probes.
fn random_fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
