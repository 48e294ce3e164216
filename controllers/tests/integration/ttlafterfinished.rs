//! The TTL-after-finished controller against a real apiserver. No Job controller runs: the
//! test writes the finished status itself.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::ttlafterfinished;
use serde_json::json;

/// A hang guard only; nothing asserts on how long things take.
const GUARD: Duration = Duration::from_secs(60);

fn job_json(name: &str, ttl: i32) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "ttlSecondsAfterFinished": ttl,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}]
            }}
        }
    }))
    .expect("job")
}

/// Writes the status a Job controller writes when the job ends (`Complete` or `Failed`).
async fn finish(api: &Api<Job>, name: &str, how: &str) {
    let now = Timestamp::from_second(Timestamp::now().as_second())
        .expect("timestamp")
        .to_string();
    let (target, reason) = if how == "Complete" {
        ("SuccessCriteriaMet", "CompletionsReached")
    } else {
        ("FailureTarget", "BackoffLimitExceeded")
    };
    let mut status = json!({
        "startTime": now,
        "conditions": [
            {"type": target, "status": "True", "reason": reason,
             "lastProbeTime": now, "lastTransitionTime": now},
            {"type": how, "status": "True", "reason": reason,
             "lastProbeTime": now, "lastTransitionTime": now}
        ]
    });
    if how == "Complete" {
        status["completionTime"] = json!(now);
        status["succeeded"] = json!(1);
    } else {
        status["failed"] = json!(1);
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("job status");
}

/// Waits until the job is being deleted (or gone), returning it if it is still there.
async fn wait_deleting(api: &Api<Job>, name: &str) -> Option<Job> {
    let cond = |j: Option<&Job>| j.is_none_or(|j| j.metadata.deletion_timestamp.is_some());
    tokio::time::timeout(GUARD, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for job {name} to be deleted"))
        .expect("watch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_deleted_after_their_ttl() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ctx = Context::new(client.clone(), Settings::default());
    tokio::spawn(ttlafterfinished::run(ctx));
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");

    for (name, ttl, how) in [("now", 0, "Complete"), ("soon", 1, "Failed")] {
        let created = jobs
            .create(&PostParams::default(), &job_json(name, ttl))
            .await
            .expect("create job");
        finish(&jobs, name, how).await;
        // No garbage collector runs here, so a foreground deletion stays visible with its
        // finalizer: that shows the propagation policy the controller asked for.
        let j = wait_deleting(&jobs, name)
            .await
            .expect("job kept by foreground deletion");
        assert_eq!(j.uid(), created.uid());
        assert!(
            j.finalizers().iter().any(|f| f == "foregroundDeletion"),
            "{name}: {:?}",
            j.finalizers()
        );
    }
}
