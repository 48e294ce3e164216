//! One pass over a CronJob: refresh the active list, prune history, then start the job that
//! is due (if any) and sleep until the next activation.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;

use super::schedule::{most_recent, parse};
use super::{Error, State};
use crate::shared::ownership::{controller_ref, is_controlled_by};

const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

fn finished(job: &Job) -> Option<&str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

pub(super) async fn sync(cj: &CronJob, state: &State) -> Result<Action, Error> {
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(state.ctx.client.clone(), &ns);
    let cj_api: Api<CronJob> = Api::namespaced(state.ctx.client.clone(), &ns);
    let now = (state.clock)();
    let spec = cj.spec.clone().unwrap_or_default();
    let mut status = cj.status.clone().unwrap_or_default();

    // A consistent list: the decision to start a job must not rest on a stale cache.
    let mut children: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| is_controlled_by(&j.metadata, &cj.metadata))
        .collect();

    let mut active: Vec<ObjectReference> = Vec::new();
    for j in &children {
        let jname = j.metadata.name.clone().unwrap_or_default();
        let listed = status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid == j.metadata.uid);
        match finished(j) {
            Some(how) => {
                if listed {
                    state
                        .event(
                            cj,
                            false,
                            "SawCompletedJob",
                            format!("Saw completed job: {jname}, condition: {how}"),
                        )
                        .await;
                }
                if how == "Complete" {
                    let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.as_ref().map(|t| t.0)
                        > status.last_successful_time.as_ref().map(|t| t.0)
                    {
                        status.last_successful_time = done;
                    }
                }
            }
            None => active.push(job_ref(j)),
        }
    }
    for r in status.active.iter().flatten() {
        if !children.iter().any(|j| j.metadata.uid == r.uid) {
            let missing = r.name.clone().unwrap_or_default();
            state
                .event(
                    cj,
                    false,
                    "MissingJob",
                    format!("Active job went missing: {missing}"),
                )
                .await;
        }
    }
    status.active = (!active.is_empty()).then_some(active);

    prune(
        cj,
        state,
        &jobs_api,
        &mut children,
        spec.successful_jobs_history_limit.unwrap_or(3),
        "Complete",
    )
    .await?;
    prune(
        cj,
        state,
        &jobs_api,
        &mut children,
        spec.failed_jobs_history_limit.unwrap_or(1),
        "Failed",
    )
    .await?;

    let mut action = Action::await_change();
    if cj.metadata.deletion_timestamp.is_none() && spec.suspend != Some(true) {
        action = schedule(cj, state, &jobs_api, &spec, &mut status, now).await?;
    }
    if cj.status.as_ref() != Some(&status) {
        let mut next = cj.clone();
        next.status = Some(status);
        cj_api
            .replace_status(&name, &PostParams::default(), &next)
            .await?;
    }
    Ok(action)
}

