//! DefaultPreemption: a high-priority pod that fits nowhere evicts lower-priority pods,
//! marks them with DisruptionTarget, is nominated to the node and lands there; a PDB steers
//! the choice of node; pods with preemptionPolicy Never wait.

use crate::support::*;
use ferrokube_testkit::TestServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

async fn priority_class(client: &kube::Client, name: &str, value: i32, policy: &str) {
    let pc: PriorityClass = serde_json::from_value(
        json!({"metadata": {"name": name}, "value": value, "preemptionPolicy": policy}),
    )
    .expect("pc");
    Api::<PriorityClass>::all(client.clone())
        .create(&PostParams::default(), &pc)
        .await
        .expect("priority class");
}

/// A pod of this PriorityClass (none: priority 0); the apiserver's Priority admission fills
/// in `priority` and `preemptionPolicy` from the class.
fn with_class(name: &str, cpu: &str, class: Option<&str>, extra: serde_json::Value) -> Pod {
    let mut p = pod(name, cpu, extra);
    if let (Some(spec), Some(class)) = (p.spec.as_mut(), class) {
        spec.priority_class_name = Some(class.to_string());
    }
    p
}

/// Waits until the pod is being deleted, returns the reason of its DisruptionTarget
/// condition, then finishes the deletion as the kubelet would.
async fn evicted_reason(client: &kube::Client, name: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher::watcher(
        api.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .boxed();
    let pod = within(&format!("{name} to be preempted"), async {
        while let Some(Ok(ev)) = stream.next().await {
            if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = ev {
                if p.metadata.deletion_timestamp.is_some() {
                    return p;
                }
            }
        }
        panic!("watch ended");
    })
    .await;
    api.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .expect("finish deletion");
    pod.status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "DisruptionTarget"))
        .and_then(|c| c.reason)
}

/// Waits until the pod is nominated and returns the node.
async fn nominated(client: &kube::Client, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty())
    };
    let pod = within(
        &format!("{name} to be nominated"),
        kube::runtime::wait::await_condition(api, name, move |p: Option<&Pod>| node(p).is_some()),
    )
    .await
    .expect("watch");
    node(pod.as_ref()).unwrap_or_default()
}

#[tokio::test]
async fn preempts_lower_priority_pods() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    priority_class(&client, "high", 1000, "PreemptLowerPriority").await;
    create_nodes(&client, vec![node("n1", "2", "8Gi", json!({}))]).await;
    create_pod(
        &client,
        "default",
        with_class("low", "1500m", None, json!({})),
    )
    .await;
    assert_eq!(bound_node(&client, "default", "low").await, "n1");

    create_pod(
        &client,
        "default",
        with_class("vip", "1", Some("high"), json!({})),
    )
    .await;
    assert_eq!(nominated(&client, "vip").await, "n1");
    assert_eq!(
        evicted_reason(&client, "low").await.as_deref(),
        Some("PreemptionByScheduler")
    );
    assert_eq!(bound_node(&client, "default", "vip").await, "n1");
    let note = wait_event(&client, "default", "low", "Preempted").await;
    assert!(
        note.starts_with("Preempted by pod ") && note.ends_with(" on node n1"),
        "{note}"
    );
}

#[tokio::test]
async fn never_preempting_pods_wait_and_say_why() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    priority_class(&client, "polite", 1000, "Never").await;
    create_nodes(&client, vec![node("n1", "2", "8Gi", json!({}))]).await;
    create_pod(
        &client,
        "default",
        with_class("low", "1500m", None, json!({})),
    )
    .await;
    assert_eq!(bound_node(&client, "default", "low").await, "n1");
    create_pod(
        &client,
        "default",
        with_class("polite", "1", Some("polite"), json!({})),
    )
    .await;
    let message = unschedulable_message(&client, "default", "polite").await;
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    // An equal-priority pod cannot preempt either.
    create_pod(&client, "default", with_class("peer", "1", None, json!({}))).await;
    let message = unschedulable_message(&client, "default", "peer").await;
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
}

#[tokio::test]
async fn a_pod_disruption_budget_steers_preemption() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    priority_class(&client, "high", 1000, "PreemptLowerPriority").await;
    create_nodes(
        &client,
        vec![
            node("n1", "2", "8Gi", json!({})),
            node("n2", "2", "8Gi", json!({})),
        ],
    )
    .await;
    create_pod(
        &client,
        "default",
        with_class(
            "guarded",
            "1500m",
            None,
            json!({"metadata": {"labels": {"app": "guarded"}}, "spec": {"nodeName": "n1"}}),
        ),
    )
    .await;
    create_pod(
        &client,
        "default",
        with_class("free", "1500m", None, json!({"spec": {"nodeName": "n2"}})),
    )
    .await;
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}
    }))
    .expect("pdb");
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), "default");
    let created = pdbs
        .create(&PostParams::default(), &pdb)
        .await
        .expect("pdb");
    // Status as the disruption controller would write it: no disruption allowed.
    let mut with_status = created;
    with_status.status = Some(serde_json::from_value(json!({
        "currentHealthy": 1, "desiredHealthy": 1, "disruptionsAllowed": 0, "expectedPods": 1, "observedGeneration": 1
    })).expect("status"));
    pdbs.replace_status("guard", &PostParams::default(), &with_status)
        .await
        .expect("pdb status");

    create_pod(
        &client,
        "default",
        with_class("vip", "1", Some("high"), json!({})),
    )
    .await;
    assert_eq!(nominated(&client, "vip").await, "n2");
    assert!(evicted_reason(&client, "free").await.is_some());
    assert_eq!(bound_node(&client, "default", "vip").await, "n2");
    let guarded = Api::<Pod>::namespaced(client.clone(), "default")
        .get("guarded")
        .await;
    assert!(guarded.is_ok(), "the pod protected by the budget stays");
}
