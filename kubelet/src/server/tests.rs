//! The server on a loopback port, over real log files, driven through TLS by a hyper client.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::*;

/// A CA, a serving certificate for 127.0.0.1 and a client certificate, in PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test-ca");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut serving = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    serving.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = serving.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.path().join("kubelet.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("kubelet.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();

    let ckey = KeyPair::generate().unwrap();
    let mut client = CertificateParams::default();
    client
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    client
        .distinguished_name
        .push(DnType::OrganizationName, "kubelet-api-admins");
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let ccert = client.signed_by(&ckey, &issuer).unwrap();
    Pki {
        dir,
        ca_pem: ca_cert.pem(),
        client_cert: ccert.pem(),
        client_key: ckey.serialize_pem(),
    }
}

/// Pods and their log files.
#[derive(Default)]
struct TestNode {
    pods: Vec<Pod>,
    /// (pod, container, previous) → file and whether the container runs.
    logs: HashMap<(String, String, bool), (PathBuf, tokio::sync::watch::Receiver<bool>)>,
}

#[async_trait]
impl NodeView for TestNode {
    fn pods(&self) -> Vec<Pod> {
        self.pods.clone()
    }

    async fn container_log(
        &self,
        pod: &Pod,
        container: &str,
        previous: bool,
    ) -> Result<ContainerLog, LogLookupError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match self
            .logs
            .get(&(name.clone(), container.to_string(), previous))
        {
            Some((path, running)) => Ok(ContainerLog::watching(path, running.clone())),
            None if previous => Err(LogLookupError(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            ))),
            None => Err(LogLookupError(format!(
                "container {container:?} in pod {name:?} is waiting to start: ContainerCreating"
            ))),
        }
    }
}

/// Tokens and grants, standing in for the apiserver's reviews.
#[derive(Default)]
struct TestReviews {
    tokens: HashMap<String, UserInfo>,
    /// (user, subresource) pairs allowed.
    grants: HashSet<(String, String)>,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl ReviewApi for TestReviews {
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        self.calls.lock().unwrap().push(format!("token {token}"));
        Ok(self.tokens.get(token).cloned())
    }

    async fn review_access(&self, user: &UserInfo, attrs: &NodeAttributes) -> Result<bool, String> {
        self.calls.lock().unwrap().push(format!(
            "sar {} {} {}",
            user.name, attrs.verb, attrs.subresource
        ));
        assert_eq!(attrs.node, "node-a");
        Ok(self
            .grants
            .contains(&(user.name.clone(), attrs.subresource.clone())))
    }
}

