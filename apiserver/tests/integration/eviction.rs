//! The pods/eviction subresource against PodDisruptionBudgets whose status the test writes by
//! hand (no disruption controller runs here).

use ferrokube_testkit::TestServer;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, PostParams};
use serde_json::{json, Value};

/// A client that hands 429s back instead of retrying them, as these tests look for them.
async fn no_retry_client(s: &TestServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&s.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

fn pod(name: &str, app: &str, phase: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}
        ]},
    }))
    .unwrap()
}

async fn make_pod(api: &Api<Pod>, name: &str, app: &str, phase: &str, ready: bool) {
    let p = pod(name, app, phase, ready);
    let created = api.create(&PostParams::default(), &p).await.unwrap();
    // Creation drops the status; the test plays the kubelet and writes it.
    let mut with_status = p.clone();
    with_status.metadata.resource_version = created.metadata.resource_version;
    api.replace_status(name, &PostParams::default(), &with_status)
        .await
        .unwrap();
}

async fn make_pdb(
    api: &Api<PodDisruptionBudget>,
    name: &str,
    app: &str,
    status: Value,
) -> PodDisruptionBudget {
    make_pdb_with(api, name, app, json!({}), status).await
}

async fn make_pdb_with(
    api: &Api<PodDisruptionBudget>,
    name: &str,
    app: &str,
    extra_spec: Value,
    status: Value,
) -> PodDisruptionBudget {
    let mut spec = json!({"minAvailable": 1, "selector": {"matchLabels": {"app": app}}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &pdb).await.unwrap();
    let mut body: Value = serde_json::to_value(&created).unwrap();
    let generation = created.metadata.generation.unwrap_or(1);
    let mut st = json!({"observedGeneration": generation});
    if let (Some(s), Some(extra)) = (st.as_object_mut(), status.as_object()) {
        s.extend(extra.clone());
    }
    body["status"] = st;
    let body: PodDisruptionBudget = serde_json::from_value(body).unwrap();
    api.replace_status(name, &PostParams::default(), &body)
        .await
        .unwrap()
}

/// POSTs an eviction and returns the HTTP status and the body as JSON.
async fn evict_raw(client: &kube::Client, name: &str, body: Value) -> (u16, Value) {
    let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/eviction"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap().into())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_honours_disruption_budgets() {
    let s = TestServer::start().await;
    let client = no_retry_client(&s).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");

    // No budget: the pod is simply deleted, with a Success status.
    make_pod(&pods, "free", "free", "Running", true).await;
    let (code, body) = evict_raw(&client, "free", eviction("free")).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"], "Success");
    assert!(pods.get_opt("free").await.unwrap().is_none());

    // One disruption allowed: the first eviction spends it, the second is refused.
    make_pod(&pods, "web-1", "web", "Running", true).await;
    make_pod(&pods, "web-2", "web", "Running", true).await;
    make_pdb(
        &pdbs,
        "web",
        "web",
        json!({"disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}),
    )
    .await;
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("web-1").await.unwrap().is_none());
    let after = pdbs.get_status("web").await.unwrap().status.unwrap();
    assert_eq!(after.disruptions_allowed, 0);
    assert!(after.disrupted_pods.unwrap().contains_key("web-1"));
    let cond = after
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionAllowed")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "InsufficientPods")
    );

    let (code, body) = evict_raw(&client, "web-2", eviction("web-2")).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(body["reason"], "TooManyRequests");
    assert_eq!(
        body["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(body["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "The disruption budget web needs 1 healthy pods and has 2 currently"
    );
    let kept = pods.get("web-2").await.unwrap();
    let conditions = kept.status.unwrap().conditions.unwrap_or_default();
    assert!(!conditions.iter().any(|c| c.type_ == "DisruptionTarget"));

    // A pending pod is not guarded: it goes even with no disruptions allowed.
    make_pod(&pods, "web-3", "web", "Pending", false).await;
    let (code, body) = evict_raw(&client, "web-3", eviction("web-3")).await;
    assert_eq!(code, 201, "{body}");
    assert!(pods.get_opt("web-3").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_marks_the_pod_before_deleting_it() {
    let s = TestServer::start().await;
    let client = no_retry_client(&s).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // A finalizer keeps the pod around after deletion, so its last state can be read.
    let mut p = pod("held", "held", "Running", true);
    p.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    p.metadata.resource_version = created.metadata.resource_version;
    pods.replace_status("held", &PostParams::default(), &p)
        .await
        .unwrap();
    // The older policy/v1beta1 body is accepted too.
    let body = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "held"},
        "deleteOptions": {"gracePeriodSeconds": 0}});
    let (code, body) = evict_raw(&client, "held", body).await;
    assert_eq!(code, 201, "{body}");
    let gone = pods.get("held").await.unwrap();
    assert!(gone.metadata.deletion_timestamp.is_some());
    let cond = gone
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(cond.status, "True");
    assert_eq!(cond.reason.as_deref(), Some("EvictionByEvictionAPI"));
    assert_eq!(cond.message.as_deref(), Some("Eviction API: evicting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_refusals() {
    let s = TestServer::start().await;
    let client = no_retry_client(&s).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");

    // Two budgets over one pod: upstream refuses with a 500.
    make_pod(&pods, "twice", "twice", "Running", true).await;
    let allowing = json!({"disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 0, "expectedPods": 1});
    make_pdb(&pdbs, "twice-a", "twice", allowing.clone()).await;
    make_pdb(&pdbs, "twice-b", "twice", allowing.clone()).await;
    let (code, body) = evict_raw(&client, "twice", eviction("twice")).await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );

    // A budget the controller has not yet seen (observedGeneration behind) refuses with 429.
    make_pod(&pods, "stale", "stale", "Running", true).await;
    let pdb = make_pdb(&pdbs, "stale", "stale", allowing.clone()).await;
    let mut bumped = pdb.clone();
    bumped.spec.as_mut().unwrap().min_available =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0));
    pdbs.replace("stale", &PostParams::default(), &bumped)
        .await
        .unwrap();
    let (code, body) = evict_raw(&client, "stale", eviction("stale")).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "The disruption budget stale is still being processed by the server."
    );
    assert!(pods.get_opt("stale").await.unwrap().is_some());

    // Unready pods: IfHealthyBudget lets one go only while the budget is met; AlwaysAllow always.
    make_pod(&pods, "sick", "sick", "Running", false).await;
    make_pdb(
        &pdbs,
        "sick",
        "sick",
        json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 1, "expectedPods": 1}),
    )
    .await;
    let (code, body) = evict_raw(&client, "sick", eviction("sick")).await;
    assert_eq!(code, 429, "{body}");
    make_pod(&pods, "sick2", "sick2", "Running", false).await;
    make_pdb_with(
        &pdbs,
        "sick2",
        "sick2",
        json!({"unhealthyPodEvictionPolicy": "AlwaysAllow"}),
        json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 1, "expectedPods": 1}),
    )
    .await;
    let (code, body) = evict_raw(&client, "sick2", eviction("sick2")).await;
    assert_eq!(code, 201, "{body}");
    assert!(pods.get_opt("sick2").await.unwrap().is_none());
    // The unhealthy pod's eviction spent nothing.
    assert_eq!(
        pdbs.get_status("sick2")
            .await
            .unwrap()
            .status
            .unwrap()
            .disruptions_allowed,
        0
    );

    // A name in the body that differs from the URL is a bad request.
    let (code, _) = evict_raw(&client, "sick", eviction("other")).await;
    assert_eq!(code, 400);
    // A missing pod is a 404.
    let (code, _) = evict_raw(&client, "nope", eviction("nope")).await;
    assert_eq!(code, 404);
}
