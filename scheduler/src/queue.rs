//! The scheduling queue, as upstream's: an active queue ordered by priority then arrival
//! (PrioritySort), a backoff queue for pods that failed recently, unschedulable pods parked
//! until a cluster event their rejecting plugins care about, and gated pods held by a
//! PreEnqueue plugin until they change.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::ClusterEvent;
use crate::framework::PodInfo;

/// Unschedulable pods are retried after this long even without an event.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Scheduling attempts so far; drives the backoff.
    pub attempts: u32,
    /// When the pod entered the queue (PrioritySort's tie-break).
    pub timestamp: Instant,
    /// When it was first popped, for the end-to-end latency metric.
    pub initial_attempt: Option<Instant>,
    /// Plugins that rejected it in its last attempt.
    pub rejected_by: HashSet<&'static str>,
    /// When its last attempt failed.
    pub failed_at: Option<Instant>,
}

impl QueuedPod {
    pub fn new(info: Arc<PodInfo>) -> QueuedPod {
        QueuedPod {
            info,
            attempts: 0,
            timestamp: Instant::now(),
            initial_attempt: None,
            rejected_by: HashSet::new(),
            failed_at: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Active,
    Backoff,
    Unschedulable,
    Gated,
    /// Popped and being scheduled.
    InFlight,
}

struct Entry {
    pod: QueuedPod,
    at: Where,
    /// Matches the heap entry that is current; older heap entries are skipped.
    seq: u64,
    /// The move counter when the pod was popped.
    popped_at_move: u64,
}

#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    uid: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub struct SchedulingQueue {
    pods: HashMap<String, Entry>,
    /// The pods parked as unschedulable, so events look at them alone.
    unschedulable: HashSet<String>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    /// Bumped on every event that moves pods: a pod whose attempt overlapped one is retried
    /// (after backoff) rather than parked, since it may have missed the change.
    moves: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> SchedulingQueue {
        SchedulingQueue {
            pods: HashMap::new(),
            unschedulable: HashSet::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            seq: 0,
            moves: 0,
            initial_backoff,
            max_backoff,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, uid: &str) {
        self.unschedulable.remove(uid);
        let seq = self.next_seq();
        let Some(e) = self.pods.get_mut(uid) else {
            return;
        };
        e.at = Where::Active;
        e.seq = seq;
        self.active.push(ActiveKey {
            priority: e.pod.info.priority(),
            timestamp: e.pod.timestamp,
            seq,
            uid: uid.to_string(),
        });
    }

    fn push_backoff(&mut self, uid: &str) {
        self.unschedulable.remove(uid);
        let seq = self.next_seq();
        let Some(e) = self.pods.get_mut(uid) else {
            return;
        };
        e.at = Where::Backoff;
        e.seq = seq;
        let until = backoff_until(&e.pod, self.initial_backoff, self.max_backoff);
        self.backoff.push(Reverse((until, seq, uid.to_string())));
    }

    fn is_backing_off(&self, pod: &QueuedPod) -> bool {
        pod.failed_at.is_some()
            && backoff_until(pod, self.initial_backoff, self.max_backoff) > Instant::now()
    }

    /// A new pending pod (or one seen again): active unless `gated`.
    pub fn add(&mut self, info: Arc<PodInfo>, gated: bool) {
        let uid = info.uid().to_string();
        if let Some(e) = self.pods.get_mut(&uid) {
            e.pod.info = info;
            return self.updated(&uid, gated);
        }
        self.pods.insert(
            uid.clone(),
            Entry {
                pod: QueuedPod::new(info),
                at: Where::Gated,
                seq: 0,
                popped_at_move: 0,
            },
        );
        if !gated {
            self.push_active(&uid);
        }
    }

    /// The pod object changed: a gated or unschedulable pod gets another chance, since the
    /// change may be what it was waiting for.
    fn updated(&mut self, uid: &str, gated: bool) {
        let Some(e) = self.pods.get(uid) else {
            return;
        };
        match (e.at, gated) {
            (Where::InFlight, _) | (Where::Active, false) | (Where::Backoff, false) => {}
            (_, true) => {
                self.unschedulable.remove(uid);
                if let Some(e) = self.pods.get_mut(uid) {
                    e.at = Where::Gated;
                    e.seq = 0;
                }
            }
            (Where::Gated, false) | (Where::Unschedulable, false) => {
                if self.is_backing_off(&e.pod) {
                    self.push_backoff(uid);
                } else {
                    self.push_active(uid);
                }
            }
        }
    }

    pub fn delete(&mut self, uid: &str) {
        self.unschedulable.remove(uid);
        self.pods.remove(uid);
    }

    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.pods.keys().map(String::as_str)
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Moves pods whose backoff has expired to the active queue.
    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, uid))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self
                .pods
                .get(&uid)
                .is_some_and(|e| e.at == Where::Backoff && e.seq == seq)
            {
                self.push_active(&uid);
            }
        }
    }

    /// The next pod to schedule, if one is ready.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        self.flush_backoff(Instant::now());
        while let Some(key) = self.active.pop() {
            let moves = self.moves;
            let Some(e) = self.pods.get_mut(&key.uid) else {
                continue;
            };
            if e.at != Where::Active || e.seq != key.seq {
                continue;
            }
            e.at = Where::InFlight;
            e.popped_at_move = moves;
            e.pod.attempts += 1;
            e.pod.initial_attempt.get_or_insert_with(Instant::now);
            return Some(e.pod.clone());
        }
        None
    }

    /// When the earliest backing-off pod becomes ready.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((until, _, _))| *until)
    }

    /// A popped pod that did not fit: parked until an event its rejecting plugins care
    /// about, or retried after backoff when such an event happened while it was in flight.
    pub fn requeue_unschedulable(&mut self, uid: &str, rejected_by: HashSet<&'static str>) {
        let moves = self.moves;
        let Some(e) = self.pods.get_mut(uid) else {
            return;
        };
        e.pod.rejected_by = rejected_by;
        e.pod.failed_at = Some(Instant::now());
        if e.popped_at_move != moves {
            self.push_backoff(uid);
        } else {
            e.at = Where::Unschedulable;
            e.seq = 0;
            self.unschedulable.insert(uid.to_string());
        }
    }

    /// A popped pod whose attempt failed with an error (or whose binding failed): retried
    /// after backoff.
    pub fn requeue_backoff(&mut self, uid: &str) {
        let Some(e) = self.pods.get_mut(uid) else {
            return;
        };
        e.pod.failed_at = Some(Instant::now());
        self.push_backoff(uid);
    }

    /// A popped pod that was bound: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.delete(uid);
    }

    /// A cluster event: unschedulable pods whose rejecting plugins registered for it move
    /// to the backoff or active queue. `interested` maps a plugin to its events.
    pub fn on_event(
        &mut self,
        event: &ClusterEvent,
        interested: &HashMap<&'static str, Vec<ClusterEvent>>,
    ) {
        self.moves += 1;
        let moving: Vec<String> = self
            .unschedulable
            .iter()
            .filter_map(|uid| self.pods.get(uid).map(|e| (uid, e)))
            .filter(|(_, e)| {
                e.pod.rejected_by.is_empty()
                    || e.pod.rejected_by.iter().any(|p| {
                        interested
                            .get(p)
                            .is_some_and(|evs| evs.iter().any(|ev| ev.covers(event)))
                    })
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in moving {
            self.retry(&uid);
        }
    }

    fn retry(&mut self, uid: &str) {
        let Some(e) = self.pods.get(uid) else {
            return;
        };
        if self.is_backing_off(&e.pod) {
            self.push_backoff(uid);
        } else {
            self.push_active(uid);
        }
    }

    /// Retries pods that have waited in the unschedulable set for too long.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter_map(|uid| self.pods.get(uid).map(|e| (uid, e)))
            .filter(|(_, e)| {
                e.pod
                    .failed_at
                    .is_some_and(|t| now.duration_since(t) >= MAX_IN_UNSCHEDULABLE)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.retry(&uid);
        }
    }

    /// Pods in each sub-queue, as the `scheduler_pending_pods` gauge reports them.
    pub fn counts(&self) -> HashMap<&'static str, usize> {
        let mut out: HashMap<&'static str, usize> = [
            ("active", 0),
            ("backoff", 0),
            ("unschedulable", 0),
            ("gated", 0),
        ]
        .into_iter()
        .collect();
        for e in self.pods.values() {
            let q = match e.at {
                Where::Active | Where::InFlight => "active",
                Where::Backoff => "backoff",
                Where::Unschedulable => "unschedulable",
                Where::Gated => "gated",
            };
            *out.entry(q).or_default() += 1;
        }
        out
    }

    pub fn position(&self, uid: &str) -> Option<Where> {
        self.pods.get(uid).map(|e| e.at)
    }
}

