//! The serviceaccount controller and the root CA publisher against a real apiserver.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::{rootcacertpublisher, serviceaccount};
use serde_json::json;

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
/// A hang guard only; nothing asserts on how long things take.
const GUARD: Duration = Duration::from_secs(60);

async fn wait_for<K, C>(api: Api<K>, name: &str, cond: C) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    C: kube::runtime::wait::Condition<K>,
{
    tokio::time::timeout(GUARD, await_condition(api, name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {name}"))
        .expect("watch")
        .unwrap_or_else(|| panic!("{name} missing"))
}

async fn start() -> (TestServer, kube::Client) {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ctx = Context::new(
        client.clone(),
        Settings {
            root_ca: Some(PEM.to_string()),
            ..Default::default()
        },
    );
    tokio::spawn(serviceaccount::run(ctx.clone()));
    tokio::spawn(rootcacertpublisher::run(ctx));
    (server, client)
}

async fn create_ns(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_service_account_in_every_namespace() {
    let (server, client) = start().await;
    for ns in ["default", "kube-system"] {
        wait_for(
            Api::<ServiceAccount>::namespaced(client.clone(), ns),
            "default",
            |o: Option<&ServiceAccount>| o.is_some(),
        )
        .await;
    }
    create_ns(&client, "team-a").await;
    let api = Api::<ServiceAccount>::namespaced(client.clone(), "team-a");
    let first = wait_for(api.clone(), "default", |o: Option<&ServiceAccount>| {
        o.is_some()
    })
    .await;

    // Deleted, it comes back as a new object.
    api.delete("default", &DeleteParams::default())
        .await
        .expect("delete sa");
    let old_uid = first.uid();
    let again = wait_for(api.clone(), "default", move |o: Option<&ServiceAccount>| {
        o.is_some_and(|sa| sa.uid() != old_uid)
    })
    .await;
    assert_eq!(again.name_any(), "default");

    let out = server
        .kubectl(&[
            "get",
            "serviceaccount",
            "default",
            "-n",
            "team-a",
            "-o",
            "name",
        ])
        .await
        .expect_ok("get sa");
    assert_eq!(out.trim(), "serviceaccount/default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_ca_published_and_restored() {
    let (_server, client) = start().await;
    create_ns(&client, "team-b").await;
    let api = Api::<ConfigMap>::namespaced(client.clone(), "team-b");
    let has_ca = |o: Option<&ConfigMap>| {
        o.and_then(|cm| cm.data.as_ref())
            .is_some_and(|d| d.len() == 1 && d.get("ca.crt").map(String::as_str) == Some(PEM))
    };
    let cm = wait_for(api.clone(), "kube-root-ca.crt", has_ca).await;
    assert!(cm.annotations()["kubernetes.io/description"].starts_with("Contains a CA bundle"));
    wait_for(
        Api::<ConfigMap>::namespaced(client.clone(), "kube-system"),
        "kube-root-ca.crt",
        has_ca,
    )
    .await;

    // Tampering is undone: the data goes back to the CA alone.
    api.patch(
        "kube-root-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"ca.crt": "bogus", "extra": "x"}})),
    )
    .await
    .expect("tamper");
    wait_for(api.clone(), "kube-root-ca.crt", has_ca).await;

    // Deleted, it is recreated.
    let uid = cm.uid();
    api.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .expect("delete cm");
    wait_for(api, "kube-root-ca.crt", move |o: Option<&ConfigMap>| {
        o.is_some_and(|cm| cm.uid() != uid && has_ca(Some(cm)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_without_root_ca_does_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ctx = Context::new(client, Settings::default());
    // Returns at once rather than running with nothing to publish.
    tokio::time::timeout(GUARD, rootcacertpublisher::run(ctx))
        .await
        .expect("returns")
        .expect("ok");
}