fn pod(name: &str, containers: &[&str]) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.spec = Some(PodSpec {
        containers: containers
            .iter()
            .map(|c| Container {
                name: c.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    p
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

struct Harness {
    pki: Pki,
    addr: SocketAddr,
    logs: PathBuf,
    reviews: Arc<TestReviews>,
    running: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Registry>,
    _task: tokio::task::JoinHandle<()>,
}

async fn start(anonymous: bool) -> Harness {
    let pki = pki();
    let logs = pki.dir.path().join("logs");
    std::fs::create_dir_all(logs.join("pods/default_web")).unwrap();
    std::fs::write(logs.join("syslog"), "boot\n").unwrap();
    std::fs::write(logs.join("pods/default_web/a:b.log"), "x\n").unwrap();
    let current = logs.join("app-1.log");
    let previous = logs.join("app-0.log");
    append(
        &current,
        &[
            "2024-05-01T10:00:00.000000001Z stdout F first",
            "2024-05-01T10:00:01Z stderr F second",
            "2024-05-01T10:00:02Z stdout F third",
        ],
    );
    append(&previous, &["2024-05-01T09:00:00Z stdout F from before"]);
    let (running, rx) = tokio::sync::watch::channel(true);
    let (_, exited) = tokio::sync::watch::channel(false);
    let mut node = TestNode {
        pods: vec![pod("web", &["app", "sidecar"])],
        ..Default::default()
    };
    node.logs
        .insert(("web".into(), "app".into(), false), (current, rx));
    node.logs
        .insert(("web".into(), "app".into(), true), (previous, exited));
    let mut reviews = TestReviews::default();
    reviews.tokens.insert(
        "good-token".into(),
        UserInfo {
            name: "system:serviceaccount:mon:scraper".into(),
            groups: vec!["system:serviceaccounts".into()],
            ..Default::default()
        },
    );
    for sub in ["proxy", "log", "metrics", "pods", "healthz", "stats"] {
        reviews
            .grants
            .insert(("kube-apiserver-kubelet-client".into(), sub.into()));
    }
    reviews
        .grants
        .insert(("system:serviceaccount:mon:scraper".into(), "metrics".into()));
    reviews
        .grants
        .insert(("system:anonymous".into(), "healthz".into()));
    let reviews = Arc::new(reviews);
    let mut config = ServerConfig::new("node-a");
    config.tls_cert_file = Some(pki.dir.path().join("kubelet.crt"));
    config.tls_private_key_file = Some(pki.dir.path().join("kubelet.key"));
    config.auth.client_ca_file = Some(pki.dir.path().join("ca.crt"));
    config.auth.anonymous = anonymous;
    config.log_dir = logs.clone();
    let server = KubeletServer::new(config, Arc::new(node), reviews.clone()).unwrap();
    let metrics = server.metrics();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = server.serve(listener).await;
    });
    Harness {
        pki,
        addr,
        logs,
        reviews,
        running,
        metrics,
        _task: task,
    }
}

enum As<'a> {
    Cert,
    Token(&'a str),
    Nobody,
}

impl Harness {
    fn tls(&self, who: &As) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut self.pki.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match who {
            As::Cert => {
                let certs = rustls_pemfile::certs(&mut self.pki.client_cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = rustls_pemfile::private_key(&mut self.pki.client_key.as_bytes())
                    .unwrap()
                    .unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
            _ => builder.with_no_client_auth(),
        }
    }

    /// Sends a request; returns the status, headers and the body stream.
    async fn send(
        &self,
        method: &str,
        path: &str,
        who: As<'_>,
    ) -> http::Response<hyper::body::Incoming> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.tls(&who)));
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1");
        if let As::Token(t) = who {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        send.send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, who: As<'_>) -> (StatusCode, http::HeaderMap, String) {
        let resp = self.send("GET", path, who).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }
}

#[tokio::test]
async fn authentication_and_authorization() {
    let h = start(false).await;
    assert_eq!(
        h.get("/healthz", As::Nobody).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (code, _, body) = h.get("/healthz", As::Token("bad-token")).await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::UNAUTHORIZED, "Unauthorized")
    );

    // The token's user may read metrics, nothing else.
    let (code, _, body) = h.get("/metrics", As::Token("good-token")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _, body) = h.get("/pods", As::Token("good-token")).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        "Forbidden (user=system:serviceaccount:mon:scraper, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
    );
    let (code, _, body) = h
        .get("/containerLogs/default/web/app", As::Token("good-token"))
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(body.contains("subresource(s)=[proxy]"), "{body}");

    // Answers are cached: a second metrics read asks neither review again.
    let before = h.reviews.calls.lock().unwrap().len();
    assert_eq!(
        h.get("/metrics", As::Token("good-token")).await.0,
        StatusCode::OK
    );
    assert_eq!(h.reviews.calls.lock().unwrap().len(), before);

    // The client certificate's CN is the user.
    let (code, _, body) = h.get("/healthz", As::Cert).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"));
    assert!(h
        .reviews
        .calls
        .lock()
        .unwrap()
        .contains(&"sar kube-apiserver-kubelet-client get healthz".to_string()));

    // Anonymous requests are users of their own when allowed.
    let h = start(true).await;
    assert_eq!(h.get("/healthz", As::Nobody).await.0, StatusCode::OK);
    let (code, _, body) = h.get("/pods", As::Nobody).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(body.starts_with("Forbidden (user=system:anonymous, verb=get"));
    // A bad token is refused, not taken as anonymous.
    assert_eq!(
        h.get("/healthz", As::Token("bad-token")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn endpoints() {
    let h = start(false).await;
    let (code, headers, body) = h.get("/pods", As::Cert).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");

    let (code, _, body) = h.get("/healthz?verbose", As::Cert).await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("[+]syncloop ok\n") && body.ends_with("healthz check passed\n"));
    assert_eq!(h.get("/healthz/ping", As::Cert).await.2, "ok");

    // A view without stats answers the Summary API with an internal error.
    let (code, headers, body) = h.get("/stats/summary", As::Cert).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(body.contains("keeps no stats"), "{body}");
    assert_eq!(
        h.get("/stats/other", As::Cert).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.get("/nothing", As::Cert).await.0, StatusCode::NOT_FOUND);
    let resp = h.send("POST", "/pods", As::Cert).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET");

    let (code, _, body) = h.get("/metrics", As::Cert).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        body.contains("kubelet_http_requests_total{long_running=\"false\",method=\"GET\",path=\"pods\",server_type=\"readwrite\"} 1"),
        "{body}"
    );
    assert!(body.contains("# TYPE kubelet_http_requests_duration_seconds histogram"));
    assert!(body.contains("kubelet_http_inflight_requests{"));
    h.metrics.inc("kubelet_extra_total", &[]);
    assert!(h
        .get("/metrics", As::Cert)
        .await
        .2
        .contains("kubelet_extra_total 1"));
}

