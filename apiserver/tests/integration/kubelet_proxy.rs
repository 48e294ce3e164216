//! The apiserver reaching past itself: `pods/log` and `nodes/proxy` through the real kubelet
//! server (kubelet::server) over real log files, `pods/proxy` and `services/proxy` to a
//! plain HTTP server, upgrades joined after the 101, and exec routed to the kubelet; driven
//! by the real kubectl.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferrokube_testkit::TestServer;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubelet::server::{
    ContainerLog, KubeReviews, KubeletServer, LogLookupError, NodeView, ServerConfig,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The pods of the node and their log files.
struct TestNode {
    pods: Mutex<Vec<Pod>>,
    logs: HashMap<(String, bool), PathBuf>,
    running: tokio::sync::watch::Receiver<bool>,
}

#[async_trait]
impl NodeView for TestNode {
    fn pods(&self) -> Vec<Pod> {
        self.pods.lock().unwrap().clone()
    }

    async fn container_log(
        &self,
        pod: &Pod,
        container: &str,
        previous: bool,
    ) -> Result<ContainerLog, LogLookupError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let key = (format!("{name}/{container}"), previous);
        match self.logs.get(&key) {
            Some(path) if previous => Ok(ContainerLog::exited(path)),
            Some(path) => Ok(ContainerLog::watching(path, self.running.clone())),
            None if previous => Err(LogLookupError(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            ))),
            None => Err(LogLookupError(format!(
                "container {container:?} in pod {name:?} is waiting to start: ContainerCreating"
            ))),
        }
    }
}

