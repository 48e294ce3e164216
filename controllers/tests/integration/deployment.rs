//! The Deployment controller with the ReplicaSet controller against a real apiserver, driven
//! by the real kubectl (rollout status, history, undo, pause, resume, restart), with the test
//! playing the kubelet.

use crate::workload_support;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde_json::json;
use workload_support::*;

const REVISION: &str = "deployment.kubernetes.io/revision";

fn manifest(name: &str, replicas: i32, image: &str, strategy: &str) -> String {
    let strategy = if strategy == "Recreate" {
        json!({"type": "Recreate"})
    } else {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}})
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
    .to_string()
}

struct Cluster0 {
    client: kube::Client,
}

struct Cluster {
    s: TestServer,
    client: kube::Client,
    _rs: Running,
    _d: Running,
    _kubelet: Running,
}

async fn cluster() -> Cluster {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _rs = start(&s, kube_controller_manager::replicaset::run).await;
    let _d = start(&s, kube_controller_manager::deployment::run).await;
    let _kubelet = kubelet(client.clone(), "default");
    Cluster {
        s,
        client,
        _rs,
        _d,
        _kubelet,
    }
}

async fn apply(s: &TestServer, body: &str) {
    s.kubectl_with(&["apply", "-f", "-"], Some(body), &[])
        .await
        .expect_ok("apply");
}

async fn rollout_status(s: &TestServer, name: &str) -> String {
    within(
        "rollout status",
        s.kubectl(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=80s",
        ]),
    )
    .await
    .expect_ok("rollout status")
}

fn images(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| {
            p.spec
                .as_ref()
                .map(|s| s.containers[0].image.clone().unwrap_or_default())
        })
        .collect()
}

