//! The DaemonSet controller against a real apiserver: the test makes Node objects (there is
//! no kubelet) and plays the kubelet for pod status.

use crate::workload_support;

use ferrokube_testkit::TestServer;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;
use workload_support::*;

async fn node(nodes: &Api<Node>, name: &str, labels: serde_json::Value, spec: serde_json::Value) {
    let n: Node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
            .expect("node");
    nodes
        .create(&PostParams::default(), &n)
        .await
        .expect("create node");
}

fn daemonset(
    name: &str,
    extra_pod_spec: serde_json::Value,
    strategy: serde_json::Value,
) -> DaemonSet {
    let mut pod_spec = json!({"containers": [{"name": "app", "image": "busybox:1"}]});
    if let (Some(p), Some(e)) = (pod_spec.as_object_mut(), extra_pod_spec.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"ds": name}},
            "template": {"metadata": {"labels": {"ds": name}}, "spec": pod_spec},
            "updateStrategy": strategy,
        }
    }))
    .expect("daemonset")
}

fn target(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .and_then(|s| s.node_selector_terms.first())
        .and_then(|t| t.match_fields.as_ref())
        .and_then(|f| f.first())
        .and_then(|r| r.values.as_ref())
        .and_then(|v| v.first().cloned())
        .unwrap_or_default()
}

fn targets(pods: &[Pod]) -> Vec<String> {
    let mut t: Vec<String> = pods.iter().map(target).collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node() {
    let s = TestServer::start().await;
    let client = s.client().await;
    create_namespace(&client, "ds").await;
    let nodes: Api<Node> = Api::all(client.clone());
    node(&nodes, "plain", json!({"role": "worker"}), json!({})).await;
    node(
        &nodes,
        "cordoned",
        json!({"role": "worker"}),
        json!({"unschedulable": true, "taints": [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}),
    )
    .await;
    node(
        &nodes,
        "gpu",
        json!({"role": "worker"}),
        json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}),
    )
    .await;
    node(&nodes, "control", json!({"role": "control"}), json!({})).await;
    let _ctrl = start(&s, kube_controller_manager::daemonset::run).await;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "ds");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ds");
    sets.create(
        &PostParams::default(),
        &daemonset(
            "agent",
            json!({"nodeSelector": {"role": "worker"}}),
            json!({}),
        ),
    )
    .await
    .expect("create");

    // The cordoned node is covered by the automatic toleration; the gpu taint is not tolerated
    // and the control node fails the nodeSelector.
    let got = wait_pods(&pods, "ds=agent", "two daemon pods", |p| p.len() == 2).await;
    assert_eq!(targets(&got), ["cordoned", "plain"]);
    let p = &got[0];
    let tolerations = p
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(
            tolerations.iter().any(|t| t.key.as_deref() == Some(key)),
            "missing toleration {key}"
        );
    }
    assert!(p.labels().contains_key("controller-revision-hash"));
    assert!(p.labels().contains_key("pod-template-generation"));
    assert!(p.metadata.generate_name.as_deref() == Some("agent-"));
    wait_for(&sets, "agent", "status counts", |d| {
        d.status
            .as_ref()
            .is_some_and(|st| st.desired_number_scheduled == 2 && st.current_number_scheduled == 2)
    })
    .await;

    // Tolerating the gpu taint adds that node; a node joining with the right label gets one.
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}}}})),
    )
    .await
    .expect("tolerate");
    node(&nodes, "late", json!({"role": "worker"}), json!({})).await;
    let _kubelet = kubelet(client.clone(), "ds");
    let got = wait_pods(&pods, "ds=agent", "four daemon pods", |p| {
        let t = targets(p);
        t.len() == 4 && t.contains(&"gpu".to_string()) && t.contains(&"late".to_string())
    })
    .await;
    assert_eq!(targets(&got), ["cordoned", "gpu", "late", "plain"]);

    // Relabelling a node off the selector removes its pod.
    nodes
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "other"}}})),
        )
        .await
        .expect("relabel");
    let got = wait_pods(&pods, "ds=agent", "plain's pod gone", |p| {
        !targets(p).contains(&"plain".to_string())
    })
    .await;
    assert_eq!(targets(&got), ["cordoned", "gpu", "late"]);
    wait_for(&sets, "agent", "3 ready", |d| {
        d.status.as_ref().is_some_and(|st| {
            st.desired_number_scheduled == 3
                && st.number_ready == 3
                && st.updated_number_scheduled == Some(3)
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_within_max_unavailable_and_on_delete() {
    let s = TestServer::start().await;
    let client = s.client().await;
    create_namespace(&client, "roll").await;
    let nodes: Api<Node> = Api::all(client.clone());
    for n in ["a", "b", "c"] {
        node(&nodes, n, json!({}), json!({})).await;
    }
    let _ctrl = start(&s, kube_controller_manager::daemonset::run).await;
    let _kubelet = kubelet(client.clone(), "roll");
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "roll");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "roll");
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
    sets.create(
        &PostParams::default(),
        &daemonset("log", json!({}), strategy),
    )
    .await
    .expect("create");
    wait_for(&sets, "log", "3 available", |d| {
        d.status
            .as_ref()
            .is_some_and(|st| st.number_available == Some(3))
    })
    .await;
    let old_hash = live_pods(&pods, "ds=log").await[0].labels()["controller-revision-hash"].clone();

    sets.patch(
        "log",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": "busybox:2"}]}}}})),
    )
    .await
    .expect("update");
    // Level-triggered watch on the pods: never more than one node without an available pod.
    let worst = within("rollout", async {
        let mut events = std::pin::pin!(watcher(
            pods.clone(),
            watcher::Config::default().labels("ds=log")
        )
        .default_backoff()
        .touched_objects());
        let mut worst = 0usize;
        loop {
            let now = live_pods(&pods, "ds=log").await;
            let ready = now
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            worst = worst.max(3usize.saturating_sub(ready));
            let updated = now
                .iter()
                .filter(|p| p.labels()["controller-revision-hash"] != old_hash)
                .count();
            if updated == 3 && ready == 3 && now.len() == 3 {
                return worst;
            }
            let _ = events.next().await;
        }
    })
    .await;
    assert!(
        worst <= 1,
        "{worst} nodes were without an available pod at once"
    );
    let new_hash = live_pods(&pods, "ds=log").await[0].labels()["controller-revision-hash"].clone();
    assert_ne!(new_hash, old_hash);

    // OnDelete: a template change waits for pods to be deleted by hand.
    sets.patch(
        "log",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null},
        "template": {"metadata": {"annotations": {"v": "3"}}}}}),
        ),
    )
    .await
    .expect("on delete");
    wait_for(&sets, "log", "observed", |d| {
        d.status.as_ref().is_some_and(|st| {
            st.observed_generation == d.metadata.generation
                && st.updated_number_scheduled == Some(0)
        })
    })
    .await;
    let victim = live_pods(&pods, "ds=log")
        .await
        .into_iter()
        .find(|p| target(p) == "b")
        .expect("pod on b");
    pods.delete(&victim.name_any(), &Default::default())
        .await
        .expect("delete");
    wait_for(&sets, "log", "one updated", |d| {
        d.status
            .as_ref()
            .is_some_and(|st| st.updated_number_scheduled == Some(1))
    })
    .await;
    let now = live_pods(&pods, "ds=log").await;
    let on_b = now.iter().find(|p| target(p) == "b").expect("new pod on b");
    assert_ne!(on_b.labels()["controller-revision-hash"], new_hash);
}
