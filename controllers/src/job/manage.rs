//! Bringing a job's running pods to what it wants: none when suspended or decided, otherwise
//! up to parallelism (by remaining completions, or by missing index), spaced out after failures.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};

use super::conditions::is_true;
use super::pods::{
    active, failed, index_failures, index_of, only_replace_failed, ready, stamp, terminating,
};
use super::sync::View;
use super::{Pending, State};

/// Expectations older than this are dropped: a lost watch event must not wedge a job.
const PENDING_TTL: Duration = Duration::from_secs(300);

pub(super) struct Outcome {
    pub active: i32,
    pub terminating: i32,
    pub retry_after: Option<Duration>,
}

pub(super) async fn pods(
    job: &Job,
    state: &State,
    api: &Api<Pod>,
    view: &View,
    status: &mut JobStatus,
    suspended: bool,
    _now: Timestamp,
) -> Result<Outcome, super::Error> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let mut running: Vec<Arc<Pod>> = view.owned.iter().filter(|p| active(p)).cloned().collect();
    let terminating_n = view.owned.iter().filter(|p| terminating(p)).count() as i32;
    let stop_all =
        suspended || is_true(status, "FailureTarget") || is_true(status, "SuccessCriteriaMet");
    let mut out = Outcome {
        active: running.len() as i32,
        terminating: terminating_n,
        retry_after: None,
    };

    let fresh = cache_caught_up(state, &uid, &view.owned);
    if fresh {
        let mut doomed: Vec<Arc<Pod>> = Vec::new();
        let mut create: Vec<Option<(i32, i32)>> = Vec::new();
        if stop_all {
            doomed = std::mem::take(&mut running);
        } else {
            let blocking = if only_replace_failed(job) {
                terminating_n
            } else {
                0
            };
            let parallelism = spec.parallelism.unwrap_or(1).max(0);
            if spec.completion_mode.as_deref() == Some("Indexed") {
                plan_indexed(
                    job,
                    view,
                    &mut running,
                    &mut doomed,
                    &mut create,
                    parallelism - blocking,
                );
            } else {
                let succeeded = status.succeeded.unwrap_or(0);
                let want = match spec.completions {
                    Some(c) => (c - succeeded).clamp(0, parallelism),
                    None if succeeded > 0 => running.len() as i32,
                    None => parallelism,
                };
                let excess = (running.len() as i32 + blocking - want).max(0) as usize;
                // Upstream removes the least useful first: unscheduled, then not ready, then newest.
                running.sort_by_key(|p| {
                    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                    (
                        scheduled,
                        ready(p),
                        std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                    )
                });
                doomed.extend(running.drain(..excess.min(running.len())));
                let missing = want - blocking - running.len() as i32;
                create.extend((0..missing.max(0)).map(|_| None));
            }
        }
        if !create.is_empty() {
            if let Some(wait) = backoff_left(state, &uid, status.failed.unwrap_or(0)) {
                create.clear();
                out.retry_after = Some(wait);
            }
        }
        let mut pending = Pending {
            since: Some(Instant::now()),
            ..Default::default()
        };
        for p in &doomed {
            let name = p.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    pending
                        .deleted
                        .insert(p.metadata.uid.clone().unwrap_or_default());
                    out.active -= 1;
                    state
                        .event(
                            job,
                            false,
                            "SuccessfulDelete",
                            format!("Deleted pod: {name}"),
                        )
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => out.active -= 1,
                Err(e) => {
                    remember(state, &uid, pending);
                    return Err(e.into());
                }
            }
        }
        for index in create {
            match api.create(&PostParams::default(), &stamp(job, index)).await {
                Ok(pod) => {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    pending.created.insert(name.clone());
                    out.active += 1;
                    state
                        .event(
                            job,
                            false,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        )
                        .await;
                }
                Err(e) => {
                    remember(state, &uid, pending);
                    state
                        .event(job, true, "FailedCreate", format!("Error creating: {e}"))
                        .await;
                    return Err(e.into());
                }
            }
        }
        remember(state, &uid, pending);
    }

    status.active = Some(out.active.max(0));
    status.ready = Some(view.owned.iter().filter(|p| active(p) && ready(p)).count() as i32);
    status.terminating = Some(terminating_n);
    Ok(out)
}