#[tokio::test]
async fn system_log_files() {
    let h = start(false).await;
    let (code, headers, body) = h.get("/logs/", As::Cert).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(body.contains("<pre>\n"), "{body}");
    assert!(
        body.contains("<a href=\"app-0.log\">app-0.log</a>\n"),
        "{body}"
    );
    assert!(body.contains("<a href=\"pods/\">pods/</a>\n"), "{body}");
    let (_, _, body) = h.get("/logs/pods/default_web/", As::Cert).await;
    assert!(body.contains("<a href=\"./a:b.log\">a:b.log</a>"), "{body}");
    let (code, headers, body) = h.get("/logs/syslog", As::Cert).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "boot\n"));
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    let (code, headers, _) = h.get("/logs/pods", As::Cert).await;
    assert_eq!(code, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "pods/");
    assert_eq!(h.get("/logs/nope", As::Cert).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        h.get("/logs/../../etc/passwd", As::Cert).await.0,
        StatusCode::BAD_REQUEST
    );
    let _ = &h.logs;
}

#[tokio::test]
async fn container_logs() {
    let h = start(false).await;
    let (code, headers, body) = h
        .get(
            "/containerLogs/default/web/app?timestamps=true&tailLines=2",
            As::Cert,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        body,
        "2024-05-01T10:00:01.000000000Z second\n2024-05-01T10:00:02.000000000Z third\n"
    );
    let (_, _, body) = h
        .get("/containerLogs/default/web/app?limitBytes=8", As::Cert)
        .await;
    assert_eq!(body, "first\nse");
    let (_, _, body) = h
        .get("/containerLogs/default/web/app?stream=Stderr", As::Cert)
        .await;
    assert_eq!(body, "second\n");
    let (_, _, body) = h
        .get("/containerLogs/default/web/app?previous=true", As::Cert)
        .await;
    assert_eq!(body, "from before\n");
    let (_, _, body) = h
        .get(
            "/containerLogs/default/web/app?sinceTime=2024-05-01T10:00:01Z",
            As::Cert,
        )
        .await;
    assert_eq!(body, "second\nthird\n");

    let cases = [
        (
            "/containerLogs/default/nope/app",
            404,
            r#"pod "nope" does not exist"#,
        ),
        (
            "/containerLogs/default/web/other",
            404,
            r#"container "other" not found in pod "web""#,
        ),
        (
            "/containerLogs/default/web/sidecar",
            400,
            r#"container "sidecar" in pod "web" is waiting to start: ContainerCreating"#,
        ),
        (
            "/containerLogs/default/web/sidecar?previous=1",
            400,
            r#"previous terminated container "sidecar" in pod "web" not found"#,
        ),
        (
            "/containerLogs/default/web/app?tailLines=x",
            400,
            r#"{"message": "Unable to decode query."}"#,
        ),
        (
            "/containerLogs/default/web/app?tailLines=-2",
            422,
            r#"{"message": "Invalid request."}"#,
        ),
    ];
    for (path, code, want) in cases {
        let (got, _, body) = h.get(path, As::Cert).await;
        assert_eq!((got.as_u16(), body.as_str()), (code, want), "{path}");
    }
}

#[tokio::test]
async fn container_logs_follow() {
    let h = start(false).await;
    let resp = h
        .send(
            "GET",
            "/containerLogs/default/web/app?follow=true&tailLines=1",
            As::Cert,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut seen = String::new();
    async fn more(body: &mut hyper::body::Incoming, seen: &mut String) -> bool {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .expect("log output within 5s");
            match frame {
                None => return false,
                Some(f) => {
                    if let Ok(data) = f.unwrap().into_data() {
                        seen.push_str(std::str::from_utf8(&data).unwrap());
                        return true;
                    }
                }
            }
        }
    }
    while !seen.contains("third") {
        assert!(more(&mut body, &mut seen).await);
    }
    append(
        &h.logs.join("app-1.log"),
        &["2024-05-01T10:00:03Z stdout F fourth"],
    );
    while !seen.contains("fourth") {
        assert!(more(&mut body, &mut seen).await);
    }
    append(
        &h.logs.join("app-1.log"),
        &["2024-05-01T10:00:04Z stdout F last words"],
    );
    h.running.send(false).unwrap();
    while more(&mut body, &mut seen).await {}
    assert_eq!(seen, "third\nfourth\nlast words\n");
}

#[tokio::test]
async fn self_signed_without_cert_files() {
    let mut config = ServerConfig::new("node-b");
    config.node_ips = vec!["10.0.0.7".parse().unwrap()];
    let server = KubeletServer::new(
        config,
        Arc::new(TestNode::default()),
        Arc::new(TestReviews::default()),
    );
    assert!(server.is_ok());
    let mut config = ServerConfig::new("node-b");
    config.tls_cert_file = Some("/nonexistent.crt".into());
    assert!(KubeletServer::new(
        config,
        Arc::new(TestNode::default()),
        Arc::new(TestReviews::default())
    )
    .is_err());
}
