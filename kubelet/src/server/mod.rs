//! The kubelet's HTTPS API (port 10250), as upstream's pkg/kubelet/server.
//!
//! Every request is authenticated (a client certificate verified against the client CA, a
//! bearer token checked with a TokenReview, or anonymous when allowed) and authorized (a
//! SubjectAccessReview on `nodes/<subresource>` of this node, the subresource read off the
//! path as upstream's fine-grained kubelet authorization does), then routed:
//!
//! | path | |
//! |---|---|
//! | `/healthz` | `ok`, and `/healthz/<check>`, `?verbose` |
//! | `/pods` | the PodList of the pods bound to this node |
//! | `/containerLogs/{namespace}/{pod}/{container}` | a container's log, `PodLogOptions` in the query |
//! | `/logs/` | the files under the log directory (`/var/log`), as Go's `http.FileServer` |
//! | `/metrics` | Prometheus text |
//! | `/stats/summary` | the Summary API: node and pod CPU, memory and filesystem use |
//! | `/exec/`, `/attach/`, `/portForward/` | upgrades proxied to the runtime's streaming server |
//! | `/run/` | a command's output |
//!
//! What the server knows about pods comes through [`NodeView`], which the pod manager
//! implements. Streaming endpoints (exec, attach, port-forward, run) get the whole request,
//! upgrades included: they live in the `streaming` module and are one arm of [`route`].

mod auth;
mod container_logs;
mod files;
mod metrics;
mod streaming;
mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use tokio::net::TcpListener;

pub use auth::{
    attributes_for, AuthConfig, AuthorizationMode, KubeReviews, NodeAttributes, ReviewApi, UserInfo,
};
pub use container_logs::select_container_status;
use ferrokube_component::metrics::Registry;
pub use streaming::{StreamError, StreamOptions};

/// Response bodies: whole buffers, or streams (logs, files) that may end in an error, which
/// aborts the response.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// What the server needs from the rest of the kubelet. The pod manager implements it.
#[async_trait]
pub trait NodeView: Send + Sync + 'static {
    /// The pods bound to this node, as the kubelet last saw them (spec and status).
    fn pods(&self) -> Vec<Pod>;

    /// One pod of [`NodeView::pods`].
    fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods().into_iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(name)
        })
    }

    /// The log file of `container` of `pod` (which exists and has that container in its
    /// spec): the current instance, or with `previous` the last terminated one. The errors
    /// are answered as 400s with their message, which should use upstream's wording;
    /// [`select_container_status`] gives it for the choice of container instance.
    async fn container_log(
        &self,
        pod: &Pod,
        container: &str,
        previous: bool,
    ) -> Result<ContainerLog, LogLookupError>;

    /// The `syncloop` health check of `/healthz`.
    fn sync_loop_health(&self) -> Result<(), String> {
        Ok(())
    }

    /// The Summary API's document (stats/v1alpha1 `Summary`), the node and its pods.
    async fn summary(&self, only_cpu_and_memory: bool) -> Result<serde_json::Value, String> {
        let _ = only_cpu_and_memory;
        Err("this node keeps no stats".into())
    }

    /// The runtime's streaming URL for running `command` in the running `container` of
    /// `pod` (upstream's GetExec); `uid`, when the path names one, must be the pod's.
    async fn exec_url(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        container: &str,
        command: Vec<String>,
        opts: StreamOptions,
    ) -> Result<String, StreamError> {
        let _ = (pod, uid, container, command, opts);
        Err(StreamError::unsupported("exec"))
    }

    /// The runtime's streaming URL for attaching to the running `container` of `pod`
    /// (upstream's GetAttach); whether it has a TTY comes from the container's spec.
    async fn attach_url(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        container: &str,
        opts: StreamOptions,
    ) -> Result<String, StreamError> {
        let _ = (pod, uid, container, opts);
        Err(StreamError::unsupported("attach"))
    }

    /// The runtime's streaming URL for forwarding ports into `pod`'s sandbox (upstream's
    /// GetPortForward); `ports` is empty for SPDY clients, which name them per stream.
    async fn port_forward_url(&self, pod: &Pod, ports: Vec<i32>) -> Result<String, StreamError> {
        let _ = (pod, ports);
        Err(StreamError::unsupported("port forwarding"))
    }

    /// Runs `command` in the running `container` of `pod` to completion: its stdout then
    /// its stderr (upstream's RunInContainer).
    async fn run_in_container(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        container: &str,
        command: Vec<String>,
    ) -> Result<Vec<u8>, StreamError> {
        let _ = (pod, uid, container, command);
        Err(StreamError::unsupported("run"))
    }
}

