//! `/healthz` and `/metrics` over HTTPS on the secure port, with a self-signed serving
//! certificate as upstream makes when none is given.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Renders the Prometheus text exposition for `/metrics`.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

fn self_signed() -> anyhow::Result<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate()?;
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let cert = params.self_signed(&key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn answer(
    req: &Request<hyper::body::Incoming>,
    metrics: &MetricsRenderer,
) -> Response<Full<Bytes>> {
    let (status, body, ct) = match req.uri().path() {
        "/healthz" | "/livez" | "/readyz" => (
            StatusCode::OK,
            "ok".to_string(),
            "text/plain; charset=utf-8",
        ),
        "/metrics" => (StatusCode::OK, metrics(), "text/plain; version=0.0.4"),
        _ => (
            StatusCode::NOT_FOUND,
            "404 page not found\n".to_string(),
            "text/plain; charset=utf-8",
        ),
    };
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Serves until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: MetricsRenderer) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(self_signed()?));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("serving /healthz and /metrics on https://{addr}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let resp = answer(&req, &metrics);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
