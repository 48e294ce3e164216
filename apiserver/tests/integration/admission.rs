//! Admission on pod create: the Priority plugin fills in priority and preemptionPolicy from
//! the PriorityClass and refuses pods that contradict it or name a class that is missing.

use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

fn pod(name: &str, spec_extra: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn refused(api: &Api<Pod>, p: Pod) -> (u16, String) {
    match api.create(&PostParams::default(), &p).await {
        Err(kube::Error::Api(e)) => (e.code, e.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn priority_comes_from_the_priority_class() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let gold: PriorityClass = serde_json::from_value(
        json!({"metadata": {"name": "gold"}, "value": 500, "preemptionPolicy": "Never"}),
    )
    .unwrap();
    classes.create(&PostParams::default(), &gold).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let p = pods
        .create(
            &PostParams::default(),
            &pod("gold", json!({"priorityClassName": "gold"})),
        )
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.priority, Some(500));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));

    let p = pods
        .create(&PostParams::default(), &pod("plain", json!({})))
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.priority, Some(0));
    assert_eq!(
        spec.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );

    let (code, message) =
        refused(&pods, pod("lost", json!({"priorityClassName": "missing"}))).await;
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "pods \"lost\" is forbidden: no PriorityClass with name missing was found"
    );
    let (code, message) = refused(
        &pods,
        pod("liar", json!({"priorityClassName": "gold", "priority": 7})),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "pods \"liar\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 500 from the given PriorityClass name"
    );
    let (_, message) = refused(
        &pods,
        pod(
            "bold",
            json!({"priorityClassName": "gold", "preemptionPolicy": "PreemptLowerPriority"}),
        ),
    )
    .await;
    assert!(message.contains("the string value of PreemptionPolicy (PreemptLowerPriority) must not be provided in pod spec; priority admission controller computed Never"), "{message}");

    // The system classes are for kube-system only.
    let (code, message) = refused(
        &pods,
        pod("sys", json!({"priorityClassName": "system-node-critical"})),
    )
    .await;
    assert_eq!(code, 403);
    assert!(
        message.ends_with(
            "pods with system-node-critical priorityClass is not permitted in default namespace"
        ),
        "{message}"
    );
    let system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let p = system
        .create(
            &PostParams::default(),
            &pod("sys", json!({"priorityClassName": "system-node-critical"})),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.unwrap().priority, Some(2_000_001_000));
}

#[tokio::test]
async fn a_global_default_class_applies_to_pods_without_one() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let default: PriorityClass = serde_json::from_value(
        json!({"metadata": {"name": "everyone"}, "value": 42, "globalDefault": true}),
    )
    .unwrap();
    classes
        .create(&PostParams::default(), &default)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pods
        .create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.priority_class_name.as_deref(), Some("everyone"));
    assert_eq!(spec.priority, Some(42));
}
