//! One task per pod, as upstream's pod workers: it syncs the pod whenever the pod changes,
//! the runtime reports a change (PLEG), a probe result changes or a timer it set fires, and
//! tears the pod down when it is deleted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{watch, Notify};

use super::api_status::Terminal;
use super::assemble;
use super::context::Shared;
use super::kill;
use super::runtime_state;
use super::sync::{self, Outcome};

pub struct Handle {
    pub pod: watch::Sender<Option<Arc<Pod>>>,
    pub poke: Arc<Notify>,
}

fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded") | Some("Failed"))
}

/// Runs until the pod is gone from the API and from the node.
pub async fn run(
    shared: Arc<Shared>,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
    poke: Arc<Notify>,
) {
    let mut last: Option<Arc<Pod>> = None;
    loop {
        let current = rx.borrow_and_update().clone();
        let wait = match current {
            None => {
                if let Some(pod) = last {
                    remove(&shared, &pod).await;
                }
                return;
            }
            Some(pod) => {
                last = Some(pod.clone());
                step(&shared, &pod).await
            }
        };
        tokio::select! {
            changed = rx.changed() => {
                // The pod manager is gone (the kubelet is stopping): leave the pod running,
                // as a kubelet that exits does; only an explicit None removes it.
                if changed.is_err() {
                    return;
                }
            }
            _ = poke.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One round for a pod that is still in the API; returns how long to sleep at most.
async fn step(shared: &Shared, pod: &Pod) -> Duration {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        terminate(shared, pod).await;
        return shared.settings.resync;
    }
    let eviction = shared
        .evictions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&uid);
    if let Some(message) = eviction {
        shared
            .events
            .record(
                &crate::events::pod_ref(pod),
                crate::events::Kind::Warning,
                "Evicted",
                &message,
            )
            .await;
        if let Ok(rt) = runtime_state::read(shared.runtime.as_ref(), &uid).await {
            kill::stop_pod(shared, pod, &rt, Some(0)).await;
        }
        let outcome = Outcome {
            terminal: Some(Terminal {
                phase: "Failed",
                reason: "Evicted".into(),
                message,
                disruption: true,
            }),
            ..Default::default()
        };
        sync::report(shared, pod, &outcome).await;
        return shared.settings.resync;
    }
    let reported = shared.status.get(&uid).and_then(|s| s.phase);
    let phase = reported.or_else(|| pod.status.as_ref().and_then(|s| s.phase.clone()));
    if is_terminal(phase.as_deref()) {
        // A finished pod no longer holds its share of the node.
        shared
            .admitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
        // Finished: nothing runs again, but the status and logs stay until deletion.
        if let Ok(rt) = runtime_state::read(shared.runtime.as_ref(), &uid).await {
            if rt.any_running() || rt.ready_sandbox().is_some() {
                kill::stop_pod(shared, pod, &rt, None).await;
            }
        }
        sync::report(shared, pod, &Outcome::default()).await;
        return shared.settings.resync;
    }
    if let Err(rejection) = admit(shared, pod).await {
        shared
            .events
            .record(
                &crate::events::pod_ref(pod),
                crate::events::Kind::Warning,
                &rejection.reason,
                &rejection.message,
            )
            .await;
        let outcome = Outcome {
            terminal: Some(Terminal {
                phase: "Failed",
                reason: rejection.reason,
                message: format!("Pod was rejected: {}", rejection.message),
                disruption: false,
            }),
            ..Default::default()
        };
        sync::report(shared, pod, &outcome).await;
        return shared.settings.resync;
    }
    let outcome = sync::sync(shared, pod).await;
    if outcome.terminal.is_some() {
        sync::report(shared, pod, &outcome).await;
        return shared.settings.resync;
    }
    sync::report(shared, pod, &outcome).await;
    let resync = shared.settings.resync;
    outcome.wake_in.map_or(resync, |w| w.min(resync))
}

/// Admits the pod once: pods the runtime already runs (the kubelet restarted) are kept,
/// others must pass the node's admission against the pods admitted before them.
async fn admit(shared: &Shared, pod: &Pod) -> Result<(), super::admission::Rejection> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if shared
        .admitted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&uid)
    {
        return Ok(());
    }
    let running = runtime_state::read(shared.runtime.as_ref(), &uid)
        .await
        .is_ok_and(|rt| !rt.sandboxes.is_empty());
    let node = shared.node.borrow().clone();
    let mut admitted = shared.admitted.lock().unwrap_or_else(|e| e.into_inner());
    if !running {
        if let Some(node) = node {
            let others: Vec<Pod> = admitted.values().cloned().collect();
            let pressure = &shared.pressure;
            super::admission::admit(
                pod,
                &node,
                &others,
                pressure.memory.load(std::sync::atomic::Ordering::Relaxed),
                pressure.disk.load(std::sync::atomic::Ordering::Relaxed),
            )?;
        }
    }
    admitted.insert(uid, pod.clone());
    Ok(())
}

/// A deleted pod: stop it within its grace period, report it finished, clean up, and let
/// the apiserver remove it.
async fn terminate(shared: &Shared, pod: &Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Ok(rt) = runtime_state::read(shared.runtime.as_ref(), &uid).await else {
        return;
    };
    kill::stop_pod(shared, pod, &rt, None).await;
    let Ok(after) = runtime_state::read(shared.runtime.as_ref(), &uid).await else {
        return;
    };
    // Upstream reports a deleted pod's final phase before it goes: Succeeded only if every
    // container exited 0.
    let all_succeeded = !after.containers.is_empty()
        && pod.spec.iter().flat_map(|s| &s.containers).all(|c| {
            after
                .latest(&c.name)
                .is_some_and(|s| runtime_state::is_exited(s) && s.exit_code == 0)
        });
    let outcome = Outcome {
        terminal: Some(Terminal {
            phase: if all_succeeded { "Succeeded" } else { "Failed" },
            reason: String::new(),
            message: String::new(),
            disruption: false,
        }),
        ..Default::default()
    };
    sync::report(shared, pod, &outcome).await;
    shared.status.post_now(&uid).await;
    cleanup(shared, pod, &after).await;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    if let Err(e) = shared.status.finish_deletion(&ns, &name, &uid).await {
        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "final pod deletion");
    }
}

/// The pod vanished from the API (deleted for good, or moved off this node).
async fn remove(shared: &Shared, pod: &Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Ok(rt) = runtime_state::read(shared.runtime.as_ref(), &uid).await else {
        return;
    };
    if rt.any_running() || rt.ready_sandbox().is_some() {
        kill::stop_pod(shared, pod, &rt, None).await;
    }
    let after = runtime_state::read(shared.runtime.as_ref(), &uid)
        .await
        .unwrap_or(rt);
    cleanup(shared, pod, &after).await;
    shared.status.forget(&uid);
}

async fn cleanup(shared: &Shared, pod: &Pod, rt: &runtime_state::PodRuntime) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    kill::remove_pod(shared, rt).await;
    assemble::release(shared, pod).await;
    shared
        .admitted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&uid);
    shared.backoff.forget_pod(&uid);
}
