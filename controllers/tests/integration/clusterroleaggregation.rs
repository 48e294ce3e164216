//! ClusterRole aggregation against a real apiserver.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use kube_controller_manager::context::{Context, Settings};
use serde_json::json;

const HANG_GUARD: Duration = Duration::from_secs(60);

fn role(v: serde_json::Value) -> ClusterRole {
    serde_json::from_value(v).unwrap()
}

async fn wait_rules(api: &Api<ClusterRole>, name: &str, resources: Vec<&'static str>) {
    let want: Vec<String> = resources.iter().map(|s| s.to_string()).collect();
    let cond = move |o: Option<&ClusterRole>| {
        o.is_some_and(|r| {
            let got: Vec<String> = r
                .rules
                .iter()
                .flatten()
                .flat_map(|rule| rule.resources.clone().unwrap_or_default())
                .collect();
            got == want
        })
    };
    tokio::time::timeout(HANG_GUARD, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("{name} never had {resources:?}: {:?}", ()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_roles_follow_their_sources() {
    let s = TestServer::start().await;
    let client = s.client().await;
    tokio::spawn(kube_controller_manager::clusterroleaggregation::run(
        Context::new(client.clone(), Settings::default()),
    ));
    let api: Api<ClusterRole> = Api::all(client);
    let pp = PostParams::default();
    api.create(&pp, &role(json!({"metadata": {"name": "agg"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"example.com/aggregate": "true"}}]}})))
        .await
        .unwrap();
    api.create(
        &pp,
        &role(
            json!({"metadata": {"name": "b-src", "labels": {"example.com/aggregate": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ),
    )
    .await
    .unwrap();
    api.create(
        &pp,
        &role(
            json!({"metadata": {"name": "a-src", "labels": {"example.com/aggregate": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ),
    )
    .await
    .unwrap();
    api.create(
        &pp,
        &role(json!({"metadata": {"name": "other"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})),
    )
    .await
    .unwrap();
    // In source-name order, the duplicate pods rule once.
    wait_rules(&api, "agg", vec!["configmaps", "pods"]).await;

    // A source losing its label takes its rules out.
    let mut a = api.get("a-src").await.unwrap();
    a.metadata.labels = None;
    api.replace("a-src", &pp, &a).await.unwrap();
    wait_rules(&api, "agg", vec!["pods"]).await;

    // Hand edits to an aggregated role are put back.
    let mut agg = api.get("agg").await.unwrap();
    agg.rules = None;
    api.replace("agg", &pp, &agg).await.unwrap();
    wait_rules(&api, "agg", vec!["pods"]).await;
}
