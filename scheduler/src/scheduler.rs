//! The scheduling loop: apply what the watches reported, pop the next pod, run one
//! scheduling cycle (PreFilter → Filter → PostFilter or PreScore → Score → Reserve), assume
//! the pod on the chosen node and hand the binding to a task, so the next cycle starts at
//! once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrokube_component::metrics::Registry;
use k8s_openapi::api::core::v1::Pod;
use rand::Rng;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;

use crate::apply;
use crate::cache::Cluster;
use crate::config::{num_feasible_nodes_to_find, Configuration};
use crate::events::ClusterEvent;
use crate::framework::{CycleState, Framework, NodeInfo, NodeStatuses, PodInfo, Status};
use crate::informers::{self, BindOutcome, Input};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::recorder::{Note, Recorder};
use crate::{failure, metrics};

/// Bindings and status writes in flight at once: enough to keep the apiserver busy without
/// opening a connection per pod.
const API_CONCURRENCY: usize = 64;

pub struct Profile {
    pub framework: Arc<Framework>,
    pub percentage_of_nodes_to_score: Option<i32>,
    pub recorder: Recorder,
}

pub struct Scheduler {
    pub client: kube::Client,
    pub profiles: HashMap<String, Profile>,
    pub cluster: Cluster,
    pub queue: SchedulingQueue,
    pub metrics: Arc<Registry>,
    rx: UnboundedReceiver<Input>,
    pub tx: UnboundedSender<Input>,
    /// Watches that have delivered their first complete list.
    pub synced: HashSet<&'static str>,
    /// Where the next search for feasible nodes starts, so load spreads over all nodes.
    next_start: usize,
    /// Which events each plugin (in any profile) waits for.
    pub interest: HashMap<&'static str, Vec<ClusterEvent>>,
    pub api_slots: Arc<Semaphore>,
}

/// Why a cycle found no node.
pub struct FitError {
    pub num_all_nodes: usize,
    pub pre_filter_msg: Option<String>,
    pub statuses: NodeStatuses,
    pub post_filter_msg: Option<String>,
}

impl FitError {
    /// Upstream's message: `0/3 nodes are available: 1 node(s) had untolerated taint {...},
    /// 2 Insufficient cpu. preemption: ...`.
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.pre_filter_msg {
            Some(pre) => msg.push_str(&format!(" {pre}.")),
            None => {
                let histogram = reason_histogram(self.statuses.values());
                if !histogram.is_empty() {
                    msg.push_str(&format!(" {}.", histogram.join(", ")));
                }
            }
        }
        if let Some(post) = &self.post_filter_msg {
            msg.push_str(&format!(" {post}"));
        }
        msg
    }

    pub fn rejected_by(&self) -> HashSet<&'static str> {
        self.statuses
            .values()
            .map(|s| s.plugin)
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// `N reason` for each distinct reason, sorted as strings, as upstream prints them.
pub fn reason_histogram<'a>(statuses: impl Iterator<Item = &'a Status>) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in statuses {
        for r in &s.reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut out: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.sort();
    out
}

enum CycleError {
    Unschedulable(FitError),
    Error(Status),
}

impl Scheduler {
    pub fn new(
        client: kube::Client,
        config: &Configuration,
        frameworks: HashMap<String, Framework>,
        metrics: Arc<Registry>,
    ) -> Scheduler {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut interest: HashMap<&'static str, Vec<ClusterEvent>> = HashMap::new();
        let profiles = frameworks
            .into_iter()
            .map(|(name, fw)| {
                for (plugin, events) in &fw.events {
                    interest
                        .entry(plugin)
                        .or_default()
                        .extend(events.iter().copied());
                }
                let percentage = config
                    .profiles
                    .iter()
                    .find(|p| p.scheduler_name == name)
                    .and_then(|p| p.percentage_of_nodes_to_score)
                    .or(config.percentage_of_nodes_to_score);
                let profile = Profile {
                    framework: Arc::new(fw),
                    percentage_of_nodes_to_score: percentage,
                    recorder: Recorder::new(client.clone(), &name),
                };
                (name, profile)
            })
            .collect();
        metrics::describe(&metrics);
        Scheduler {
            client,
            profiles,
            cluster: Cluster::default(),
            queue: SchedulingQueue::new(
                Duration::from_secs(config.pod_initial_backoff_seconds as u64),
                Duration::from_secs(config.pod_max_backoff_seconds as u64),
            ),
            metrics,
            rx,
            tx,
            synced: HashSet::new(),
            next_start: 0,
            interest,
            api_slots: Arc::new(Semaphore::new(API_CONCURRENCY)),
        }
    }