/// A container log to read: its file and when the container stops writing to it.
pub struct ContainerLog {
    /// The CRI-format log file.
    pub path: PathBuf,
    /// Resolves once the container no longer runs: a follower reads to the end and stops.
    pub exited: BoxFuture<'static, ()>,
}

impl ContainerLog {
    /// The log of a container that has exited.
    pub fn exited(path: impl Into<PathBuf>) -> ContainerLog {
        ContainerLog {
            path: path.into(),
            exited: futures::future::ready(()).boxed(),
        }
    }

    /// The log of a running container; `until` resolves when it stops.
    pub fn running(
        path: impl Into<PathBuf>,
        until: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> ContainerLog {
        ContainerLog {
            path: path.into(),
            exited: until.boxed(),
        }
    }

    /// The log of a container that runs while `running` holds true (or its sender lives).
    pub fn watching(
        path: impl Into<PathBuf>,
        mut running: tokio::sync::watch::Receiver<bool>,
    ) -> ContainerLog {
        let until = async move {
            while *running.borrow_and_update() {
                if running.changed().await.is_err() {
                    break;
                }
            }
        };
        ContainerLog::running(path, until)
    }
}

/// Why a container's log cannot be read; the message is what the client sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LogLookupError(pub String);

/// How the server is set up; the defaults are those of upstream's KubeletConfiguration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub node_name: String,
    /// Addresses to put in a self-signed serving certificate.
    pub node_ips: Vec<IpAddr>,
    /// `--tls-cert-file` / `--tls-private-key-file`; a self-signed pair is made without them.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub auth: AuthConfig,
    /// What `/logs/` serves.
    pub log_dir: PathBuf,
}

impl ServerConfig {
    pub fn new(node_name: impl Into<String>) -> ServerConfig {
        ServerConfig {
            node_name: node_name.into(),
            node_ips: Vec::new(),
            tls_cert_file: None,
            tls_private_key_file: None,
            auth: AuthConfig::default(),
            log_dir: PathBuf::from("/var/log"),
        }
    }
}

/// The kubelet's HTTPS server.
pub struct KubeletServer {
    ctx: Arc<Ctx>,
    tls: Arc<rustls::ServerConfig>,
}

struct Ctx {
    config: ServerConfig,
    node: Arc<dyn NodeView>,
    auth: auth::Auth,
    metrics: metrics::ServerMetrics,
}

impl KubeletServer {
    /// `reviews` answers TokenReviews and SubjectAccessReviews (the apiserver, through
    /// [`KubeReviews`]); it is only asked when the configuration needs it.
    pub fn new(
        config: ServerConfig,
        node: Arc<dyn NodeView>,
        reviews: Arc<dyn ReviewApi>,
    ) -> anyhow::Result<KubeletServer> {
        let tls = Arc::new(tls::server_config(&config)?);
        let auth = auth::Auth::new(&config, reviews);
        Ok(KubeletServer {
            ctx: Arc::new(Ctx {
                config,
                node,
                auth,
                metrics: metrics::ServerMetrics::new(Arc::new(Registry::default())),
            }),
            tls,
        })
    }

    /// The registry `/metrics` renders; other parts of the kubelet may add to it.
    pub fn metrics(&self) -> Arc<Registry> {
        self.ctx.metrics.registry()
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("kubelet server accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let tls = match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake with {peer}: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let cert_user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| auth::user_from_certificate(c.as_ref()));
                serve_connection(ctx, tls, cert_user, peer).await;
            });
        }
    }
}

