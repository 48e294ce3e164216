//! One pass over a job: count newly finished pods (two-phase, through uncountedTerminatedPods
//! and the tracking finalizer), decide success or failure, then let `manage` fix the pods.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;

use super::conditions::{add_true, find, finished, flip_existing, is_true};
use super::pods::{failed, has_finalizer, index_failures, index_of, release, succeeded};
use super::policy::{judge, success_rule, Verdict};
use super::{indexes, manage, Error, State};

/// What one pass learned about the job's pods.
pub(super) struct View {
    pub owned: Vec<Arc<Pod>>,
    pub completed: BTreeSet<i32>,
    pub failed_indexes: BTreeSet<i32>,
}

pub(super) async fn sync(job: &Job, state: &State) -> Result<Action, Error> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(state.ctx.client.clone(), &ns);
    let now = Timestamp::now();

    let owned: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| {
            crate::shared::ownership::controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
        })
        .collect();
    let tracked = |p: &Pod| {
        let puid = p.metadata.uid.clone().unwrap_or_default();
        let mut released = state.released.lock().unwrap_or_else(|e| e.into_inner());
        if !has_finalizer(p) {
            released.remove(&puid);
            return false;
        }
        !released.contains(&puid)
    };

    let mut status = job.status.clone().unwrap_or_default();
    if job.metadata.deletion_timestamp.is_some() || finished(&status) {
        let lingering: Vec<Arc<Pod>> = owned.iter().filter(|p| tracked(p)).cloned().collect();
        release_all(state, &pods_api, &lingering).await?;
        state
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
        return Ok(Action::await_change());
    }

    let spec = job.spec.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.unwrap_or(0);
    let per_index = spec.backoff_limit_per_index;
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_s: Vec<String> = uncounted.succeeded.clone().unwrap_or_default();
    let mut unc_f: Vec<String> = uncounted.failed.clone().unwrap_or_default();
    let known: HashSet<String> = unc_s.iter().chain(unc_f.iter()).cloned().collect();
    let mut completed = if indexed {
        indexes::parse(status.completed_indexes.as_deref(), completions)
    } else {
        BTreeSet::new()
    };
    let mut failed_indexes = indexes::parse(status.failed_indexes.as_deref(), completions);
    let mut fail_job: Option<String> = None;
    let mut to_release = Vec::new();
    let mut news = false;

    for p in owned.iter().filter(|p| tracked(p)) {
        let puid = p.metadata.uid.clone().unwrap_or_default();
        if known.contains(&puid) {
            to_release.push(p.clone());
            continue;
        }
        if succeeded(p) {
            to_release.push(p.clone());
            if indexed {
                match index_of(p).filter(|i| *i < completions) {
                    // The completed index itself guards against counting the pod twice, so
                    // upstream keeps no uid for it in uncountedTerminatedPods.
                    Some(i) if !completed.contains(&i) && !failed_indexes.contains(&i) => {
                        completed.insert(i);
                        news = true;
                    }
                    // A duplicate or out-of-range index adds nothing; it is only released.
                    _ => {}
                }
                continue;
            }
            unc_s.push(puid);
            news = true;
        } else if failed(p, job) {
            to_release.push(p.clone());
            match judge(spec.pod_failure_policy.as_ref(), p) {
                Verdict::Ignore => continue,
                Verdict::FailJob(msg) => {
                    fail_job.get_or_insert(msg);
                }
                Verdict::FailIndex => {
                    if let Some(i) = index_of(p).filter(|_| indexed) {
                        failed_indexes.insert(i);
                    }
                }
                Verdict::Count => {
                    if let (Some(limit), Some(i), true) = (per_index, index_of(p), indexed) {
                        if index_failures(p) + 1 > limit {
                            failed_indexes.insert(i);
                        }
                    }
                }
            }
            unc_f.push(puid);
            news = true;
        }
    }

    let mut job = job.clone();
    if news {
        // Phase one: record the uids (and any FailJob verdict) before releasing a single pod,
        // so a crash between the two steps loses or double-counts nothing.
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(unc_s.clone()),
            failed: Some(unc_f.clone()),
        });
        set_indexes(
            &mut status,
            indexed,
            &completed,
            per_index.is_some(),
            &failed_indexes,
        );
        if indexed {
            status.succeeded = Some(completed.len() as i32);
        }
        if let Some(msg) = &fail_job {
            if !is_true(&status, "SuccessCriteriaMet") {
                add_true(&mut status, "FailureTarget", "PodFailurePolicy", msg, now);
            }
        }
        job = write_status(&jobs_api, &job, status.clone()).await?;
    }
    release_all(state, &pods_api, &to_release).await?;
    // Phase two: every recorded pod is released, so its outcome moves into the counters.
    let counted_s = unc_s.len() as i32;
    status.succeeded = Some(if indexed {
        completed.len() as i32
    } else {
        status.succeeded.unwrap_or(0) + counted_s
    });
    status.failed = Some(status.failed.unwrap_or(0) + unc_f.len() as i32);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    set_indexes(
        &mut status,
        indexed,
        &completed,
        per_index.is_some(),
        &failed_indexes,
    );

    let view = View {
        owned,
        completed,
        failed_indexes,
    };
    let mut requeue: Option<Duration> = None;
    let suspended = spec.suspend == Some(true);
    if suspended {
        if add_true(
            &mut status,
            "Suspended",
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            state
                .event(&job, false, "Suspended", "Job suspended".into())
                .await;
        }
    } else {
        if flip_existing(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        ) {
            state
                .event(&job, false, "Resumed", "Job resumed".into())
                .await;
            // The deadline counts time the job is actually allowed to run.
            status.start_time = Some(Time(now));
        }
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
    }

    let decided = is_true(&status, "FailureTarget") || is_true(&status, "SuccessCriteriaMet");
    if !decided {
        if let Some((reason, msg)) =
            failure(&job, &spec, &status, &view, suspended, now, &mut requeue)
        {
            add_true(&mut status, "FailureTarget", reason, &msg, now);
        } else if let Some((reason, msg)) = success(&spec, &status, &view, indexed) {
            add_true(&mut status, "SuccessCriteriaMet", reason, &msg, now);
        }
    }

    let outcome = manage::pods(&job, state, &pods_api, &view, &mut status, suspended, now).await?;
    if let Some(d) = outcome.retry_after {
        requeue = Some(requeue.map_or(d, |r| r.min(d)));
    }

    // The terminal condition waits until no pod of the job can still run or be counted.
    let settled = outcome.active == 0 && outcome.terminating == 0;
    let mut finish_event = None;
    if settled {
        if let Some(c) = find(&status, "FailureTarget")
            .filter(|c| c.status == "True")
            .cloned()
        {
            let (reason, msg) = (c.reason.unwrap_or_default(), c.message.unwrap_or_default());
            if add_true(&mut status, "Failed", &reason, &msg, now) {
                finish_event = Some((true, reason, msg));
            }
        } else if let Some(c) = find(&status, "SuccessCriteriaMet")
            .filter(|c| c.status == "True")
            .cloned()
        {
            let (reason, msg) = (c.reason.unwrap_or_default(), c.message.unwrap_or_default());
            if add_true(&mut status, "Complete", &reason, &msg, now) {
                status.completion_time = Some(Time(now));
                finish_event = Some((false, "Completed".to_string(), "Job completed".to_string()));
            }
        }
    }

    if job.status.as_ref() != Some(&status) {
        write_status(&jobs_api, &job, status.clone()).await?;
    }
    if let Some((warning, reason, msg)) = finish_event {
        state.event(&job, warning, &reason, msg).await;
        return Ok(Action::await_change());
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

fn set_indexes(
    status: &mut JobStatus,
    indexed: bool,
    completed: &BTreeSet<i32>,
    per_index: bool,
    failed: &BTreeSet<i32>,
) {
    if indexed {
        status.completed_indexes = Some(indexes::format(completed));
        if per_index {
            status.failed_indexes = Some(indexes::format(failed));
        }
    }
}

/// Whether the job must fail now, and why; also schedules a wake-up for the active deadline.
fn failure(
    job: &Job,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    status: &JobStatus,
    view: &View,
    suspended: bool,
    now: Timestamp,
    requeue: &mut Option<Duration>,
) -> Option<(&'static str, String)> {
    let completions = spec.completions.unwrap_or(0);
    if spec.backoff_limit_per_index.is_some() {
        let failed = view.failed_indexes.len() as i32;
        if spec.max_failed_indexes.is_some_and(|m| failed > m) {
            return Some((
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes".into(),
            ));
        }
        if failed > 0 && (view.completed.len() as i32 + failed) >= completions {
            return Some(("FailedIndexes", "Job has failed indexes".into()));
        }
    } else if status.failed.unwrap_or(0) > spec.backoff_limit.unwrap_or(6) {
        return Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".into(),
        ));
    }
    if let (Some(ads), Some(start), false) = (
        spec.active_deadline_seconds,
        status.start_time.as_ref(),
        suspended,
    ) {
        let deadline = start.0 + Duration::from_secs(ads.max(0) as u64);
        if now >= deadline {
            return Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into(),
            ));
        }
        let left = now.duration_until(deadline).unsigned_abs();
        *requeue = Some(requeue.map_or(left, |r| r.min(left)));
    }
    let _ = job;
    None
}