    /// Watches everything and schedules until the process ends.
    pub async fn run(mut self) -> anyhow::Result<()> {
        informers::start(&self.client, &self.tx);
        let mut flush = tokio::time::interval(Duration::from_secs(30));
        let mut scheduled_since_yield = 0u32;
        let mut last_metrics = Instant::now();
        loop {
            while let Ok(input) = self.rx.try_recv() {
                self.apply(input);
            }
            if self.synced.len() == informers::WATCHES {
                if let Some(pod) = self.queue.pop() {
                    self.schedule_one(pod);
                    // Counting the queues costs a pass over them: once a second is enough.
                    if last_metrics.elapsed() >= Duration::from_secs(1) {
                        self.publish_queue_metrics();
                        last_metrics = Instant::now();
                    }
                    // Let the binding tasks run on this worker too now and then.
                    scheduled_since_yield += 1;
                    if scheduled_since_yield >= 32 {
                        scheduled_since_yield = 0;
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
            }
            let backoff = self.queue.next_backoff_expiry();
            tokio::select! {
                input = self.rx.recv() => match input {
                    Some(input) => self.apply(input),
                    None => anyhow::bail!("every watch ended"),
                },
                _ = sleep_until(backoff), if backoff.is_some() => {}
                _ = flush.tick() => {
                    self.queue.flush_unschedulable(Instant::now());
                    self.publish_queue_metrics();
                }
            }
        }
    }

    fn apply(&mut self, input: Input) {
        match input {
            Input::Bound(outcome) => self.finish_binding(*outcome),
            other => apply::apply(self, other),
        }
    }

    pub fn publish_queue_metrics(&self) {
        for (queue, n) in self.queue.counts() {
            self.metrics
                .set("scheduler_pending_pods", &[("queue", queue)], n as f64);
        }
    }

    /// One scheduling cycle for one pod.
    fn schedule_one(&mut self, qp: QueuedPod) {
        let started = Instant::now();
        let info = qp.info.clone();
        let scheduler_name = info
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.clone())
            .unwrap_or_else(|| crate::config::DEFAULT_SCHEDULER_NAME.into());
        let Some(profile) = self.profiles.get(&scheduler_name) else {
            self.queue.delete(info.uid());
            return;
        };
        let fw = profile.framework.clone();
        let percentage = profile.percentage_of_nodes_to_score;
        let mut state = CycleState::default();
        match self.find_node(&fw, percentage, &mut state, &info) {
            Ok(node) => self.assume_and_bind(fw, state, info, node, started),
            Err(CycleError::Unschedulable(mut fit)) => {
                let (status, result) =
                    fw.run_post_filter(&state, &info, &self.cluster, &fit.statuses);
                match result.nominated_node.as_deref() {
                    Some("") => failure::clear_nomination(self, &info),
                    Some(node) if status.is_success() => {
                        let node = node.to_string();
                        failure::preempt(self, &fw, &info, &node, &result.victims);
                    }
                    _ => {}
                }
                if !status.is_success() && !status.reasons.is_empty() && !fw.post_filter.is_empty()
                {
                    fit.post_filter_msg = Some(status.to_string());
                }
                self.metrics.inc(
                    "scheduler_schedule_attempts_total",
                    &[("result", "unschedulable"), ("profile", &scheduler_name)],
                );
                metrics::attempt_duration(&self.metrics, &scheduler_name, "unschedulable", started);
                let message = fit.message();
                tracing::debug!("{}: {message}", info.key());
                failure::record(self, &fw, &info, "Unschedulable", &message);
                self.queue
                    .requeue_unschedulable(info.uid(), fit.rejected_by());
            }
            Err(CycleError::Error(status)) => {
                self.metrics.inc(
                    "scheduler_schedule_attempts_total",
                    &[("result", "error"), ("profile", &scheduler_name)],
                );
                metrics::attempt_duration(&self.metrics, &scheduler_name, "error", started);
                let message = status.to_string();
                tracing::warn!("scheduling {}: {message}", info.key());
                failure::record(self, &fw, &info, "SchedulerError", &message);
                self.queue.requeue_backoff(info.uid());
            }
        }
    }

    fn find_node(
        &mut self,
        fw: &Framework,
        percentage: Option<i32>,
        state: &mut CycleState,
        pod: &PodInfo,
    ) -> Result<String, CycleError> {
        let cluster = &self.cluster;
        let all: Vec<&Arc<NodeInfo>> = cluster
            .nodes()
            .iter()
            .filter(|n| n.node.is_some())
            .collect();
        if all.is_empty() {
            // Upstream treats an empty cluster as an error (retried with backoff), not as a
            // fit failure.
            return Err(CycleError::Error(Status::error(
                "no nodes available to schedule pods",
            )));
        }
        let (status, narrowed) = fw.run_pre_filter(state, pod, cluster);
        if !status.is_success() {
            if !status.is_rejected() {
                return Err(CycleError::Error(status));
            }
            let statuses = all
                .iter()
                .map(|n| (n.name.clone(), status.clone()))
                .collect();
            return Err(CycleError::Unschedulable(FitError {
                num_all_nodes: all.len(),
                pre_filter_msg: Some(status.to_string()),
                statuses,
                post_filter_msg: None,
            }));
        }

        // A node preemption made room on is tried first.
        let nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        if let Some(node) = nominated.and_then(|n| cluster.node(n)) {
            let s = fw.run_filter_with_nominated(
                state,
                pod,
                node,
                cluster.nominated_on(&node.name),
                cluster,
            );
            if s.is_success() {
                return Ok(node.name.clone());
            }
        }

        let candidates: Vec<&Arc<NodeInfo>> = match &narrowed {
            Some(names) => all
                .iter()
                .copied()
                .filter(|n| names.contains(&n.name))
                .collect(),
            None => all.clone(),
        };
        let to_find = num_feasible_nodes_to_find(percentage, candidates.len());
        let start = if narrowed.is_none() {
            self.next_start % candidates.len().max(1)
        } else {
            0
        };
        let mut feasible: Vec<Arc<NodeInfo>> = Vec::new();
        let mut statuses = NodeStatuses::new();
        let mut processed = 0;
        for i in 0..candidates.len() {
            if feasible.len() >= to_find {
                break;
            }
            let node = candidates[(start + i) % candidates.len()];
            processed += 1;
            let s = fw.run_filter_with_nominated(
                state,
                pod,
                node,
                cluster.nominated_on(&node.name),
                cluster,
            );
            if s.is_success() {
                feasible.push((*node).clone());
            } else if s.is_rejected() {
                statuses.insert(node.name.clone(), s);
            } else {
                return Err(CycleError::Error(s));
            }
        }
        if narrowed.is_none() {
            self.next_start = (start + processed) % candidates.len().max(1);
        }
        if feasible.is_empty() {
            // Nodes a PreFilter ruled out count with its reason.
            if narrowed.is_some() {
                for n in &all {
                    statuses.entry(n.name.clone()).or_insert_with(|| {
                        Status::unresolvable("node(s) didn't satisfy plugin(s) [NodeAffinity]")
                    });
                }
            }
            return Err(CycleError::Unschedulable(FitError {
                num_all_nodes: all.len(),
                pre_filter_msg: None,
                statuses,
                post_filter_msg: None,
            }));
        }
        if feasible.len() == 1 {
            return Ok(feasible[0].name.clone());
        }
        let s = fw.run_pre_score(state, pod, &feasible, cluster);
        if !s.is_success() {
            return Err(CycleError::Error(s));
        }
        let totals = fw
            .run_score(state, pod, &feasible)
            .map_err(CycleError::Error)?;
        Ok(select_host(&feasible, &totals))
    }

    fn assume_and_bind(
        &mut self,
        fw: Arc<Framework>,
        mut state: CycleState,
        info: Arc<PodInfo>,
        node: String,
        started: Instant,
    ) {
        self.cluster.assume(info.clone(), &node);
        let s = fw.run_reserve(&mut state, &info, &node, &self.cluster);
        if !s.is_success() {
            self.cluster.forget(info.uid());
            failure::record(self, &fw, &info, "SchedulerError", &s.to_string());
            self.queue.requeue_backoff(info.uid());
            return;
        }
        let profile = fw.scheduler_name.clone();
        metrics::attempt_duration(&self.metrics, &profile, "scheduled", started);
        let tx = self.tx.clone();
        let slots = self.api_slots.clone();
        let recorder = self.profiles.get(&profile).map(|p| p.recorder.clone());
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let mut status = fw.run_pre_bind(&state, &info.pod, &node).await;
            if status.is_success() {
                status = fw.run_bind(&state, &info.pod, &node).await;
            }
            let bound = status.is_success();
            let _ = tx.send(Input::Bound(Box::new(BindOutcome {
                pod: info.clone(),
                node: node.clone(),
                profile,
                state,
                status,
            })));
            if bound {
                if let Some(recorder) = recorder {
                    let note = Note {
                        warning: false,
                        reason: "Scheduled",
                        action: "Binding",
                        note: format!("Successfully assigned {} to {node}", info.key()),
                        related: None,
                    };
                    recorder.record(&info.pod, note).await;
                }
            }
        });
    }

    fn finish_binding(&mut self, mut outcome: BindOutcome) {
        let uid = outcome.pod.uid().to_string();
        if outcome.status.is_success() {
            self.metrics.inc(
                "scheduler_schedule_attempts_total",
                &[("result", "scheduled"), ("profile", &outcome.profile)],
            );
            self.queue.done(&uid);
            self.cluster.remove_nominated(&uid);
            return;
        }
        let Some(fw) = self
            .profiles
            .get(&outcome.profile)
            .map(|p| p.framework.clone())
        else {
            return;
        };
        fw.run_unreserve(&mut outcome.state, &outcome.pod, &outcome.node);
        self.cluster.forget(&uid);
        self.metrics.inc(
            "scheduler_schedule_attempts_total",
            &[("result", "error"), ("profile", &outcome.profile)],
        );
        let message = format!("Binding rejected: {}", outcome.status);
        tracing::warn!("{}: {message}", outcome.pod.key());
        failure::record(self, &fw, &outcome.pod, "SchedulerError", &message);
        self.queue.requeue_backoff(&uid);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The node with the highest total; ties broken uniformly at random, as upstream does.
fn select_host(nodes: &[Arc<NodeInfo>], totals: &[i64]) -> String {
    let mut best = 0;
    let mut ties = 0u32;
    let mut rng = rand::rng();
    for (i, total) in totals.iter().enumerate() {
        if *total > totals[best] {
            best = i;
            ties = 1;
        } else if *total == totals[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    nodes[best].name.clone()
}

pub fn pod_scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME)
}
