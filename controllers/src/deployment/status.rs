//! Deployment status from its replica sets, and the rollout's progress: Available,
//! Progressing (with progressDeadlineSeconds) and ReplicaFailure surfaced from the new RS.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::conditions as cond;
use super::util::*;

pub fn calculate(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    now: Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|r| rs_available(r)).sum();
    let total: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let mut st = d.status.clone().unwrap_or_default();
    st.observed_generation = d.metadata.generation;
    st.replicas = Some(all.iter().map(|r| rs_actual(r)).sum());
    st.updated_replicas = Some(new_rs.map(rs_actual).unwrap_or(0));
    st.ready_replicas = Some(all.iter().map(|r| rs_ready(r)).sum());
    st.available_replicas = Some(available);
    st.unavailable_replicas = Some((total - available).max(0));
    for f in [
        &mut st.replicas,
        &mut st.updated_replicas,
        &mut st.ready_replicas,
        &mut st.available_replicas,
        &mut st.unavailable_replicas,
    ] {
        if *f == Some(0) {
            *f = None;
        }
    }
    let (_, max_unavailable) = surge_and_unavailable(d);
    if available >= replicas(d) - max_unavailable {
        cond::set(
            &mut st,
            cond::new(
                cond::AVAILABLE,
                "True",
                cond::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        cond::set(
            &mut st,
            cond::new(
                cond::AVAILABLE,
                "False",
                cond::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    st
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

pub fn deadline(d: &Deployment) -> Option<i32> {
    let s = d.spec.as_ref()?.progress_deadline_seconds.unwrap_or(600);
    (s != i32::MAX).then_some(s)
}

pub fn complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let want = replicas(d);
    n(st.updated_replicas) == want
        && n(st.replicas) == want
        && n(st.available_replicas) == want
        && st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

fn progressing(d: &Deployment, st: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(st.replicas) - n(st.updated_replicas);
    n(st.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(st.ready_replicas) > n(old.ready_replicas)
        || n(st.available_replicas) > n(old.available_replicas)
}

fn timed_out(d: &Deployment, st: &DeploymentStatus, now: Timestamp) -> bool {
    let (Some(secs), Some(c)) = (deadline(d), cond::get(st, cond::PROGRESSING)) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(cond::NEW_RS_AVAILABLE) => false,
        Some(cond::TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + SignedDuration::from_secs(i64::from(secs)) < now),
    }
}

/// The status after this sync, and when to look again if the deadline may pass with no
/// event to announce it.
pub fn rollout(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    now: Timestamp,
) -> (DeploymentStatus, Option<Duration>) {
    let mut st = calculate(d, new_rs, all, now);
    let name = new_rs.map(|r| r.name_any());
    if deadline(d).is_none() {
        cond::remove(&mut st, cond::PROGRESSING);
    }
    let current = cond::get(&st, cond::PROGRESSING).cloned();
    let already_timed_out =
        current.as_ref().and_then(|c| c.reason.as_deref()) == Some(cond::TIMED_OUT);
    if deadline(d).is_some() && !already_timed_out {
        if complete(d, &st) {
            let msg = match &name {
                Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
                None => "Deployment has successfully progressed.".into(),
            };
            cond::set(
                &mut st,
                cond::new(cond::PROGRESSING, "True", cond::NEW_RS_AVAILABLE, msg, now),
            );
        } else if progressing(d, &st) {
            let msg = match &name {
                Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
                None => "Deployment is progressing.".into(),
            };
            let mut c = cond::new(cond::PROGRESSING, "True", cond::RS_UPDATED, msg, now);
            // Progress refreshes lastUpdateTime even with an unchanged reason: that is the
            // clock the deadline runs on.
            if let Some(old) = current.as_ref().filter(|o| o.status == "True") {
                c.last_transition_time = old.last_transition_time.clone();
            }
            cond::remove(&mut st, cond::PROGRESSING);
            cond::set(&mut st, c);
        } else if timed_out(d, &st, now) {
            let msg = match &name {
                Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
                None => "Deployment has timed out progressing.".into(),
            };
            cond::set(
                &mut st,
                cond::new(cond::PROGRESSING, "False", cond::TIMED_OUT, msg, now),
            );
        }
    }
    let failure = new_rs
        .and_then(|r| r.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        })
        .cloned();
    match failure {
        Some(f) => cond::set(
            &mut st,
            cond::new(
                cond::REPLICA_FAILURE,
                "True",
                f.reason.as_deref().unwrap_or(""),
                f.message.unwrap_or_default(),
                now,
            ),
        ),
        None => cond::remove(&mut st, cond::REPLICA_FAILURE),
    }
    let requeue = match (deadline(d), cond::get(&st, cond::PROGRESSING)) {
        (Some(secs), Some(c))
            if !complete(d, &st) && c.reason.as_deref() != Some(cond::TIMED_OUT) =>
        {
            c.last_update_time
                .as_ref()
                .map(|t| t.0 + SignedDuration::from_secs(i64::from(secs)))
                .map(|at| at.duration_since(now))
                .map(|left| left.max(SignedDuration::ZERO).unsigned_abs() + Duration::from_secs(1))
        }
        _ => None,
    };
    if st.conditions.as_ref().is_some_and(|c| c.is_empty()) {
        st.conditions = None;
    }
    (st, requeue)
}

/// Paused and resumed deployments say so in Progressing, with an Unknown status.
pub fn pause_conditions(d: &Deployment, now: Timestamp) -> Option<DeploymentStatus> {
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let mut st = d.status.clone().unwrap_or_default();
    let reason = cond::get(&st, cond::PROGRESSING).and_then(|c| c.reason.clone());
    if paused && reason.as_deref() != Some(cond::PAUSED) {
        cond::set(
            &mut st,
            cond::new(
                cond::PROGRESSING,
                "Unknown",
                cond::PAUSED,
                "Deployment is paused".into(),
                now,
            ),
        );
        return Some(st);
    }
    if !paused && reason.as_deref() == Some(cond::PAUSED) {
        cond::set(
            &mut st,
            cond::new(
                cond::PROGRESSING,
                "Unknown",
                cond::RESUMED,
                "Deployment is resumed".into(),
                now,
            ),
        );
        return Some(st);
    }
    None
}
