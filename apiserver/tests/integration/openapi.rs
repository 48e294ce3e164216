//! The published OpenAPI documents, as the real kubectl uses them: `explain` reads v3,
//! `create`/`apply` look in v3 for server-side field validation and for patch strategies.

use ferrokube_testkit::{path_str, TestServer};
use serde_json::Value;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
"#;

const UNKNOWN_FIELD: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: typo
data:
  a: b
datta:
  c: d
"#;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_field_docs_from_v3() {
    let s = TestServer::start().await;
    let out = s
        .kubectl(&["explain", "pod.spec.containers"])
        .await
        .expect_ok("explain pod.spec.containers");
    assert!(out.contains("KIND:") && out.contains("Pod"), "{out}");
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    // The field's own description, from k8s-openapi.
    assert!(
        out.contains("List of containers belonging to the pod."),
        "{out}"
    );
    assert!(
        out.contains("image\t<string>") || out.contains("image <string>"),
        "{out}"
    );

    let out = s
        .kubectl(&["explain", "deployment", "--api-version=apps/v1"])
        .await
        .expect_ok("explain deployment");
    assert!(out.contains("KIND:") && out.contains("Deployment"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("GROUP:") && l.ends_with(" apps")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("VERSION:") && l.ends_with(" v1")),
        "{out}"
    );
    assert!(
        out.contains("spec\t<DeploymentSpec>") || out.contains("spec <DeploymentSpec>"),
        "{out}"
    );

    let out = s
        .kubectl(&["explain", "deployment.spec.strategy.rollingUpdate.maxSurge"])
        .await
        .expect_ok("explain maxSurge");
    assert!(out.contains("maxSurge <IntOrString>"), "{out}");

    // The swagger 2.0 form, which kubectl reads as protobuf.
    let out = s
        .kubectl(&[
            "explain",
            "pods.spec.containers.ports",
            "--output",
            "plaintext-openapiv2",
        ])
        .await
        .expect_ok("explain from v2");
    assert!(out.contains("RESOURCE: ports <[]Object>"), "{out}");
    assert!(out.contains("containerPort\t<integer> -required-"), "{out}");

    let out = s
        .kubectl(&["explain", "pods", "--recursive"])
        .await
        .expect_ok("explain --recursive");
    assert!(out.contains("terminationGracePeriodSeconds"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_over_the_wire() {
    let s = TestServer::start().await;
    let index = json(
        &s.kubectl(&["get", "--raw", "/openapi/v3"])
            .await
            .expect_ok("get /openapi/v3"),
    );
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap_or_else(|| panic!("no apis/apps/v1 in {index}"))
        .to_string();
    assert!(index["paths"]["api/v1"]["serverRelativeURL"].is_string());
    let doc = json(
        &s.kubectl(&["get", "--raw", &url])
            .await
            .expect_ok("get apps/v1 document"),
    );
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_object());
    let v2 = json(
        &s.kubectl(&["get", "--raw", "/openapi/v2"])
            .await
            .expect_ok("get /openapi/v2"),
    );
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_apply_validate_against_the_server() {
    let s = TestServer::start().await;
    let file = s.write("deploy.yaml", DEPLOYMENT);
    let out = s
        .kubectl(&["create", "-f", path_str(&file)])
        .await
        .expect_ok("create");
    assert!(out.contains("deployment.apps/web created"), "{out}");

    // apply computes a strategic merge patch from the v3 schema (merge key of containers).
    let out = s
        .kubectl(&["apply", "-f", path_str(&file)])
        .await
        .expect_ok("first apply");
    assert!(out.contains("deployment.apps/web"), "{out}");
    let changed = DEPLOYMENT.replace("nginx:1.27", "nginx:1.28");
    let file2 = s.write("deploy2.yaml", &changed);
    s.kubectl(&["apply", "-f", path_str(&file2)])
        .await
        .expect_ok("second apply");
    let got = json(
        &s.kubectl(&["get", "deployment", "web", "-o", "json"])
            .await
            .expect_ok("get"),
    );
    let containers = got["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(containers.len(), 1, "{got}");
    assert_eq!(containers[0]["image"], "nginx:1.28");

    // The default --validate=strict, which kubectl sends as fieldValidation=Strict because the
    // v3 document says PATCH takes it; the server rejects the unknown field.
    let bad = s.write("typo.yaml", UNKNOWN_FIELD);
    let err = s
        .kubectl(&["create", "-f", path_str(&bad)])
        .await
        .expect_err("create with an unknown field");
    assert!(
        err.contains(r#"strict decoding error: unknown field "datta""#),
        "{err}"
    );
    let err = s
        .kubectl(&["get", "configmap", "typo"])
        .await
        .expect_err("get the rejected configmap");
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}