/// Decides, for an Indexed job, which pods to drop (duplicates, finished or failed indexes)
/// and which indexes to start, lowest first, within parallelism.
fn plan_indexed(
    job: &Job,
    view: &View,
    running: &mut Vec<Arc<Pod>>,
    doomed: &mut Vec<Arc<Pod>>,
    create: &mut Vec<Option<(i32, i32)>>,
    room: i32,
) {
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let mut seen = BTreeSet::new();
    running.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let mut keep = Vec::new();
    for p in running.drain(..) {
        match index_of(&p) {
            Some(i)
                if i < completions
                    && !view.completed.contains(&i)
                    && !view.failed_indexes.contains(&i)
                    && seen.insert(i) =>
            {
                keep.push(p)
            }
            _ => doomed.push(p),
        }
    }
    while keep.len() as i32 > room.max(0) {
        if let Some(p) = keep.pop() {
            doomed.push(p);
        }
    }
    let mut tries: BTreeMap<i32, i32> = BTreeMap::new();
    for p in view
        .owned
        .iter()
        .filter(|p| failed(p, job) || terminating(p))
    {
        if let Some(i) = index_of(p) {
            let n = tries.entry(i).or_default();
            *n = (*n).max(index_failures(p) + 1);
        }
        if only_replace_failed(job) && terminating(p) {
            if let Some(i) = index_of(p) {
                seen.insert(i);
            }
        }
    }
    let free = (room - keep.len() as i32).max(0) as usize;
    let todo = (0..completions)
        .filter(|i| {
            !seen.contains(i) && !view.completed.contains(i) && !view.failed_indexes.contains(i)
        })
        .take(free);
    create.extend(todo.map(|i| Some((i, tries.get(&i).copied().unwrap_or(0)))));
    *running = keep;
}

/// Whether every creation and deletion asked for is visible in the pod cache.
fn cache_caught_up(state: &State, uid: &str, owned: &[Arc<Pod>]) -> bool {
    let mut all = state.pending.lock().unwrap_or_else(|e| e.into_inner());
    let Some(p) = all.get(uid) else { return true };
    let expired = p.since.is_some_and(|s| s.elapsed() > PENDING_TTL);
    let created_seen = p
        .created
        .iter()
        .all(|n| owned.iter().any(|o| o.metadata.name.as_ref() == Some(n)));
    let deleted_seen = p.deleted.iter().all(|u| {
        !owned
            .iter()
            .any(|o| o.metadata.uid.as_ref() == Some(u) && o.metadata.deletion_timestamp.is_none())
    });
    if expired || (created_seen && deleted_seen) {
        all.remove(uid);
        return true;
    }
    false
}

fn remember(state: &State, uid: &str, pending: Pending) {
    if pending.created.is_empty() && pending.deleted.is_empty() {
        return;
    }
    state
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(uid.to_string(), pending);
}

/// Time still to wait before replacing failed pods: the base delay doubling per failure,
/// counted from when this controller first saw the latest failure.
fn backoff_left(state: &State, uid: &str, failed: i32) -> Option<Duration> {
    if failed <= 0 || state.tuning.failure_backoff.is_zero() {
        return None;
    }
    let mut seen = state.failures.lock().unwrap_or_else(|e| e.into_inner());
    let entry = seen
        .entry(uid.to_string())
        .or_insert((failed, Instant::now()));
    if entry.0 != failed {
        *entry = (failed, Instant::now());
    }
    let exp = (failed - 1).clamp(0, 20) as u32;
    let delay = state
        .tuning
        .failure_backoff
        .saturating_mul(1u32 << exp)
        .min(state.tuning.max_failure_backoff);
    delay
        .checked_sub(entry.1.elapsed())
        .filter(|d| !d.is_zero())
}
