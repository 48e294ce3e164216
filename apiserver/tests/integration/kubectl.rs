//! The real kubectl against an in-process apiserver: what a user types, and what they see.

use ferrokube_testkit::{path_str, TestServer};
use serde_json::Value;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: one
"#;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_api_versions_and_resources() {
    let s = TestServer::start().await;
    let out = s
        .kubectl(&["version", "-o", "json"])
        .await
        .expect_ok("version");
    let v = json(&out);
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "33");

    let out = s.kubectl(&["api-versions"]).await.expect_ok("api-versions");
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v2",
        "autoscaling/v1",
        "rbac.authorization.k8s.io/v1",
        "flowcontrol.apiserver.k8s.io/v1",
    ] {
        assert!(
            out.lines().any(|l| l == gv),
            "{gv} missing from api-versions:\n{out}"
        );
    }

    let out = s
        .kubectl(&["api-resources", "-o", "wide"])
        .await
        .expect_ok("api-resources");
    let deploy = out
        .lines()
        .find(|l| l.starts_with("deployments "))
        .expect("deployments row");
    assert!(
        deploy.contains("deploy")
            && deploy.contains("apps/v1")
            && deploy.contains("true")
            && deploy.contains("Deployment")
    );
    assert!(
        deploy.contains("all"),
        "deployments are in category all: {deploy}"
    );
    let out = s
        .kubectl(&["api-resources", "--namespaced=false", "-o", "name"])
        .await
        .expect_ok("api-resources");
    assert!(out.lines().any(|l| l == "nodes"));
    assert!(!out.lines().any(|l| l == "pods"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_namespaces_and_kubernetes_service() {
    let s = TestServer::start().await;
    let out = s
        .kubectl(&["get", "namespaces", "-o", "name"])
        .await
        .expect_ok("get ns");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            out.contains(&format!("namespace/{ns}")),
            "{ns} missing: {out}"
        );
    }
    let svc = json(
        &s.kubectl(&["get", "svc", "kubernetes", "-o", "json"])
            .await
            .expect_ok("get svc"),
    );
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    s.kubectl(&["get", "endpoints", "kubernetes"])
        .await
        .expect_ok("get endpoints");
    s.kubectl(&["get", "endpointslices", "kubernetes"])
        .await
        .expect_ok("get endpointslice");
    let err = s
        .kubectl(&["delete", "namespace", "kube-system"])
        .await
        .expect_err("delete kube-system");
    assert!(err.contains("forbidden"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_in_every_output_format() {
    let s = TestServer::start().await;
    let file = s.write("deploy.yaml", DEPLOYMENT);
    let out = s
        .kubectl(&["create", "-f", path_str(&file)])
        .await
        .expect_ok("create -f");
    assert_eq!(out.trim(), "deployment.apps/web created");
    let err = s
        .kubectl(&["create", "-f", path_str(&file)])
        .await
        .expect_err("create twice");
    assert!(
        err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );

    let table = s.kubectl(&["get", "deployments"]).await.expect_ok("get");
    assert!(
        table.lines().next().unwrap_or("").starts_with("NAME"),
        "{table}"
    );
    assert!(table.contains("web"));

    let d = json(
        &s.kubectl(&["get", "deploy", "web", "-o", "json"])
            .await
            .expect_ok("-o json"),
    );
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(!d["metadata"]["uid"].as_str().unwrap_or("").is_empty());
    assert!(!d["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .is_empty());

    let y = s
        .kubectl(&["get", "deploy", "web", "-o", "yaml"])
        .await
        .expect_ok("-o yaml");
    assert!(y.contains("name: web") && y.contains("kind: Deployment"));

    let name = s
        .kubectl(&["get", "deploy", "-o", "name"])
        .await
        .expect_ok("-o name");
    assert_eq!(name.trim(), "deployment.apps/web");

    let jp = s
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await
        .expect_ok("jsonpath");
    assert_eq!(jp, "nginx:1.27");

    let cc = s
        .kubectl(&[
            "get",
            "deploy",
            "-o",
            "custom-columns=N:.metadata.name,R:.spec.replicas",
        ])
        .await
        .expect_ok("custom-columns");
    assert!(
        cc.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["web", "2"]),
        "{cc}"
    );

    let wide = s
        .kubectl(&["get", "deploy", "-o", "wide"])
        .await
        .expect_ok("-o wide");
    assert!(wide.contains("web"));

    let all = s.kubectl(&["get", "all"]).await.expect_ok("get all");
    assert!(all.contains("deployment.apps/web"), "{all}");
    assert!(all.contains("service/kubernetes"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_diff_and_describe() {
    let s = TestServer::start().await;
    let file = s.write("deploy.yaml", DEPLOYMENT);
    let out = s
        .kubectl(&["apply", "-f", path_str(&file)])
        .await
        .expect_ok("apply");
    assert_eq!(out.trim(), "deployment.apps/web created");
    let out = s
        .kubectl(&["apply", "-f", path_str(&file)])
        .await
        .expect_ok("apply again");
    assert_eq!(out.trim(), "deployment.apps/web unchanged");

    let changed = DEPLOYMENT
        .replace("value: one", "value: two")
        .replace("replicas: 2", "replicas: 3");
    let file2 = s.write("deploy2.yaml", &changed);
    // kubectl diff exits 1 when there are differences.
    let diff = s.kubectl(&["diff", "-f", path_str(&file2)]).await;
    assert!(
        diff.stdout.contains("+        value: two") || diff.stdout.contains("value: two"),
        "diff: {}\n{}",
        diff.stdout,
        diff.stderr
    );
    assert!(!diff.ok);

    let out = s
        .kubectl(&["apply", "-f", path_str(&file2)])
        .await
        .expect_ok("apply change");
    assert_eq!(out.trim(), "deployment.apps/web configured");
    let d = json(
        &s.kubectl(&["get", "deploy", "web", "-o", "json"])
            .await
            .expect_ok("get"),
    );
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "two"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    let diff = s.kubectl(&["diff", "-f", path_str(&file2)]).await;
    assert!(
        diff.ok,
        "no differences left: {} {}",
        diff.stdout, diff.stderr
    );

    let desc = s
        .kubectl(&["describe", "deployment", "web"])
        .await
        .expect_ok("describe");
    assert!(
        desc.contains("Name:") && desc.contains("web") && desc.contains("nginx:1.27"),
        "{desc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_label_annotate_scale_edit() {
    let s = TestServer::start().await;
    let file = s.write("deploy.yaml", DEPLOYMENT);
    s.kubectl(&["create", "-f", path_str(&file)])
        .await
        .expect_ok("create");

    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ])
    .await
    .expect_ok("merge patch");
    s.kubectl(&["patch", "deploy", "web", "--type", "json", "-p", r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]"#])
        .await
        .expect_ok("json patch");
    s.kubectl(&["patch", "deploy", "web", "--type", "strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"EXTRA","value":"x"}]}]}}}}"#])
        .await
        .expect_ok("strategic patch");
    let d = json(
        &s.kubectl(&["get", "deploy", "web", "-o", "json"])
            .await
            .expect_ok("get"),
    );
    assert_eq!(d["spec"]["replicas"], 4);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.28");
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"MODE") && env.contains(&"EXTRA"),
        "strategic merge keeps both: {env:?}"
    );

    let err = s
        .kubectl(&[
            "patch",
            "deploy",
            "web",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
        ])
        .await
        .expect_err("failing test op");
    assert!(!err.is_empty());

    s.kubectl(&["label", "deploy", "web", "tier=frontend"])
        .await
        .expect_ok("label");
    s.kubectl(&["annotate", "deploy", "web", "note=hello"])
        .await
        .expect_ok("annotate");
    let d = json(
        &s.kubectl(&["get", "deploy", "web", "-o", "json"])
            .await
            .expect_ok("get"),
    );
    assert_eq!(d["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(d["metadata"]["annotations"]["note"], "hello");
    let err = s
        .kubectl(&["label", "deploy", "web", "tier=backend"])
        .await
        .expect_err("relabel without --overwrite");
    assert!(err.contains("already has a value"), "{err}");
    s.kubectl(&["label", "deploy", "web", "tier-"])
        .await
        .expect_ok("unlabel");

    let out = s
        .kubectl(&["scale", "deploy", "web", "--replicas=7"])
        .await
        .expect_ok("scale");
    assert!(out.contains("scaled"), "{out}");
    let r = s
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await
        .expect_ok("get");
    assert_eq!(r, "7");
    let err = s
        .kubectl(&[
            "scale",
            "deploy",
            "web",
            "--replicas=1",
            "--current-replicas=3",
        ])
        .await
        .expect_err("scale precondition");
    assert!(
        err.contains("Expected replicas to be 3") || err.contains("precondition"),
        "{err}"
    );

    // A scripted editor: sed the replicas in the temp file kubectl hands it.
    let editor = s.write(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/replicas: 7/replicas: 5/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = s
        .kubectl_with(
            &["edit", "deploy", "web"],
            None,
            &[("KUBE_EDITOR", path_str(&editor))],
        )
        .await
        .expect_ok("edit");
    assert!(out.contains("edited"), "{out}");
    let r = s
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await
        .expect_ok("get");
    assert_eq!(r, "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_name_label_and_orphan() {
    let s = TestServer::start().await;
    for (name, tier) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{tier: \"{tier}\"}}\ndata: {{k: v}}\n");
        let f = s.write(&format!("{name}.yaml"), &cm);
        s.kubectl(&["create", "-f", path_str(&f)])
            .await
            .expect_ok("create cm");
    }
    let out = s
        .kubectl(&["delete", "configmap", "a"])
        .await
        .expect_ok("delete by name");
    assert_eq!(out.trim(), "configmap \"a\" deleted");
    let out = s
        .kubectl(&["delete", "configmap", "-l", "tier=x"])
        .await
        .expect_ok("delete by label");
    assert!(out.contains("\"b\" deleted"), "{out}");
    let left = s
        .kubectl(&["get", "cm", "-o", "name"])
        .await
        .expect_ok("get");
    assert!(
        left.contains("configmap/c") && !left.contains("configmap/b"),
        "{left}"
    );
    let err = s
        .kubectl(&["delete", "configmap", "nope"])
        .await
        .expect_err("delete missing");
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    // Orphaning records the orphan finalizer and leaves the object terminating until the
    // garbage collector (a later component) finishes it.
    let file = s.write("deploy.yaml", DEPLOYMENT);
    s.kubectl(&["create", "-f", path_str(&file)])
        .await
        .expect_ok("create");
    s.kubectl(&[
        "delete",
        "deploy",
        "web",
        "--cascade=orphan",
        "--wait=false",
    ])
    .await
    .expect_ok("delete orphan");
    let d = json(
        &s.kubectl(&["get", "deploy", "web", "-o", "json"])
            .await
            .expect_ok("get"),
    );
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(d["metadata"]["finalizers"][0], "orphan");
    // Removing the finalizer completes the deletion.
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await
    .expect_ok("drop finalizer");
    let err = s
        .kubectl(&["get", "deploy", "web"])
        .await
        .expect_err("gone");
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imperative_creates() {
    let s = TestServer::start().await;
    s.kubectl(&["create", "namespace", "team"])
        .await
        .expect_ok("create namespace");
    s.kubectl(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "team",
        "--from-literal=a=1",
    ])
    .await
    .expect_ok("create configmap");
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "team",
        "--from-literal=password=s3cret",
    ])
    .await
    .expect_ok("create secret");
    s.kubectl(&[
        "create",
        "deployment",
        "app",
        "-n",
        "team",
        "--image=busybox",
        "--replicas=2",
    ])
    .await
    .expect_ok("create deployment");
    s.kubectl(&[
        "create",
        "service",
        "clusterip",
        "app",
        "-n",
        "team",
        "--tcp=80:8080",
    ])
    .await
    .expect_ok("create service");
    let sec = json(
        &s.kubectl(&["get", "secret", "pw", "-n", "team", "-o", "json"])
            .await
            .expect_ok("get secret"),
    );
    assert_eq!(sec["data"]["password"], "czNjcmV0");
    assert_eq!(sec["type"], "Opaque");
    let svc = json(
        &s.kubectl(&["get", "svc", "app", "-n", "team", "-o", "json"])
            .await
            .expect_ok("get svc"),
    );
    let ip = svc["spec"]["clusterIP"].as_str().unwrap_or("");
    assert!(
        ip.starts_with("10."),
        "allocated a ClusterIP from the range: {ip}"
    );
    let err = s
        .kubectl(&["create", "configmap", "x", "-n", "missing"])
        .await
        .expect_err("missing namespace");
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_changes() {
    let s = TestServer::start().await;
    let file = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\ndata: {k: v}\n",
    );
    s.kubectl(&["create", "-f", path_str(&file)])
        .await
        .expect_ok("create");
    let mut cmd = tokio::process::Command::new("/usr/bin/kubectl");
    cmd.env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.dir.path())
        .args(["get", "configmaps", "-w", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("kubectl -w");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(first.contains("configmap/"), "{first}");
    // Read until the initial list is through, then change something and see it arrive.
    let file2 = s.write(
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w2\ndata: {k: v}\n",
    );
    s.kubectl(&["create", "-f", path_str(&file2)])
        .await
        .expect_ok("create second");
    loop {
        let line = lines.next_line().await.unwrap().expect("watch ended early");
        if line.contains("configmap/w2") {
            break;
        }
    }
    child.kill().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_upstream_errors() {
    let s = TestServer::start().await;
    let bad = s.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let err = s
        .kubectl(&["create", "-f", path_str(&bad)])
        .await
        .expect_err("invalid name");
    assert!(
        err.contains("is invalid") && err.contains("metadata.name"),
        "{err}"
    );
    let noname = s.write(
        "noname.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
    );
    let err = s
        .kubectl(&["create", "-f", path_str(&noname)])
        .await
        .expect_err("no name");
    assert!(
        err.contains("name or generateName is required")
            || err.contains("resource name may not be empty"),
        "{err}"
    );
}
