//! The CronJob controller against a real apiserver, with its clock moved to just before a
//! minute boundary so that an every-minute schedule fires without waiting up to a minute.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrokube_testkit::TestServer;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::cronjob;
use serde_json::json;

/// A hang guard only; nothing asserts on how long things take.
const GUARD: Duration = Duration::from_secs(60);
const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// The first minute boundary strictly after `t`.
fn next_minute(t: Timestamp) -> Timestamp {
    let s = t.as_second().div_euclid(60) * 60 + 60;
    Timestamp::from_second(s).expect("timestamp")
}

fn cronjob_json(name: &str) -> CronJob {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}]
                }}}
            }
        }
    }))
    .expect("cronjob")
}

async fn wait_cronjob(
    api: &Api<CronJob>,
    name: &str,
    f: impl Fn(&CronJob) -> bool + Send + 'static,
) -> CronJob {
    let cond = move |c: Option<&CronJob>| c.is_some_and(&f);
    tokio::time::timeout(GUARD, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for cronjob {name}"))
        .expect("watch")
        .expect("cronjob exists")
}

async fn wait_job(api: &Api<Job>, name: &str) -> Job {
    let cond = |j: Option<&Job>| j.is_some();
    tokio::time::timeout(GUARD, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for job {name}"))
        .expect("watch")
        .expect("job exists")
}

fn active_names(cj: &CronJob) -> Vec<String> {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .map(|a| a.iter().filter_map(|r| r.name.clone()).collect())
        .unwrap_or_default()
}

fn last_schedule(cj: &CronJob) -> Option<Timestamp> {
    cj.status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
}

/// Waits for an event with `reason` about the named object.
async fn wait_event(api: &Api<Event>, object: &str, reason: &str) {
    let stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    let fut = async {
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            let about = ev.regarding.as_ref().and_then(|r| r.name.as_deref());
            if ev.reason.as_deref() == Some(reason) && about == Some(object) {
                return;
            }
        }
        panic!("event watch ended")
    };
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for event {reason}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_with_forbid() {
    let server = TestServer::start().await;
    let client = server.client().await;

    // Put the controller's clock 1.5s before the next minute boundary, never behind the real
    // time, so the CronJob's creation (real time) comes before that boundary.
    let real = Timestamp::now();
    let boundary = next_minute(real);
    let lead = real
        .duration_until(boundary)
        .checked_sub(SignedDuration::from_millis(1500))
        .filter(|d| d.is_positive())
        .unwrap_or(SignedDuration::ZERO);
    let offset_ms = Arc::new(AtomicI64::new(lead.as_millis() as i64));
    let shift = offset_ms.clone();
    let clock: cronjob::Clock = Arc::new(move || {
        let ms = shift.load(Ordering::SeqCst);
        Timestamp::now()
            .checked_add(SignedDuration::from_millis(ms))
            .unwrap_or_else(|_| Timestamp::now())
    });
    let ctx = Context::new(client.clone(), Settings::default());
    tokio::spawn(cronjob::run_with_clock(ctx, clock));

    let cjs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    cjs.create(&PostParams::default(), &cronjob_json("tick"))
        .await
        .expect("create cronjob");

    // The boundary passes on the controller's clock: the job for that minute appears.
    let first_name = format!("tick-{}", boundary.as_second() / 60);
    let first = wait_job(&jobs, &first_name).await;
    assert_eq!(
        first.annotations().get(SCHEDULED_AT).map(String::as_str),
        Some(boundary.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().as_str())
    );
    assert_eq!(first.labels().get("app").map(String::as_str), Some("tick"));
    let owner = &first.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    let cj = wait_cronjob(&cjs, "tick", |c| last_schedule(c).is_some()).await;
    assert_eq!(last_schedule(&cj), Some(boundary));
    assert_eq!(active_names(&cj), std::slice::from_ref(&first_name));

    // A minute later on the controller's clock, with the first job still running, Forbid skips
    // the run. Touching the CronJob makes the controller look now rather than at its timer.
    offset_ms.fetch_add(60_000, Ordering::SeqCst);
    cjs.patch(
        "tick",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
    )
    .await
    .expect("touch cronjob");
    wait_event(&events, "tick", "JobAlreadyActive").await;
    let second_due = boundary
        .checked_add(SignedDuration::from_secs(60))
        .expect("timestamp");
    let second_name = format!("tick-{}", second_due.as_second() / 60);
    assert!(
        jobs.get_opt(&second_name).await.expect("get").is_none(),
        "Forbid must not start a second job while the first runs"
    );
    let cj = cjs.get("tick").await.expect("get cronjob");
    assert_eq!(last_schedule(&cj), Some(boundary));

    // The first job finishes: the missed run of this minute starts.
    let now = Timestamp::from_second(Timestamp::now().as_second())
        .expect("timestamp")
        .to_string();
    jobs.patch_status(
        &first_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "startTime": now, "completionTime": now, "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "lastProbeTime": now, "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "lastProbeTime": now, "lastTransitionTime": now}
            ]
        }})),
    )
    .await
    .expect("complete first job");
    wait_job(&jobs, &second_name).await;
    let done = first_name.clone();
    let cj = wait_cronjob(&cjs, "tick", move |c| {
        last_schedule(c) == Some(second_due)
            && c.status
                .as_ref()
                .and_then(|s| s.last_successful_time.as_ref())
                .is_some()
            && !active_names(c).contains(&done)
    })
    .await;
    assert_eq!(active_names(&cj), [second_name]);
}
