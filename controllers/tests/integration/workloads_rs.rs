//! The ReplicaSet and ReplicationController controllers against a real apiserver, with the
//! test playing the kubelet.

use crate::workload_support;

use std::collections::BTreeSet;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, ReplicationController};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use workload_support::*;

fn rs(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}
            }
        }
    }))
    .unwrap()
}

fn owned_by<'a>(pods: &'a [Pod], uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}

async fn scale(rss: &Api<ReplicaSet>, name: &str, n: i32) {
    rss.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": n}})),
    )
    .await
    .expect("scale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_creates_reports_status_and_deletes_least_valuable_first() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _rsc = start(&s, kube_controller_manager::replicaset::run).await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let created = rss
        .create(&PostParams::default(), &rs("web", 3))
        .await
        .unwrap();
    let uid = created.uid().unwrap();
    let made = wait_pods(&pods, "app=web", "3 pods", |p| p.len() == 3).await;
    assert_eq!(
        owned_by(&made, &uid).len(),
        3,
        "every pod carries the controller reference"
    );
    for p in &made {
        assert!(p.name_any().starts_with("web-"));
        assert_eq!(p.labels().get("tier").map(String::as_str), Some("web"));
    }
    wait_for(&rss, "web", "status.replicas 3", |r| {
        let st = r.status.clone().unwrap_or_default();
        st.replicas == 3
            && st.fully_labeled_replicas == Some(3)
            && st.observed_generation == Some(1)
    })
    .await;

    // Two pods start; the third never does, so it is the one a scale-down removes.
    let names: Vec<String> = made.iter().map(|p| p.name_any()).collect();
    make_ready(&pods, &names[0]).await;
    make_ready(&pods, &names[1]).await;
    wait_for(&rss, "web", "2 ready and available", |r| {
        let st = r.status.clone().unwrap_or_default();
        st.ready_replicas == Some(2) && st.available_replicas == Some(2)
    })
    .await;

    scale(&rss, "web", 2).await;
    let left = wait_pods(&pods, "app=web", "scale down to 2", |p| p.len() == 2).await;
    let left: BTreeSet<String> = left.iter().map(|p| p.name_any()).collect();
    assert_eq!(
        left,
        names[..2].iter().cloned().collect::<BTreeSet<_>>(),
        "the unready pod goes first"
    );
    wait_for(&rss, "web", "status after scale-down", |r| {
        let st = r.status.clone().unwrap_or_default();
        st.replicas == 2 && st.observed_generation == Some(2) && st.ready_replicas == Some(2)
    })
    .await;

    // A pod deleted behind the controller's back is replaced.
    pods.delete(&names[0], &DeleteParams::default())
        .await
        .unwrap();
    wait_pods(&pods, "app=web", "replacement", |p| {
        p.len() == 2 && !p.iter().any(|p| p.name_any() == names[0])
    })
    .await;

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons = within("events", async {
        loop {
            let evs = events.list(&ListParams::default()).await.unwrap().items;
            let reasons: BTreeSet<String> = evs
                .iter()
                .filter(|e| e.reporting_controller.as_deref() == Some("replicaset-controller"))
                .filter_map(|e| e.reason.clone())
                .collect();
            if reasons.contains("SuccessfulCreate") && reasons.contains("SuccessfulDelete") {
                return reasons;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(reasons.contains("SuccessfulCreate"));
    let describe = s
        .kubectl(&["describe", "rs", "web"])
        .await
        .expect_ok("describe rs");
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adopts_orphans_and_releases_pods_that_stop_matching() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _rsc = start(&s, kube_controller_manager::replicaset::run).await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let uid = rss
        .create(&PostParams::default(), &rs("web", 2))
        .await
        .unwrap()
        .uid()
        .unwrap();

    let all = wait_pods(&pods, "app=web", "adoption plus one new pod", |p| {
        p.len() == 2 && owned_by(p, &uid).len() == 2
    })
    .await;
    assert!(
        all.iter().any(|p| p.name_any() == "stray"),
        "the orphan was adopted, not replaced"
    );

    // Relabelled out of the selector: released (reference dropped) and replaced.
    pods.patch(
        "stray",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "elsewhere"}}})),
    )
    .await
    .unwrap();
    wait_pods(&pods, "app=web", "replacement for the released pod", |p| {
        p.len() == 2 && owned_by(p, &uid).len() == 2
    })
    .await;
    let stray = within("release", async {
        loop {
            let p = pods.get("stray").await.unwrap();
            if p.owner_references().is_empty() {
                return p;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        stray.labels().get("app").map(String::as_str),
        Some("elsewhere")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_failure_condition_when_pods_cannot_be_created() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _rsc = start(&s, kube_controller_manager::replicaset::run).await;
    create_namespace(&client, "doomed").await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "doomed");
    rss.create(&PostParams::default(), &rs("web", 0))
        .await
        .unwrap();
    wait_for(&rss, "web", "first sync", |r| {
        r.status.as_ref().and_then(|s| s.observed_generation) == Some(1)
    })
    .await;
    // A terminating namespace refuses new pods, as an exhausted quota would.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    scale(&rss, "web", 2).await;
    wait_for(&rss, "web", "ReplicaFailure", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "ReplicaFailure"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("FailedCreate")
                })
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_scale_up_then_restarted_ends_with_exactly_the_wanted_pods() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first = start(&s, kube_controller_manager::replicaset::run).await;
    let uid = rss
        .create(&PostParams::default(), &rs("web", 20))
        .await
        .unwrap()
        .uid()
        .unwrap();
    wait_pods(&pods, "app=web", "some pods", |p| !p.is_empty()).await;
    first.kill().await;

    let _second = start(&s, kube_controller_manager::replicaset::run).await;
    wait_for(&rss, "web", "20 replicas", |r| {
        r.status.as_ref().is_some_and(|s| s.replicas == 20)
    })
    .await;
    // Scaling once more forces a sync that must count the pods made before the kill.
    scale(&rss, "web", 21).await;
    wait_for(&rss, "web", "21 replicas", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.replicas == 21 && s.observed_generation == Some(2))
    })
    .await;
    let all = live_pods(&pods, "app=web").await;
    assert_eq!(all.len(), 21, "no duplicate or lost pods");
    assert_eq!(owned_by(&all, &uid).len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_keeps_its_replicas() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _rc = start(&s, kube_controller_manager::replication::run).await;
    let _kubelet = kubelet(client.clone(), "default");
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 2,
            "selector": {"app": "legacy"},
            "template": {
                "metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}
            }
        }
    }))
    .unwrap();
    let uid = rcs
        .create(&PostParams::default(), &rc)
        .await
        .unwrap()
        .uid()
        .unwrap();
    wait_for(&rcs, "legacy", "2 ready", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.replicas == 2 && s.ready_replicas == Some(2) && s.available_replicas == Some(2)
        })
    })
    .await;
    let all = live_pods(&pods, "app=legacy").await;
    assert_eq!(owned_by(&all, &uid).len(), 2);
    assert!(all
        .iter()
        .all(|p| p.owner_references()[0].kind == "ReplicationController"));
    s.kubectl(&["scale", "rc", "legacy", "--replicas=1"])
        .await
        .expect_ok("scale rc");
    wait_pods(&pods, "app=legacy", "scale down", |p| p.len() == 1).await;
}