async fn owned_rss(client: &kube::Client, d: &str) -> Vec<ReplicaSet> {
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    rss.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| o.kind == "Deployment" && o.name == d)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_history_undo_pause_resume_restart() {
    let c = cluster().await;
    let s = &c.s;
    let deps: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    apply(s, &manifest("web", 4, "busybox:1", "RollingUpdate")).await;
    let out = rollout_status(s, "web").await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = deps.get("web").await.unwrap();
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("1"));
    let st = d.status.clone().unwrap();
    assert_eq!(
        (st.replicas, st.updated_replicas, st.available_replicas),
        (Some(4), Some(4), Some(4))
    );
    let conds = st.conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Available"
        && c.status == "True"
        && c.reason.as_deref() == Some("MinimumReplicasAvailable")));
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Progressing"
                && c.reason.as_deref() == Some("NewReplicaSetAvailable"))
    );
    let rs1 = owned_rss(&c.client, "web").await;
    assert_eq!(rs1.len(), 1);
    let hash = rs1[0]
        .labels()
        .get("pod-template-hash")
        .cloned()
        .expect("pod-template-hash");
    assert_eq!(rs1[0].name_any(), format!("web-{hash}"));
    let live = live_pods(&pods, "app=web").await;
    assert!(live
        .iter()
        .all(|p| p.labels().get("pod-template-hash") == Some(&hash)));

    // Revision 2: a new image rolls through.
    s.kubectl(&["set", "image", "deployment/web", "app=busybox:2"])
        .await
        .expect_ok("set image");
    s.kubectl(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=to v2",
    ])
    .await
    .expect_ok("annotate");
    rollout_status(s, "web").await;
    wait_pods(&pods, "app=web", "all pods on v2", |p| {
        p.len() == 4 && images(p).iter().all(|i| i == "busybox:2")
    })
    .await;
    let d = deps.get("web").await.unwrap();
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("2"));
    let history = s
        .kubectl(&["rollout", "history", "deployment/web"])
        .await
        .expect_ok("history");
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // Undo goes back to the v1 template, which takes the next revision number.
    s.kubectl(&["rollout", "undo", "deployment/web"])
        .await
        .expect_ok("undo");
    rollout_status(s, "web").await;
    wait_pods(&pods, "app=web", "all pods back on v1", |p| {
        p.len() == 4 && images(p).iter().all(|i| i == "busybox:1")
    })
    .await;
    let d = deps.get("web").await.unwrap();
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("3"));
    assert_eq!(
        owned_rss(&c.client, "web").await.len(),
        2,
        "undo reuses the old replica set"
    );

    // Paused: template changes wait; resumed: they roll.
    s.kubectl(&["rollout", "pause", "deployment/web"])
        .await
        .expect_ok("pause");
    wait_for(&deps, "web", "DeploymentPaused", |d| {
        d.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused")
                })
            })
    })
    .await;
    s.kubectl(&["set", "image", "deployment/web", "app=busybox:3"])
        .await
        .expect_ok("set image paused");
    wait_for(&deps, "web", "paused sync", |d| {
        d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
    })
    .await;
    assert_eq!(
        owned_rss(&c.client, "web").await.len(),
        2,
        "no new RS while paused"
    );
    s.kubectl(&["rollout", "resume", "deployment/web"])
        .await
        .expect_ok("resume");
    rollout_status(s, "web").await;
    wait_pods(&pods, "app=web", "all pods on v3", |p| {
        p.len() == 4 && images(p).iter().all(|i| i == "busybox:3")
    })
    .await;

    // Restart stamps the template, so a fresh RS replaces every pod.
    let before: Vec<String> = live_pods(&pods, "app=web")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    s.kubectl(&["rollout", "restart", "deployment/web"])
        .await
        .expect_ok("restart");
    rollout_status(s, "web").await;
    wait_pods(&pods, "app=web", "all pods replaced", |p| {
        p.len() == 4 && p.iter().all(|p| !before.contains(&p.name_any()))
    })
    .await;
    let d = deps.get("web").await.unwrap();
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_old_pods_before_new_ones() {
    let c = cluster().await;
    let s = &c.s;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    apply(s, &manifest("db", 3, "busybox:1", "Recreate")).await;
    rollout_status(s, "db").await;
    s.kubectl(&["set", "image", "deployment/db", "app=busybox:2"])
        .await
        .expect_ok("set image");
    // Watch every pod state on the way: old and new pods must never be live together.
    let mut mixed = false;
    within("recreate", async {
        loop {
            let live = live_pods(&pods, "app=db").await;
            let imgs = images(&live);
            if imgs.contains(&"busybox:1".to_string()) && imgs.contains(&"busybox:2".to_string()) {
                mixed = true;
            }
            if live.len() == 3 && imgs.iter().all(|i| i == "busybox:2") {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(!mixed, "Recreate ran old and new pods together");
    rollout_status(s, "db").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_mid_rollout_is_proportional() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _rs = start(&s, kube_controller_manager::replicaset::run).await;
    let _d = start(&s, kube_controller_manager::deployment::run).await;
    let kubelet = kubelet(client.clone(), "default");
    let c = Cluster0 { client };
    apply(&s, &manifest("api", 10, "busybox:1", "RollingUpdate")).await;
    rollout_status(&s, "api").await;
    // With the kubelet gone the new pods never become ready, so the rollout stalls with
    // both replica sets active.
    kubelet.kill().await;
    s.kubectl(&["set", "image", "deployment/api", "app=busybox:2"])
        .await
        .expect_ok("set image");
    within("two active RSes", async {
        loop {
            let rss = owned_rss(&c.client, "api").await;
            if rss
                .iter()
                .filter(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
                .count()
                == 2
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    s.kubectl(&["scale", "deployment/api", "--replicas=20"])
        .await
        .expect_ok("scale");
    let rss = within("proportional", async {
        loop {
            let rss = owned_rss(&c.client, "api").await;
            let total: i32 = rss
                .iter()
                .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
                .sum();
            if total >= 20
                && rss.iter().all(|r| {
                    r.annotations()
                        .get("deployment.kubernetes.io/desired-replicas")
                        .map(String::as_str)
                        == Some("20")
                })
            {
                return rss;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let sizes: Vec<i32> = rss
        .iter()
        .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        .collect();
    assert!(sizes.iter().all(|n| *n > 1), "both RSes grew: {sizes:?}");
    let total: i32 = sizes.iter().sum();
    assert!(total <= 21, "within replicas + maxSurge: {sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_exceeded_when_pods_never_become_ready() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _rs = start(&s, kube_controller_manager::replicaset::run).await;
    let _d = start(&s, kube_controller_manager::deployment::run).await;
    // No kubelet: nothing ever becomes ready.
    let mut m: serde_json::Value =
        serde_json::from_str(&manifest("stuck", 1, "busybox:1", "RollingUpdate")).unwrap();
    m["spec"]["progressDeadlineSeconds"] = json!(2);
    apply(&s, &m.to_string()).await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    wait_for(&deps, "stuck", "ProgressDeadlineExceeded", |d| {
        d.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "Progressing"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            })
    })
    .await;
    let out = s
        .kubectl(&["rollout", "status", "deployment/stuck", "--timeout=30s"])
        .await;
    assert!(
        !out.ok && out.stderr.contains("exceeded its progress deadline"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_rollout_then_restarted_converges() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _kubelet = kubelet(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs1 = start(&s, kube_controller_manager::replicaset::run).await;
    let d1 = start(&s, kube_controller_manager::deployment::run).await;
    apply(&s, &manifest("web", 6, "busybox:1", "RollingUpdate")).await;
    rollout_status(&s, "web").await;
    s.kubectl(&["set", "image", "deployment/web", "app=busybox:2"])
        .await
        .expect_ok("set image");
    wait_pods(&pods, "app=web", "rollout under way", |p| {
        images(p).contains(&"busybox:2".to_string())
    })
    .await;
    d1.kill().await;
    rs1.kill().await;

    let _rs2 = start(&s, kube_controller_manager::replicaset::run).await;
    let _d2 = start(&s, kube_controller_manager::deployment::run).await;
    rollout_status(&s, "web").await;
    let live = wait_pods(&pods, "app=web", "6 pods on v2", |p| {
        p.len() == 6 && images(p).iter().all(|i| i == "busybox:2")
    })
    .await;
    assert_eq!(live.len(), 6, "no duplicate or lost pods");
    let rss = owned_rss(&client, "web").await;
    assert_eq!(rss.len(), 2);
}