async fn serve_connection<S>(ctx: Arc<Ctx>, io: S, cert_user: Option<UserInfo>, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let ctx = ctx.clone();
        let cert_user = cert_user.clone();
        async move { Ok::<_, Infallible>(handle(ctx, req, cert_user).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!("kubelet connection from {peer}: {e}");
    }
}

type Req = Request<hyper::body::Incoming>;

/// Authenticates, authorizes and routes one request, counting it.
async fn handle(ctx: Arc<Ctx>, req: Req, cert_user: Option<UserInfo>) -> Response<Body> {
    let start = Instant::now();
    let labels = metrics::RequestLabels::of(req.method(), req.uri().path());
    ctx.metrics.started(&labels);
    let resp = authenticated(&ctx, req, cert_user).await;
    ctx.metrics.finished(&labels, start.elapsed());
    resp
}

async fn authenticated(ctx: &Arc<Ctx>, req: Req, cert_user: Option<UserInfo>) -> Response<Body> {
    let user = match ctx.auth.authenticate(req.headers(), cert_user).await {
        Ok(Some(u)) => u,
        Ok(None) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Err(e) => {
            tracing::warn!("kubelet: unable to authenticate the request: {e}");
            return text(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    };
    let attrs = attributes_for(&ctx.config.node_name, req.method(), req.uri().path());
    if let Err(resp) = ctx.auth.authorize(&user, &attrs).await {
        return resp;
    }
    route(ctx, req).await
}

/// Picks the handler for a path. Streaming handlers (exec, attach, port-forward) are added
/// here as one arm each, with their code in a module of their own.
async fn route(ctx: &Arc<Ctx>, req: Req) -> Response<Body> {
    let path = req.uri().path().to_string();
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    match first.as_str() {
        "healthz" => only_get(&req).unwrap_or_else(|| healthz(ctx, &req)),
        "pods" if path == "/pods" || path == "/pods/" => {
            only_get(&req).unwrap_or_else(|| pods(ctx))
        }
        "containerLogs" => match only_get(&req) {
            Some(r) => r,
            None => container_logs::serve(ctx, &req).await,
        },
        "logs" => match only_get(&req) {
            Some(r) => r,
            None => files::serve(&ctx.config.log_dir, &req).await,
        },
        "metrics" if path == "/metrics" => only_get(&req).unwrap_or_else(|| {
            let body = ctx.metrics.registry().render();
            Response::builder()
                .status(StatusCode::OK)
                .header(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(full(body))
                .unwrap_or_else(|_| Response::new(full("")))
        }),
        "stats" if path == "/stats/summary" || path == "/stats/summary/" => match only_get(&req) {
            Some(r) => r,
            None => summary(ctx, &req).await,
        },
        "exec" | "attach" | "portForward" | "run" => streaming::serve(ctx, req, &first).await,
        _ => text(StatusCode::NOT_FOUND, "404: Page Not Found"),
    }
}

/// Upstream's read-only endpoints answer other methods with a 405 naming GET.
fn only_get(req: &Req) -> Option<Response<Body>> {
    if req.method() == Method::GET {
        return None;
    }
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static("GET"));
    Some(resp)
}

fn healthz(ctx: &Ctx, req: &Req) -> Response<Body> {
    let checks: [(&str, Result<(), String>); 3] = [
        ("ping", Ok(())),
        ("log", Ok(())),
        ("syncloop", ctx.node.sync_loop_health()),
    ];
    let path = req.uri().path().trim_end_matches('/');
    if let Some(name) = path.strip_prefix("/healthz/") {
        return match checks.iter().find(|(n, _)| *n == name) {
            Some((_, Ok(()))) => text(StatusCode::OK, "ok"),
            Some((_, Err(e))) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("internal server error: {e}\n"),
            ),
            None => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        };
    }
    let verbose = req
        .uri()
        .query()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "verbose"));
    let healthy = checks.iter().all(|(_, r)| r.is_ok());
    if healthy && !verbose {
        return text(StatusCode::OK, "ok");
    }
    let mut out = String::new();
    for (name, result) in &checks {
        match result {
            Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
            Err(_) => out.push_str(&format!("[-]{name} failed: reason withheld\n")),
        }
    }
    if healthy {
        out.push_str("healthz check passed\n");
        text(StatusCode::OK, &out)
    } else {
        out.push_str("healthz check failed\n");
        text(StatusCode::INTERNAL_SERVER_ERROR, &out)
    }
}

fn pods(ctx: &Ctx) -> Response<Body> {
    let list = k8s_openapi::List::<Pod> {
        items: ctx.node.pods(),
        metadata: Default::default(),
    };
    match serde_json::to_vec(&list) {
        Ok(body) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(body))
            .unwrap_or_else(|_| Response::new(full(""))),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A plain-text answer, as Go's `http.Error` and go-restful's `WriteErrorString` give.
/// `/stats/summary[?only_cpu_and_memory=true]`.
async fn summary(ctx: &Arc<Ctx>, req: &Req) -> Response<Body> {
    let only = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "only_cpu_and_memory=true");
    match ctx.node.summary(only).await {
        Ok(doc) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(doc.to_string()))
            .unwrap_or_else(|_| Response::new(full(""))),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Internal Error: {e}"),
        ),
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(full(message.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// A streamed body from a stream of byte pieces.
fn streaming<S>(stream: S) -> Body
where
    S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    use futures::StreamExt;
    let frames = stream.map(|r| r.map(hyper::body::Frame::data));
    BodyExt::boxed_unsync(http_body_util::StreamBody::new(frames))
}

#[cfg(test)]
mod tests;
