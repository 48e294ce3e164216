//! The scheduler's metrics, with upstream's names.

use std::time::Instant;

use ferrokube_component::metrics::{latency_buckets, Registry};

pub fn describe(r: &Registry) {
    r.describe(
        "scheduler_schedule_attempts_total",
        "Number of attempts to schedule pods, by the result.",
    );
    r.describe(
        "scheduler_pending_pods",
        "Number of pending pods, by the queue type.",
    );
    r.describe(
        "scheduler_scheduling_attempt_duration_seconds",
        "Scheduling attempt latency in seconds (scheduling algorithm + binding).",
    );
    r.describe(
        "scheduler_preemption_attempts_total",
        "Total preemption attempts in the cluster till now.",
    );
    r.describe(
        "scheduler_preemption_victims",
        "Number of selected preemption victims.",
    );
}

pub fn attempt_duration(r: &Registry, profile: &str, result: &str, started: Instant) {
    r.observe(
        "scheduler_scheduling_attempt_duration_seconds",
        &latency_buckets(),
        &[("profile", profile), ("result", result)],
        started.elapsed().as_secs_f64(),
    );
}
