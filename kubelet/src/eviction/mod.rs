//! The eviction manager: watches memory, disk and PID availability against `evictionHard`,
//! reports pressure in the Node's conditions, and while a threshold is crossed evicts one
//! pod per round in upstream's order, failing it with reason `Evicted`.

pub mod rank;
pub mod signals;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pods::PodManager;
use crate::runtime::api;
use signals::{Signal, Threshold};

/// The node conditions the eviction manager sets, read by the Node status loop.
#[derive(Default)]
pub struct Pressure {
    pub memory: AtomicBool,
    pub disk: AtomicBool,
    pub pid: AtomicBool,
}

impl Pressure {
    fn flag(&self, s: Signal) -> &AtomicBool {
        match s {
            Signal::MemoryAvailable => &self.memory,
            Signal::PidAvailable => &self.pid,
            _ => &self.disk,
        }
    }
}

pub struct EvictionManager {
    pub thresholds: Vec<Threshold>,
    pub root: PathBuf,
    /// How often signals are read (upstream's `evictionMonitoringPeriod`, 10s).
    pub period: Duration,
    /// How long a pressure condition stays after its threshold was last crossed
    /// (`evictionPressureTransitionPeriod`, 5m).
    pub transition: Duration,
    pub pressure: Arc<Pressure>,
    pub pods: Arc<PodManager>,
}

fn human(bytes: i64, signal: Signal) -> String {
    if signal == Signal::NodeFsInodesFree || signal == Signal::PidAvailable {
        return bytes.to_string();
    }
    ferrokube_common::quantity::Quantity::new(bytes, ferrokube_common::quantity::Format::BinarySI)
        .to_string()
}

impl EvictionManager {
    pub async fn run(self) {
        let mut last_met: HashMap<Signal, Instant> = HashMap::new();
        loop {
            let obs = signals::observe(&self.root);
            let met = signals::met(&self.thresholds, &obs);
            let now = Instant::now();
            for (t, _) in &met {
                last_met.insert(t.signal, now);
            }
            for s in [
                Signal::MemoryAvailable,
                Signal::NodeFsAvailable,
                Signal::PidAvailable,
            ] {
                let recent = |sig: Signal| {
                    last_met
                        .get(&sig)
                        .is_some_and(|t| now - *t < self.transition)
                };
                let on = match s {
                    Signal::NodeFsAvailable => {
                        recent(Signal::NodeFsAvailable)
                            || recent(Signal::NodeFsInodesFree)
                            || recent(Signal::ImageFsAvailable)
                    }
                    other => recent(other),
                };
                self.pressure.flag(s).store(on, Ordering::Relaxed);
            }
            if let Some((threshold, observation)) =
                met.iter().min_by_key(|(t, _)| t.signal).copied()
            {
                self.evict_one(&threshold, &observation).await;
            }
            tokio::time::sleep(self.period).await;
        }
    }

    /// Usage per pod uid of the starved resource, from the runtime's container stats.
    async fn usage(&self, signal: Signal) -> BTreeMap<String, (i64, Vec<(String, i64)>)> {
        let stats = self
            .pods
            .shared
            .runtime
            .list_container_stats(api::ListContainerStatsRequest::default())
            .await
            .map(|r| r.stats)
            .unwrap_or_default();
        let mut out: BTreeMap<String, (i64, Vec<(String, i64)>)> = BTreeMap::new();
        for s in stats {
            let Some(attrs) = s.attributes.as_ref() else {
                continue;
            };
            let Some(uid) = attrs.labels.get(crate::pods::labels::POD_UID) else {
                continue;
            };
            let name = attrs
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let used = match signal {
                Signal::MemoryAvailable => s
                    .memory
                    .as_ref()
                    .and_then(|m| m.working_set_bytes.as_ref())
                    .map_or(0, |v| v.value),
                Signal::NodeFsInodesFree => s
                    .writable_layer
                    .as_ref()
                    .and_then(|w| w.inodes_used.as_ref())
                    .map_or(0, |v| v.value),
                _ => s
                    .writable_layer
                    .as_ref()
                    .and_then(|w| w.used_bytes.as_ref())
                    .map_or(0, |v| v.value),
            };
            let used = i64::try_from(used).unwrap_or(i64::MAX);
            let e = out.entry(uid.clone()).or_default();
            e.0 += used;
            e.1.push((name, used));
        }
        out
    }

    async fn evict_one(&self, threshold: &Threshold, observation: &signals::Observation) {
        let signal = threshold.signal;
        let resource = signal.resource();
        let usage = self.usage(signal).await;
        let mut candidates: Vec<rank::Candidate> = self
            .pods
            .active_pods()
            .into_iter()
            // Critical pods (static ones, system priorities): upstream never evicts them.
            .filter(|p| !crate::container::resources::is_critical_pod(p))
            .map(|pod| {
                let used = pod
                    .metadata
                    .uid
                    .as_ref()
                    .and_then(|u| usage.get(u))
                    .map_or(0, |u| u.0);
                rank::Candidate { pod, usage: used }
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        rank::rank(&mut candidates, resource);
        let victim = &candidates[0];
        let uid = victim.pod.metadata.uid.clone().unwrap_or_default();
        let mut message = format!(
            "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. ",
            human(signals::quantity(threshold, observation), signal),
            human(observation.available, signal),
        );
        if let Some((_, containers)) = usage.get(&uid) {
            for (name, used) in containers {
                let request = victim
                    .pod
                    .spec
                    .iter()
                    .flat_map(|s| &s.containers)
                    .find(|c| &c.name == name)
                    .and_then(|c| {
                        c.resources
                            .as_ref()?
                            .requests
                            .as_ref()?
                            .get(resource)
                            .cloned()
                    })
                    .map_or("0".to_string(), |q| q.0);
                if *used > 0 {
                    message.push_str(&format!(
                        "Container {name} was using {}, request is {request}, has larger consumption of {resource}. ",
                        human(*used, signal)
                    ));
                }
            }
        }
        tracing::warn!(pod = %crate::pods::assemble::pod_key(&victim.pod), signal = signal.name(), "evicting pod");
        self.pods.evict(&uid, message);
    }
}