/// 1s, 2s, 4s... per attempt, capped, counted from the last failure.
fn backoff_until(pod: &QueuedPod, initial: Duration, max: Duration) -> Instant {
    let exp = pod.attempts.saturating_sub(1).min(30);
    let backoff = initial.saturating_mul(1u32 << exp).min(max);
    pod.failed_at.unwrap_or(pod.timestamp) + backoff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ActionType, EventResource};
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        let p = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"containers": [], "priority": priority}
        }))
        .unwrap();
        crate::cache::pod_info(p)
    }

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10))
    }

    #[test]
    fn pops_by_priority_then_arrival() {
        let mut q = queue();
        q.add(pod("low", 1), false);
        q.add(pod("high", 10), false);
        q.add(pod("low2", 1), false);
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.info.name().to_string())
            .collect();
        assert_eq!(order, ["high", "low", "low2"]);
    }

    #[test]
    fn gated_pods_wait_for_an_update() {
        let mut q = queue();
        q.add(pod("g", 0), true);
        assert!(q.pop().is_none());
        q.add(pod("g", 0), false);
        assert_eq!(q.pop().unwrap().info.name(), "g");
    }

    #[test]
    fn unschedulable_pods_move_on_matching_events_only() {
        let mut q = queue();
        q.add(pod("p", 0), false);
        let popped = q.pop().unwrap();
        q.requeue_unschedulable(popped.info.uid(), ["NodeAffinity"].into_iter().collect());
        assert_eq!(q.position("p"), Some(Where::Unschedulable));
        let interested: HashMap<&'static str, Vec<ClusterEvent>> = [(
            "NodeAffinity",
            vec![ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
            )],
        )]
        .into_iter()
        .collect();
        q.on_event(
            &ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE),
            &interested,
        );
        assert_eq!(q.position("p"), Some(Where::Unschedulable));
        q.on_event(
            &ClusterEvent::new(EventResource::Node, ActionType::ADD),
            &interested,
        );
        // Just failed, so it backs off before it is tried again.
        assert_eq!(q.position("p"), Some(Where::Backoff));
    }

    #[test]
    fn an_event_during_the_attempt_means_retry() {
        let mut q = queue();
        q.add(pod("p", 0), false);
        let popped = q.pop().unwrap();
        q.on_event(
            &ClusterEvent::new(EventResource::Node, ActionType::ADD),
            &HashMap::new(),
        );
        q.requeue_unschedulable(popped.info.uid(), HashSet::new());
        assert_eq!(q.position("p"), Some(Where::Backoff));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut p = QueuedPod::new(pod("p", 0));
        let now = Instant::now();
        p.failed_at = Some(now);
        p.attempts = 1;
        let one = Duration::from_secs(1);
        let ten = Duration::from_secs(10);
        assert_eq!(backoff_until(&p, one, ten), now + one);
        p.attempts = 3;
        assert_eq!(backoff_until(&p, one, ten), now + Duration::from_secs(4));
        p.attempts = 9;
        assert_eq!(backoff_until(&p, one, ten), now + ten);
    }
}
