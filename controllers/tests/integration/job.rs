//! The Job controller against a real apiserver; the test plays the kubelet by writing pod
//! status (phase and container exit codes).

use std::time::Duration;

use ferrokube_testkit::TestServer;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::job::{self, Tuning};
use serde_json::json;

/// A hang guard only; nothing asserts on how long things take.
const GUARD: Duration = Duration::from_secs(60);
const TRACKING: &str = "batch.kubernetes.io/job-tracking";

async fn start() -> (TestServer, kube::Client) {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ctx = Context::new(client.clone(), Settings::default());
    let tuning = Tuning {
        failure_backoff: Duration::ZERO,
        ..Default::default()
    };
    tokio::spawn(job::run_with(ctx, tuning));
    (server, client)
}

fn job_json(name: &str, extra: serde_json::Value) -> Job {
    let mut j = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
        }
    });
    if let (Some(spec), Some(extra)) = (j["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(j).expect("job")
}

fn has_cond(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn cond_reason(job: &Job, type_: &str) -> Option<String> {
    let cs = job.status.as_ref()?.conditions.as_ref()?;
    cs.iter().find(|c| c.type_ == type_)?.reason.clone()
}

async fn wait_job(api: &Api<Job>, name: &str, f: impl Fn(&Job) -> bool + Send + 'static) -> Job {
    let cond = move |j: Option<&Job>| j.is_some_and(&f);
    tokio::time::timeout(GUARD, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for job {name}"))
        .expect("watch")
        .expect("job exists")
}

/// Waits until the job's live (not finished, not deleted) pods satisfy `f`, then returns them.
async fn wait_pods(api: &Api<Pod>, job: &str, f: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
    let lp = format!("batch.kubernetes.io/job-name={job}");
    let stream = watcher(api.clone(), watcher::Config::default().labels(&lp)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let fut = async {
        while stream.next().await.is_some() {
            let pods = api
                .list(&ListParams::default().labels(&lp))
                .await
                .expect("list")
                .items;
            let live: Vec<Pod> = pods
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
                .collect();
            if f(&live) {
                return live;
            }
        }
        panic!("pod watch ended")
    };
    tokio::time::timeout(GUARD, fut)
        .await
        .expect("timed out waiting for pods")
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// What a kubelet would write when the pod's only container exits with `code`.
async fn finish(api: &Api<Pod>, pod: &Pod, code: i32) {
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let status = json!({"status": {
        "phase": phase,
        "containerStatuses": [{
            "name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"}}}
        }]
    }});
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .expect("pod status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_indexed_runs_to_completion_with_finalizer_tracking() {
    let (_server, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job_json("pi", json!({"completions": 3, "parallelism": 2})),
    )
    .await
    .expect("create job");

    let first = wait_pods(&pods, "pi", |p| p.len() == 2).await;
    for p in &first {
        assert!(
            p.finalizers().iter().any(|f| f == TRACKING),
            "pods carry the tracking finalizer"
        );
        assert_eq!(p.owner_references()[0].kind, "Job");
    }
    let j = wait_job(&jobs, "pi", |j| {
        j.status.as_ref().is_some_and(|s| s.active == Some(2))
    })
    .await;
    assert!(j
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_some());
    for p in &first {
        finish(&pods, p, 0).await;
    }
    // Two of three done: one more pod runs, and only one, as completions cap parallelism.
    let third = wait_pods(&pods, "pi", |p| p.len() == 1).await;
    finish(&pods, &third[0], 0).await;

    let done = wait_job(&jobs, "pi", |j| has_cond(j, "Complete")).await;
    let st = done.status.clone().expect("status");
    assert_eq!(st.succeeded, Some(3));
    assert_eq!(st.active, Some(0));
    assert!(st.completion_time.is_some());
    assert!(has_cond(&done, "SuccessCriteriaMet"));
    assert_eq!(
        cond_reason(&done, "Complete").as_deref(),
        Some("CompletionsReached")
    );
    let unc = st.uncounted_terminated_pods.unwrap_or_default();
    assert!(
        unc.succeeded.unwrap_or_default().is_empty() && unc.failed.unwrap_or_default().is_empty()
    );
    for p in pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=pi"))
        .await
        .expect("list")
        .items
    {
        assert!(
            !p.finalizers().iter().any(|f| f == TRACKING),
            "{} still tracked",
            p.name_any()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_limit_fails_the_job() {
    let (_server, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job_json("flaky", json!({"backoffLimit": 1})),
    )
    .await
    .expect("create job");
    let p = wait_pods(&pods, "flaky", |p| p.len() == 1).await;
    finish(&pods, &p[0], 1).await;
    // One failure is within the limit: a replacement comes.
    let first = p[0].uid();
    let p2 = wait_pods(&pods, "flaky", |x| x.len() == 1 && x[0].uid() != first).await;
    finish(&pods, &p2[0], 1).await;
    let failed = wait_job(&jobs, "flaky", |j| has_cond(j, "Failed")).await;
    assert_eq!(
        cond_reason(&failed, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(
        cond_reason(&failed, "FailureTarget").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(failed.status.as_ref().and_then(|s| s.failed), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume() {
    let (_server, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job_json("nap", json!({"parallelism": 2, "completions": 2})),
    )
    .await
    .expect("create job");
    wait_pods(&pods, "nap", |p| p.len() == 2).await;
    jobs.patch(
        "nap",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend");
    let j = wait_job(&jobs, "nap", |j| has_cond(j, "Suspended")).await;
    assert_eq!(
        cond_reason(&j, "Suspended").as_deref(),
        Some("JobSuspended")
    );
    wait_pods(&pods, "nap", |p| p.is_empty()).await;
    jobs.patch(
        "nap",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("resume");
    let j = wait_job(&jobs, "nap", |j| {
        cond_reason(j, "Suspended").as_deref() == Some("JobResumed")
    })
    .await;
    assert!(!has_cond(&j, "Suspended"));
    wait_pods(&pods, "nap", |p| p.len() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job() {
    let (_server, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job_json("slow", json!({"activeDeadlineSeconds": 1})),
    )
    .await
    .expect("create job");
    let j = wait_job(&jobs, "slow", |j| has_cond(j, "Failed")).await;
    assert_eq!(
        cond_reason(&j, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_with_pod_failure_policy() {
    let (_server, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = json!({
        "completions": 3, "parallelism": 3, "completionMode": "Indexed",
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}
        ]}
    });
    jobs.create(&PostParams::default(), &job_json("idx", spec))
        .await
        .expect("create job");
    let live = wait_pods(&pods, "idx", |p| p.len() == 3).await;
    let index = |p: &Pod| {
        p.annotations()
            .get("batch.kubernetes.io/job-completion-index")
            .cloned()
    };
    let mut seen: Vec<String> = live.iter().filter_map(index).collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);
    let by = |i: &str| {
        live.iter()
            .find(|p| index(p).as_deref() == Some(i))
            .cloned()
            .expect("index pod")
    };
    finish(&pods, &by("0"), 0).await;
    let j = wait_job(&jobs, "idx", |j| {
        j.status
            .as_ref()
            .and_then(|s| s.completed_indexes.as_deref())
            == Some("0")
    })
    .await;
    assert_eq!(j.status.and_then(|s| s.succeeded), Some(1));
    finish(&pods, &by("1"), 42).await;
    let j = wait_job(&jobs, "idx", |j| has_cond(j, "FailureTarget")).await;
    assert_eq!(
        cond_reason(&j, "FailureTarget").as_deref(),
        Some("PodFailurePolicy")
    );
    // The controller deletes index 2's pod; as its kubelet, report it Failed.
    let doomed = by("2");
    let fut = async {
        loop {
            let Some(p) = pods.get_opt(&doomed.name_any()).await.expect("pod") else {
                return;
            };
            if p.metadata.deletion_timestamp.is_some() {
                return;
            }
            let w = watcher::watch_object(pods.clone(), &doomed.name_any());
            let mut w = std::pin::pin!(w);
            while let Some(Ok(Some(p))) = w.next().await {
                if p.metadata.deletion_timestamp.is_some() {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(GUARD, fut).await.expect("pod deleted");
    // The controller may already have counted the terminating pod and released it (an
    // unscheduled pod has no kubelet to wait for), so it can be gone by now.
    let status = json!({"status": {"phase": "Failed", "containerStatuses": [{
        "name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}});
    match pods
        .patch_status(
            &doomed.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("pod status: {e}"),
    }
    let j = wait_job(&jobs, "idx", |j| has_cond(j, "Failed")).await;
    assert_eq!(
        cond_reason(&j, "Failed").as_deref(),
        Some("PodFailurePolicy")
    );
    let msg = j
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Failed"))
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        msg.contains("exit code 42") && msg.contains("FailJob rule at index 1"),
        "{msg}"
    );
}
