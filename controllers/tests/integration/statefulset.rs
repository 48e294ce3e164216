//! The StatefulSet controller against a real apiserver, with the test playing the kubelet.

use crate::workload_support;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use workload_support::*;

fn set(name: &str, replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "busybox:1"}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            spec.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).expect("statefulset")
}

fn names(pods: &[Pod]) -> Vec<String> {
    let mut n: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_scale_up_and_down_with_stable_identity_and_claims() {
    let s = TestServer::start().await;
    let client = s.client().await;
    create_namespace(&client, "sts").await;
    let _ctrl = start(&s, kube_controller_manager::statefulset::run).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "sts");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sts");
    sets.create(&PostParams::default(), &set("web", 3, json!({})))
        .await
        .expect("create");

    // OrderedReady: web-0 alone until it is Running and Ready.
    let first = wait_pods(&pods, "app=web", "web-0", |p| !p.is_empty()).await;
    assert_eq!(names(&first), ["web-0"]);
    for (i, next) in [(0, "web-1"), (1, "web-2")] {
        let now = live_pods(&pods, "app=web").await;
        assert_eq!(
            now.len(),
            i + 1,
            "only {} pod(s) before web-{i} is ready",
            i + 1
        );
        make_ready(&pods, &format!("web-{i}")).await;
        wait_pods(&pods, "app=web", next, |p| {
            p.iter().any(|p| p.name_any() == next)
        })
        .await;
    }
    make_ready(&pods, "web-2").await;
    wait_for(&sets, "web", "3 ready replicas", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.ready_replicas == Some(3) && st.replicas == 3)
    })
    .await;

    // Stable identity: hostname, subdomain, labels, claims.
    for i in 0..3 {
        let p = pods.get(&format!("web-{i}")).await.expect("pod");
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some(format!("web-{i}").as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let labels = p.labels();
        assert_eq!(
            labels.get("statefulset.kubernetes.io/pod-name"),
            Some(&format!("web-{i}"))
        );
        assert_eq!(
            labels.get("apps.kubernetes.io/pod-index"),
            Some(&i.to_string())
        );
        assert!(labels
            .get("controller-revision-hash")
            .is_some_and(|h| h.starts_with("web-")));
        let claim = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "www")
            .and_then(|v| v.persistent_volume_claim)
            .map(|c| c.claim_name);
        assert_eq!(claim, Some(format!("www-web-{i}")));
        assert_eq!(p.owner_references()[0].kind, "StatefulSet");
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "sts");
    let mut claim_names: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .expect("claims")
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    claim_names.sort();
    assert_eq!(claim_names, ["www-web-0", "www-web-1", "www-web-2"]);
    let revs: Api<ControllerRevision> = Api::namespaced(client.clone(), "sts");
    assert_eq!(
        revs.list(&ListParams::default())
            .await
            .expect("revisions")
            .items
            .len(),
        1
    );

    // Scale down: highest ordinals go, claims stay (Retain).
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale");
    let left = wait_pods(&pods, "app=web", "scale down to web-0", |p| p.len() == 1).await;
    assert_eq!(names(&left), ["web-0"]);
    wait_for(&sets, "web", "1 replica", |s| {
        s.status.as_ref().is_some_and(|st| st.replicas == 1)
    })
    .await;
    assert_eq!(
        claims
            .list(&ListParams::default())
            .await
            .expect("claims")
            .items
            .len(),
        3
    );

    // Scale up again: the same names and claims come back.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .expect("scale");
    let back = wait_pods(&pods, "app=web", "web-1 again", |p| p.len() == 2).await;
    assert_eq!(names(&back), ["web-0", "web-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_rolling_update_and_rollback() {
    let s = TestServer::start().await;
    let client = s.client().await;
    create_namespace(&client, "roll").await;
    let _ctrl = start(&s, kube_controller_manager::statefulset::run).await;
    let _kubelet = kubelet(client.clone(), "roll");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "roll");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "roll");
    let extra =
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}});
    sets.create(&PostParams::default(), &set("db", 3, extra))
        .await
        .expect("create");
    wait_for(&sets, "db", "3 ready", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.ready_replicas == Some(3))
    })
    .await;
    let old_rev = sets
        .get("db")
        .await
        .expect("get")
        .status
        .and_then(|s| s.update_revision)
        .expect("rev");

    let image = |img: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": img}]}}}});
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Strategic(image("busybox:2")),
    )
    .await
    .expect("update");
    // Only ordinals at or above the partition move to the new revision.
    wait_for(&sets, "db", "db-2 updated", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.updated_replicas == Some(1)
                && st.ready_replicas == Some(3)
                && st.update_revision.as_deref() != Some(old_rev.as_str())
        })
    })
    .await;
    let st = sets.get("db").await.expect("get").status.expect("status");
    let new_rev = st.update_revision.clone().expect("update revision");
    assert_eq!(st.current_revision.as_deref(), Some(old_rev.as_str()));
    let rev_of = |p: &Pod| p.labels().get("controller-revision-hash").cloned();
    assert_eq!(
        rev_of(&pods.get("db-2").await.expect("db-2")),
        Some(new_rev.clone())
    );
    assert_eq!(
        rev_of(&pods.get("db-0").await.expect("db-0")),
        Some(old_rev.clone())
    );

    // Partition 0 finishes the rollout; the current revision follows.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .expect("partition");
    wait_for(&sets, "db", "rollout complete", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.current_revision.as_deref() == Some(new_rev.as_str())
                && st.updated_replicas == Some(3)
                && st.ready_replicas == Some(3)
        })
    })
    .await;
    for p in live_pods(&pods, "app=db").await {
        assert_eq!(rev_of(&p), Some(new_rev.clone()));
    }

    // Rollback: the old template's revision is reused, renumbered as the newest.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Strategic(image("busybox:1")),
    )
    .await
    .expect("rollback");
    wait_for(&sets, "db", "rolled back", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.current_revision.as_deref() == Some(old_rev.as_str())
                && st.updated_replicas == Some(3)
                && st.ready_replicas == Some(3)
        })
    })
    .await;
    let revs: Api<ControllerRevision> = Api::namespaced(client.clone(), "roll");
    let list = revs
        .list(&ListParams::default())
        .await
        .expect("revisions")
        .items;
    assert_eq!(list.len(), 2);
    let old = list
        .iter()
        .find(|r| r.name_any() == old_rev)
        .expect("old revision");
    assert_eq!(old.revision, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_with_start_ordinal_and_on_delete() {
    let s = TestServer::start().await;
    let client = s.client().await;
    create_namespace(&client, "par").await;
    let _ctrl = start(&s, kube_controller_manager::statefulset::run).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "par");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "par");
    let extra = json!({
        "podManagementPolicy": "Parallel",
        "ordinals": {"start": 5},
        "updateStrategy": {"type": "OnDelete"},
    });
    sets.create(&PostParams::default(), &set("p", 3, extra))
        .await
        .expect("create");
    // Parallel: all three appear without any of them being ready.
    let all = wait_pods(&pods, "app=p", "three pods", |p| p.len() == 3).await;
    assert_eq!(names(&all), ["p-5", "p-6", "p-7"]);
    // The template change must come after the controller recorded the first revision as
    // current; a set whose status names no current revision takes the update revision as it.
    wait_for(&sets, "p", "first revision recorded", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.current_revision.is_some())
    })
    .await;

    // OnDelete: a template change leaves pods alone until one is deleted by hand.
    let _kubelet = kubelet(client.clone(), "par");
    sets.patch(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})),
    )
    .await
    .expect("update");
    wait_for(&sets, "p", "new update revision", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.update_revision != st.current_revision && st.ready_replicas == Some(3)
        })
    })
    .await;
    let update_rev = sets
        .get("p")
        .await
        .expect("get")
        .status
        .and_then(|s| s.update_revision)
        .expect("rev");
    assert!(live_pods(&pods, "app=p")
        .await
        .iter()
        .all(|p| p.labels().get("controller-revision-hash") != Some(&update_rev)));
    let uid = pods.get("p-6").await.expect("p-6").uid();
    pods.delete("p-6", &Default::default())
        .await
        .expect("delete");
    let now = wait_pods(&pods, "app=p", "p-6 recreated", |p| {
        p.iter().any(|p| p.name_any() == "p-6" && p.uid() != uid)
    })
    .await;
    let p6 = now.iter().find(|p| p.name_any() == "p-6").expect("p-6");
    assert_eq!(
        p6.labels().get("controller-revision-hash"),
        Some(&update_rev)
    );
}
