//! The namespace controller against a real apiserver: `kubectl delete namespace` empties the
//! namespace and it disappears; content with a finalizer holds it in Terminating with
//! upstream's NamespaceFinalizersRemaining condition until the finalizer goes.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube_controller_manager::context::{Context, Settings};
use serde_json::json;

const HANG_GUARD: Duration = Duration::from_secs(60);

const CONTENT: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: doomed
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: doomed
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: doomed
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: doomed
data: {a: b}
---
apiVersion: v1
kind: Secret
metadata:
  name: token
  namespace: doomed
stringData: {a: b}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_namespace_empties_it_and_it_goes_away() {
    let server = TestServer::start().await;
    let client = server.client().await;
    tokio::spawn(kube_controller_manager::namespace::run(Context::new(
        client.clone(),
        Settings::default(),
    )));
    let file = server.write("content.yaml", CONTENT);
    server
        .kubectl(&["apply", "-f", ferrokube_testkit::path_str(&file)])
        .await
        .expect_ok("apply");
    let listed = server
        .kubectl(&[
            "get",
            "deployments,services,configmaps,secrets",
            "-n",
            "doomed",
            "-o",
            "name",
        ])
        .await
        .expect_ok("get");
    assert!(listed.contains("deployment.apps/web"), "{listed}");

    // kubectl waits for the namespace to be gone before it returns.
    tokio::time::timeout(
        HANG_GUARD,
        server.kubectl(&["delete", "namespace", "doomed"]),
    )
    .await
    .expect("kubectl delete namespace hung")
    .expect_ok("delete namespace");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt("doomed").await.unwrap().is_none());
    let out = server
        .kubectl(&[
            "get",
            "deployments,services,configmaps,secrets",
            "-n",
            "doomed",
            "-o",
            "name",
        ])
        .await
        .expect_ok("get after");
    assert!(out.trim().is_empty(), "content left behind: {out}");
}

fn condition(ns: &Namespace, kind: &str) -> Option<(String, String, String)> {
    ns.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_on_content_holds_the_namespace() {
    let server = TestServer::start().await;
    let client = server.client().await;
    tokio::spawn(kube_controller_manager::namespace::run(Context::new(
        client.clone(),
        Settings::default(),
    )));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("held".into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("kept".into());
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let mut other = ConfigMap::default();
    other.metadata.name = Some("plain".into());
    cms.create(&PostParams::default(), &other).await.unwrap();

    server
        .kubectl(&["delete", "namespace", "held", "--wait=false"])
        .await
        .expect_ok("delete namespace");

    let held = tokio::time::timeout(
        HANG_GUARD,
        await_condition(namespaces.clone(), "held", |ns: Option<&Namespace>| {
            ns.and_then(|ns| condition(ns, "NamespaceFinalizersRemaining"))
                .is_some_and(|(s, _, _)| s == "True")
        }),
    )
    .await
    .expect("no NamespaceFinalizersRemaining condition")
    .unwrap()
    .unwrap();
    assert_eq!(
        held.status.as_ref().unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let (_, reason, message) = condition(&held, "NamespaceFinalizersRemaining").unwrap();
    assert_eq!(reason, "SomeFinalizersRemain");
    assert_eq!(
        message,
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    let (status, reason, message) = condition(&held, "NamespaceContentRemaining").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "SomeResourcesRemain")
    );
    assert_eq!(
        message,
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    let (status, reason, _) = condition(&held, "NamespaceDeletionContentFailure").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ContentDeleted")
    );
    // The finalizer-free content is gone; the held object is only marked.
    assert!(cms.get_opt("plain").await.unwrap().is_none());
    assert!(cms
        .get("kept")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());

    let uid = held.metadata.uid.clone().unwrap();
    cms.patch(
        "kept",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        HANG_GUARD,
        await_condition(namespaces.clone(), "held", conditions::is_deleted(&uid)),
    )
    .await
    .expect("namespace never went away")
    .unwrap();
}