fn success(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    status: &JobStatus,
    view: &View,
    indexed: bool,
) -> Option<(&'static str, String)> {
    let reached = (
        "CompletionsReached",
        "Reached expected number of succeeded pods".to_string(),
    );
    if indexed {
        let completions = spec.completions.unwrap_or(0);
        if let Some(i) = success_rule(spec.success_policy.as_ref(), &view.completed, completions) {
            return Some(("SuccessPolicy", format!("Matched rules at index {i}")));
        }
        return (view.completed.len() as i32 >= completions).then_some(reached);
    }
    let succeeded = status.succeeded.unwrap_or(0);
    match spec.completions {
        Some(c) => (succeeded >= c).then_some(reached),
        None => {
            let running = view.owned.iter().any(|p| super::pods::active(p));
            (succeeded > 0 && !running).then_some(reached)
        }
    }
}

async fn release_all(state: &State, api: &Api<Pod>, pods: &[Arc<Pod>]) -> anyhow::Result<()> {
    let results = futures::future::join_all(pods.iter().map(|p| release(api, p))).await;
    for (p, r) in pods.iter().zip(results) {
        r.with_context(|| format!("removing the tracking finalizer of {:?}", p.metadata.name))?;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        state
            .released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid);
    }
    Ok(())
}

async fn write_status(api: &Api<Job>, job: &Job, status: JobStatus) -> anyhow::Result<Job> {
    let mut next = job.clone();
    next.status = Some(status);
    let name = job.metadata.name.clone().unwrap_or_default();
    Ok(api
        .replace_status(&name, &PostParams::default(), &next)
        .await?)
}