async fn schedule(
    cj: &CronJob,
    state: &State,
    jobs_api: &Api<Job>,
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    status: &mut CronJobStatus,
    now: Timestamp,
) -> Result<Action, Error> {
    let sched = match parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            state
                .event(
                    cj,
                    true,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )
                .await;
            return Ok(Action::await_change());
        }
    };
    let zone = match spec.time_zone.as_deref() {
        Some(z) => match TimeZone::get(z) {
            Ok(tz) => tz,
            Err(e) => {
                state
                    .event(
                        cj,
                        true,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {z:?}: {e}"),
                    )
                    .await;
                return Ok(Action::await_change());
            }
        },
        None => TimeZone::UTC,
    };
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
    if let Some(sds) = spec.starting_deadline_seconds {
        let floor = now - SignedDuration::from_secs(sds);
        if floor > earliest {
            earliest = floor;
        }
    }
    let (due, missed) = most_recent(&sched, earliest, now, &zone);
    if missed > 100 {
        state
            .event(
                cj,
                true,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
            )
            .await;
    }
    let wake = wake_after(&sched, now, &zone);
    let Some(due) = due else { return Ok(wake) };
    if let Some(sds) = spec.starting_deadline_seconds {
        if due + SignedDuration::from_secs(sds) < now {
            state
                .event(
                    cj,
                    true,
                    "MissSchedule",
                    format!("Missed scheduled time to start a job: {due}"),
                )
                .await;
            return Ok(wake);
        }
    }
    let job_name = format!(
        "{}-{}",
        cj.metadata.name.clone().unwrap_or_default(),
        due.as_second() / 60
    );
    let already = status
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(job_name.as_str()));
    if already
        || status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 >= due)
    {
        return Ok(wake);
    }
    let running = status.active.clone().unwrap_or_default();
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if !running.is_empty() => {
            state
                .event(
                    cj,
                    false,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                )
                .await;
            return Ok(wake);
        }
        "Replace" => {
            for r in &running {
                let n = r.name.clone().unwrap_or_default();
                delete_job(cj, state, jobs_api, &n).await?;
            }
            status.active = None;
        }
        _ => {}
    }
    let job = stamp(cj, &job_name, due, &zone);
    let made = match jobs_api.create(&PostParams::default(), &job).await {
        Ok(j) => {
            state
                .event(
                    cj,
                    false,
                    "SuccessfulCreate",
                    format!("Created job {job_name}"),
                )
                .await;
            j
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let j = jobs_api.get(&job_name).await?;
            if !is_controlled_by(&j.metadata, &cj.metadata) {
                return Err(anyhow::anyhow!("job {job_name} exists and is not ours").into());
            }
            j
        }
        Err(e) => {
            state
                .event(cj, true, "FailedCreate", format!("Error creating job: {e}"))
                .await;
            return Err(e.into());
        }
    };
    if finished(&made).is_none() {
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(job_ref(&made));
    }
    status.last_schedule_time = Some(Time(due));
    Ok(wake)
}

/// Requeue just after the next activation; the only timed wake-up, since a schedule is
/// genuinely about time.
fn wake_after(s: &super::schedule::Schedule, now: Timestamp, zone: &TimeZone) -> Action {
    match s.next(now, zone) {
        Some(n) => {
            let left = now.duration_until(n).unsigned_abs() + Duration::from_millis(100);
            Action::requeue(left)
        }
        None => Action::await_change(),
    }
}

fn stamp(cj: &CronJob, name: &str, due: Timestamp, zone: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_AT.into(), rfc3339(due, zone));
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref("batch/v1", "CronJob", &cj.metadata)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Go's `time.RFC3339` layout, which upstream stamps the annotation with: a zero offset is
/// written `Z`, any other as `+hh:mm`.
fn rfc3339(t: Timestamp, zone: &TimeZone) -> String {
    let z = t.to_zoned(zone.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn job_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..Default::default()
    }
}

async fn delete_job(cj: &CronJob, state: &State, api: &Api<Job>, name: &str) -> Result<(), Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            state
                .event(cj, false, "SuccessfulDelete", format!("Deleted job {name}"))
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => {
            state
                .event(cj, true, "FailedDelete", format!("Deleted job: {e}"))
                .await;
            Err(e.into())
        }
    }
}

/// Deletes the oldest finished jobs of one kind beyond `limit`.
async fn prune(
    cj: &CronJob,
    state: &State,
    api: &Api<Job>,
    children: &mut Vec<Job>,
    limit: i32,
    kind: &str,
) -> Result<(), Error> {
    let mut done: Vec<&Job> = children
        .iter()
        .filter(|j| finished(j) == Some(kind))
        .collect();
    let limit = limit.max(0) as usize;
    if done.len() <= limit {
        return Ok(());
    }
    done.sort_by_key(|j| {
        let st = j.status.as_ref();
        (
            st.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            j.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    });
    let doomed: Vec<String> = done[..done.len() - limit]
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    for n in &doomed {
        delete_job(cj, state, api, n).await?;
    }
    children.retain(|j| !j.metadata.name.as_ref().is_some_and(|n| doomed.contains(n)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_timestamp_is_go_rfc3339() {
        let t: Timestamp = "2024-07-01T13:00:00Z".parse().expect("timestamp");
        assert_eq!(rfc3339(t, &TimeZone::UTC), "2024-07-01T13:00:00Z");
        let ny = TimeZone::get("America/New_York").expect("tzdb");
        assert_eq!(rfc3339(t, &ny), "2024-07-01T09:00:00-04:00");
    }
}