fn append(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

struct Cluster {
    s: TestServer,
    current_log: PathBuf,
    running: tokio::sync::watch::Sender<bool>,
    _kubelet: tokio::task::JoinHandle<()>,
}

/// An apiserver, a kubelet server on loopback for node `node-1`, and pod `web` (containers
/// `app` and `sidecar`) bound to it.
async fn cluster() -> Cluster {
    let s = TestServer::start().await;
    let pki = s.path("pki");
    let client = s.client().await;

    // The apiserver's kubelet client certificate, from the cluster CA the kubelet trusts.
    let issuer = kube_apiserver::pki::load_issuer(&pki).unwrap();
    let (cert, key) =
        kube_apiserver::pki::client_cert(&issuer, "kube-apiserver-kubelet-client", &[]).unwrap();
    std::fs::write(pki.join("kubelet-client.crt"), cert).unwrap();
    std::fs::write(pki.join("kubelet-client.key"), key).unwrap();
    s.app
        .kubelet
        .configure(&kube_apiserver::proxy::KubeletClientConfig {
            client_certificate: Some(pki.join("kubelet-client.crt")),
            client_key: Some(pki.join("kubelet-client.key")),
            ..Default::default()
        })
        .unwrap();

    let logs = s.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let current_log = logs.join("app-1.log");
    append(
        &current_log,
        &[
            "2024-05-01T10:00:00.000000001Z stdout F first line",
            "2024-05-01T10:00:01Z stderr F second line",
            "2024-05-01T10:00:02Z stdout P third ",
            "2024-05-01T10:00:02.5Z stdout F line",
        ],
    );
    let previous_log = logs.join("app-0.log");
    append(
        &previous_log,
        &["2024-05-01T09:00:00Z stdout F before the restart"],
    );
    let solo_log = logs.join("solo.log");
    append(&solo_log, &["2024-05-01T09:00:00Z stdout F solo says hi"]);
    let (running, running_rx) = tokio::sync::watch::channel(true);
    let node = Arc::new(TestNode {
        pods: Mutex::new(Vec::new()),
        logs: HashMap::from([
            (("web/app".to_string(), false), current_log.clone()),
            (("web/app".to_string(), true), previous_log),
            (("solo/main".to_string(), false), solo_log),
        ]),
        running: running_rx,
    });

    // The kubelet: self-signed serving certificate (the apiserver has no CA for it and does
    // not verify, as upstream), the cluster CA for client certificates, webhook
    // authorization answered by the apiserver.
    let mut config = ServerConfig::new("node-1");
    config.node_ips = vec!["127.0.0.1".parse().unwrap()];
    config.auth.client_ca_file = Some(pki.join("ca.crt"));
    config.log_dir = logs.clone();
    let server =
        KubeletServer::new(config, node.clone(), Arc::new(KubeReviews(client.clone()))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let kubelet = tokio::spawn(async move {
        let _ = server.serve(listener).await;
    });

    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "node-1"}})).unwrap(),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            "node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, containers) in [("web", vec!["app", "sidecar"]), ("solo", vec!["main"])] {
        let containers: Vec<_> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox"}))
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "node-1", "containers": containers},
        }))
        .unwrap();
        let created = pods.create(&PostParams::default(), &pod).await.unwrap();
        node.pods.lock().unwrap().push(created);
    }
    Cluster {
        s,
        current_log,
        running,
        _kubelet: kubelet,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_through_the_kubelet() {
    let c = cluster().await;
    let s = &c.s;
    let all = "first line\nsecond line\nthird line\n";
    let out = s
        .kubectl(&["logs", "web", "-c", "app"])
        .await
        .expect_ok("logs");
    assert_eq!(out, all);
    // Without -c kubectl picks the first container.
    assert_eq!(s.kubectl(&["logs", "web"]).await.expect_ok("logs"), all);
    assert_eq!(
        s.kubectl(&["logs", "solo"]).await.expect_ok("logs solo"),
        "solo says hi\n"
    );
    let out = s
        .kubectl(&["logs", "web", "-c", "app", "--tail=2"])
        .await
        .expect_ok("--tail");
    assert_eq!(out, "third line\n");
    let out = s
        .kubectl(&["logs", "web", "-c", "app", "--tail=1", "--timestamps"])
        .await
        .expect_ok("--timestamps");
    assert_eq!(out, "2024-05-01T10:00:02.500000000Z line\n");
    let out = s
        .kubectl(&["logs", "web", "-c", "app", "--timestamps"])
        .await
        .expect_ok("--timestamps");
    assert!(
        out.starts_with("2024-05-01T10:00:00.000000001Z first line\n"),
        "{out}"
    );
    assert!(
        out.ends_with("2024-05-01T10:00:02.000000000Z third line\n"),
        "{out}"
    );
    let out = s
        .kubectl(&["logs", "web", "-c", "app", "--limit-bytes=14"])
        .await
        .expect_ok("--limit-bytes");
    assert_eq!(out, "first line\nsec");
    let out = s
        .kubectl(&[
            "logs",
            "web",
            "-c",
            "app",
            "--since-time=2024-05-01T10:00:01Z",
        ])
        .await
        .expect_ok("--since-time");
    assert_eq!(out, "second line\nthird line\n");
    let out = s
        .kubectl(&["logs", "web", "-c", "app", "--previous"])
        .await
        .expect_ok("--previous");
    assert_eq!(out, "before the restart\n");

    // Errors: the apiserver's own, and the kubelet's passed on.
    let err = s
        .kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/web/log"])
        .await
        .expect_err("no container");
    assert!(
        err.contains(
            "a container name must be specified for pod web, choose one of: [app sidecar]"
        ),
        "{err}"
    );
    let err = s
        .kubectl(&["logs", "web", "-c", "nope"])
        .await
        .expect_err("bad container");
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    let err = s
        .kubectl(&["logs", "web", "-c", "sidecar"])
        .await
        .expect_err("waiting container");
    assert!(
        err.contains(
            "Error from server (BadRequest): container \"sidecar\" in pod \"web\" is waiting to start: ContainerCreating"
        ),
        "{err}"
    );
    let err = s
        .kubectl(&["logs", "web", "-c", "sidecar", "--previous"])
        .await
        .expect_err("no previous");
    assert!(
        err.contains("previous terminated container \"sidecar\" in pod \"web\" not found"),
        "{err}"
    );
    let err = s
        .kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/web/log?container=app&tailLines=-1",
        ])
        .await
        .expect_err("negative tail");
    assert!(
        err.contains("tailLines: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    let err = s
        .kubectl(&["logs", "ghost"])
        .await
        .expect_err("no such pod");
    assert!(err.contains("pods \"ghost\" not found"), "{err}");

    // A pod not scheduled yet has no log, and that is no error.
    let pods: Api<Pod> = Api::namespaced(s.client().await, "default");
    let pending: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pending"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pending).await.unwrap();
    assert_eq!(
        s.kubectl(&["logs", "pending"]).await.expect_ok("pending"),
        ""
    );

    // The kubelet's own API through the node proxy.
    assert_eq!(
        s.kubectl(&["get", "--raw", "/api/v1/nodes/node-1/proxy/healthz"])
            .await
            .expect_ok("node proxy healthz"),
        "ok"
    );
    let list: serde_json::Value = serde_json::from_str(
        &s.kubectl(&["get", "--raw", "/api/v1/nodes/node-1/proxy/pods"])
            .await
            .expect_ok("node proxy pods"),
    )
    .unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    let listing = s
        .kubectl(&["get", "--raw", "/api/v1/nodes/node-1/proxy/logs/"])
        .await
        .expect_ok("node proxy logs");
    assert!(
        listing.contains("<a href=\"app-1.log\">app-1.log</a>"),
        "{listing}"
    );
    let metrics = s
        .kubectl(&["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics"])
        .await
        .expect_ok("node proxy metrics");
    assert!(
        metrics.contains("kubelet_http_requests_total{long_running=\"false\",method=\"GET\",path=\"containerLogs\",server_type=\"readwrite\"}"),
        "{metrics}"
    );
    let err = s
        .kubectl(&["get", "--raw", "/api/v1/nodes/node-2/proxy/healthz"])
        .await
        .expect_err("unknown node");
    assert!(err.contains("nodes \"node-2\" not found"), "{err}");
}

/// Runs `kubectl logs -f` and hands its output over line by line.
fn follow(
    s: &TestServer,
    args: &[&str],
) -> (
    std::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = Command::new("/usr/bin/kubectl")
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.dir.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Blocking reads of the pipe: a thread of its own, so no runtime worker is held up.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    (child, rx)
}

/// The next line kubectl prints, or None once it closed its output.
async fn next_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Option<String> {
    // Only a guard against a hung test: each line is due as soon as the kubelet writes it.
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no output from kubectl logs -f in 10s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_follow() {
    let c = cluster().await;
    // Tail counts lines of the file: the last two hold the two pieces of "third line".
    let (mut child, mut rx) = follow(&c.s, &["logs", "-f", "web", "-c", "app", "--tail=2"]);
    assert_eq!(next_line(&mut rx).await.as_deref(), Some("third line"));
    append(
        &c.current_log,
        &["2024-05-01T10:00:03Z stdout F appended while following"],
    );
    assert_eq!(
        next_line(&mut rx).await.as_deref(),
        Some("appended while following")
    );
    append(
        &c.current_log,
        &["2024-05-01T10:00:04Z stderr F last words"],
    );
    // The container stops: the kubelet sends the rest and closes; kubectl exits.
    c.running.send(false).unwrap();
    assert_eq!(next_line(&mut rx).await.as_deref(), Some("last words"));
    assert_eq!(next_line(&mut rx).await, None);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

/// A local address other than loopback: pod IPs must be global unicast, as upstream checks.
fn routable_local_ip() -> Option<IpAddr> {
    for probe in ["203.0.113.1:9", "192.0.2.1:9", "10.255.255.1:9"] {
        let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        if sock.connect(probe).is_ok() {
            if let Ok(addr) = sock.local_addr() {
                let ip = addr.ip();
                if !ip.is_loopback() && !ip.is_unspecified() {
                    return Some(ip);
                }
            }
        }
    }
    None
}

/// A plain HTTP server: echoes requests, redirects `/redirect`, and for `Upgrade: echo`
/// switches protocols and echoes bytes.
async fn backend(ip: IpAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |mut req: http::Request<hyper::body::Incoming>| async move {
                        if req.headers().get("upgrade").map(|v| v.as_bytes()) == Some(b"echo") {
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                if let Ok(up) = on.await {
                                    let mut io = TokioIo::new(up);
                                    let mut buf = [0u8; 64];
                                    while let Ok(n) = io.read(&mut buf).await {
                                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                }
                            });
                            return Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(101)
                                    .header("connection", "Upgrade")
                                    .header("upgrade", "echo")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            );
                        }
                        if req.uri().path() == "/redirect" {
                            return Ok(http::Response::builder()
                                .status(302)
                                .header("location", "/target")
                                .body(Full::new(Bytes::new()))
                                .unwrap());
                        }
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let h = |n: &str| {
                            parts
                                .headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        let echo = json!({
                            "method": parts.method.as_str(),
                            "path": parts.uri.path(),
                            "query": parts.uri.query(),
                            "body": String::from_utf8_lossy(&body),
                            "forwardedUri": h("x-forwarded-uri"),
                            "forwardedFor": h("x-forwarded-for"),
                            "authorization": h("authorization"),
                        });
                        Ok(http::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(echo.to_string())))
                            .unwrap())
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// One raw HTTP/1.1 request to the apiserver over TLS with the admin certificate.
async fn raw_tls(s: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let pki = s.path("pki");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(pki.join("ca.crt")).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let certs =
        rustls_pemfile::certs(&mut std::fs::read(pki.join("admin.crt")).unwrap().as_slice())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    let key =
        rustls_pemfile::private_key(&mut std::fs::read(pki.join("admin.key")).unwrap().as_slice())
            .unwrap()
            .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .unwrap();
    let addr = s.url.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// Reads an HTTP response head (and whatever body bytes came with it).
async fn read_head<S: tokio::io::AsyncRead + Unpin>(io: &mut S) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
            .await
            .expect("response within 10s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_service_proxy() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let Some(ip) = routable_local_ip() else {
        eprintln!("no non-loopback local address: pod proxy checks skipped");
        return;
    };
    let backend = backend(ip).await;
    let port = backend.port();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "webserver", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [
            {"name": "web", "image": "busybox", "ports": [{"containerPort": port}]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "webserver",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}}),
        ),
    )
    .await
    .unwrap();

    let get = |path: String| {
        let s = &s;
        async move {
            let out = s.kubectl(&["get", "--raw", &path]).await.expect_ok(&path);
            serde_json::from_str::<serde_json::Value>(&out)
                .unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
        }
    };
    let echo =
        get("/api/v1/namespaces/default/pods/webserver/proxy/hello/there?x=1&y=2".into()).await;
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/hello/there");
    assert_eq!(echo["query"], "x=1&y=2");
    assert_eq!(
        echo["forwardedUri"],
        "/api/v1/namespaces/default/pods/webserver/proxy/hello/there"
    );
    assert_eq!(echo["forwardedFor"], "127.0.0.1");
    assert_eq!(echo["authorization"], "");
    let echo = get(format!(
        "/api/v1/namespaces/default/pods/webserver:{port}/proxy/"
    ))
    .await;
    assert_eq!(echo["path"], "/");
    // Redirects to the backend come back through the proxy (kubectl follows them).
    let echo = get("/api/v1/namespaces/default/pods/webserver/proxy/redirect".into()).await;
    assert_eq!(echo["path"], "/target");

    // A body goes through with its method.
    let body = s.write("body.json", r#"{"hello":"world"}"#);
    let out = s
        .kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/webserver/proxy/post",
            "-f",
            ferrokube_testkit::path_str(&body),
        ])
        .await
        .expect_ok("create --raw");
    let echo: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], r#"{"hello":"world"}"#);

    // The service's endpoint, by port name and by number.
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "websvc"},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 80, "targetPort": port}]},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(client.clone(), "default");
    let eps = json!({
        "metadata": {"name": "websvc"},
        "subsets": [{
            "addresses": [{"ip": ip.to_string(),
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": "webserver"}}],
            "ports": [{"name": "http", "port": port}],
        }],
    });
    match endpoints
        .create(
            &PostParams::default(),
            &serde_json::from_value(eps.clone()).unwrap(),
        )
        .await
    {
        Ok(_) => {}
        // An endpoints controller may have made it first.
        Err(_) => {
            endpoints
                .patch("websvc", &PatchParams::default(), &Patch::Merge(eps))
                .await
                .unwrap();
        }
    }
    let echo = get("/api/v1/namespaces/default/services/websvc:http/proxy/svc".into()).await;
    assert_eq!(echo["path"], "/svc");
    assert_eq!(
        echo["forwardedUri"],
        "/api/v1/namespaces/default/services/websvc:http/proxy/svc"
    );
    let echo = get("/api/v1/namespaces/default/services/websvc:80/proxy/num".into()).await;
    assert_eq!(echo["path"], "/num");
    let err = s
        .kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/websvc:81/proxy/",
        ])
        .await
        .expect_err("unknown port");
    assert!(
        err.contains("no service port 81 found for service \"websvc\""),
        "{err}"
    );

    // An upgrade: the 101 comes back and the connection carries bytes both ways.
    let mut tls = raw_tls(&s).await;
    tls.write_all(
        b"GET /api/v1/namespaces/default/pods/webserver/proxy/chat HTTP/1.1\r\nHost: apiserver\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut buf))
        .await
        .expect("echo within 10s")
        .unwrap();
    assert_eq!(&buf, b"ping");

    // Pod IPs that are not global unicast are refused, as upstream does.
    let lo: Pod = serde_json::from_value(json!({
        "metadata": {"name": "loopback"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &lo).await.unwrap();
    pods.patch_status(
        "loopback",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"podIPs": [{"ip": "127.0.0.1"}]}})),
    )
    .await
    .unwrap();
    let err = s
        .kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/loopback:80/proxy/",
        ])
        .await
        .expect_err("loopback pod");
    assert!(err.contains("address not allowed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_is_routed_to_the_kubelet() {
    let c = cluster().await;
    let s = &c.s;
    // Without an upgrade there is nothing to stream.
    let err = s
        .kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/web/exec?command=ls&container=app&stdout=true",
        ])
        .await
        .expect_err("exec without upgrade");
    assert!(err.contains("Upgrade request required"), "{err}");
    // With one, the request reaches the kubelet's /exec, whose answer comes back as it is.
    let mut tls = raw_tls(s).await;
    tls.write_all(
        b"POST /api/v1/namespaces/default/pods/web/exec?command=ls&command=-l&container=app&stdout=true HTTP/1.1\r\nHost: apiserver\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 500"), "{head}");
    let mut rest = head;
    let mut buf = [0u8; 256];
    while !rest.contains("not supported") {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("body within 10s")
            .unwrap();
        assert!(n > 0, "{rest}");
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // This kubelet's pods have no runtime to stream from: the runtime's Unimplemented.
    assert!(
        rest.contains("rpc error: code = Unimplemented desc = exec is not supported by this node"),
        "{rest}"
    );
    let err = s
        .kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/pending/exec",
        ])
        .await
        .expect_err("no such pod");
    assert!(err.contains("pods \"pending\" not found"), "{err}");
}
