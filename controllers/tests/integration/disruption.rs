//! The disruption controller against a real apiserver: PDB status follows the pods, and the
//! eviction subresource spends what the controller computed. The test plays the kubelet by
//! writing pod readiness.

use std::sync::Arc;
use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, PostParams};
use kube::runtime::wait::await_condition;
use kube_controller_manager::context::{Context, Settings};
use serde_json::json;

const HANG_GUARD: Duration = Duration::from_secs(60);

/// A client that hands 429s back instead of retrying them, as these tests look for them.
async fn no_retry_client(s: &TestServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&s.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

async fn start() -> (TestServer, kube::Client) {
    let s = TestServer::start().await;
    let ctx = Context::new(s.client().await, Settings::default());
    let client = no_retry_client(&s).await;
    tokio::spawn(kube_controller_manager::disruption::run(Arc::clone(&ctx)));
    (s, client)
}

async fn make_pod(api: &Api<Pod>, name: &str, app: &str, owner: Option<serde_json::Value>) {
    let mut meta = json!({"name": name, "labels": {"app": app}});
    if let Some(o) = owner {
        meta["ownerReferences"] = json!([o]);
    }
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    set_ready(api, name, true).await;
}

/// Writes the pod status a kubelet would report.
async fn set_ready(api: &Api<Pod>, name: &str, ready: bool) {
    let mut p = api.get(name).await.unwrap();
    p.status = Some(
        serde_json::from_value(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        }))
        .unwrap(),
    );
    api.replace_status(name, &PostParams::default(), &p)
        .await
        .unwrap();
}

fn pdb(name: &str, app: &str, spec: serde_json::Value) -> PodDisruptionBudget {
    let mut s = json!({"selector": {"matchLabels": {"app": app}}});
    if let (Some(m), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        m.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": s,
    }))
    .unwrap()
}

/// Waits until the budget's status shows (expected, healthy, desired, allowed).
async fn wait_status(
    api: &Api<PodDisruptionBudget>,
    name: &str,
    want: (i32, i32, i32, i32),
) -> PodDisruptionBudget {
    let cond = move |o: Option<&PodDisruptionBudget>| {
        o.and_then(|p| {
            let s = p.status.as_ref()?;
            let gen_seen = s.observed_generation == p.metadata.generation;
            Some(
                gen_seen
                    && (
                        s.expected_pods,
                        s.current_healthy,
                        s.desired_healthy,
                        s.disruptions_allowed,
                    ) == want,
            )
        })
        .unwrap_or(false)
    };
    let got = tokio::time::timeout(HANG_GUARD, await_condition(api.clone(), name, cond)).await;
    match got {
        Ok(Ok(Some(p))) => p,
        _ => panic!(
            "budget {name} never reached {want:?}; last status {:?}",
            api.get(name).await.ok().and_then(|p| p.status)
        ),
    }
}

fn allowed_condition(p: &PodDisruptionBudget) -> (String, String) {
    let c = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionAllowed"))
        .expect("DisruptionAllowed condition");
    (c.status.clone(), c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_status_follows_pods_and_gates_evictions() {
    let (_s, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    for n in ["web-1", "web-2", "web-3"] {
        make_pod(&pods, n, "web", None).await;
    }
    pdbs.create(
        &PostParams::default(),
        &pdb("web", "web", json!({"minAvailable": 2})),
    )
    .await
    .unwrap();
    let p = wait_status(&pdbs, "web", (3, 3, 2, 1)).await;
    assert_eq!(
        allowed_condition(&p),
        ("True".into(), "SufficientPods".into())
    );

    // A pod turning unready takes the allowance away.
    set_ready(&pods, "web-3", false).await;
    let p = wait_status(&pdbs, "web", (3, 2, 2, 0)).await;
    assert_eq!(
        allowed_condition(&p),
        ("False".into(), "InsufficientPods".into())
    );
    set_ready(&pods, "web-3", true).await;
    wait_status(&pdbs, "web", (3, 3, 2, 1)).await;

    // The eviction spends the one allowed disruption; the controller then recounts.
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    wait_status(&pdbs, "web", (2, 2, 2, 0)).await;
    let refused = pods
        .evict("web-2", &EvictParams::default())
        .await
        .unwrap_err();
    match refused {
        kube::Error::Api(s) => assert_eq!(s.code, 429),
        other => panic!("expected a 429, got {other}"),
    }
    assert!(pods.get_opt("web-2").await.unwrap().is_some());

    // A spec change is observed through observedGeneration.
    let mut changed = pdbs.get("web").await.unwrap();
    changed.spec.as_mut().unwrap().min_available =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1));
    pdbs.replace("web", &PostParams::default(), &changed)
        .await
        .unwrap();
    let p = wait_status(&pdbs, "web", (2, 2, 1, 1)).await;
    assert_eq!(p.status.unwrap().observed_generation, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentages_count_the_controllers_scale() {
    let (_s, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    // A ReplicaSet that wants 4 pods but (no ReplicaSet controller runs here) has only 2.
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "db"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
    let owner = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "db",
        "uid": rs.metadata.uid, "controller": true});
    make_pod(&pods, "db-1", "db", Some(owner.clone())).await;
    make_pod(&pods, "db-2", "db", Some(owner)).await;
    pdbs.create(
        &PostParams::default(),
        &pdb("db", "db", json!({"maxUnavailable": "50%"})),
    )
    .await
    .unwrap();
    // expected 4 (the scale), desired 4 - ceil(50% of 4) = 2, healthy 2: nothing to spare.
    wait_status(&pdbs, "db", (4, 2, 2, 0)).await;

    // A pod without a controller makes a percentage impossible to work out: the budget
    // fails safe with SyncFailed.
    make_pod(&pods, "stray", "stray", None).await;
    make_pod(
        &pods,
        "stray-owned",
        "stray",
        Some(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "gone", "uid": "00000000-0000-0000-0000-000000000000", "controller": true})),
    )
    .await;
    pdbs.create(
        &PostParams::default(),
        &pdb("stray", "stray", json!({"minAvailable": "50%"})),
    )
    .await
    .unwrap();
    let cond = |o: Option<&PodDisruptionBudget>| {
        o.and_then(|p| {
            p.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "DisruptionAllowed")
                .cloned()
        })
        .is_some_and(|c| c.reason == "SyncFailed" && c.status == "False")
    };
    tokio::time::timeout(HANG_GUARD, await_condition(pdbs.clone(), "stray", cond))
        .await
        .expect("SyncFailed condition")
        .unwrap();
}
