//! Proxying an upgrade request to the runtime's streaming server, as upstream's proxyStream
//! (an UpgradeAwareHandler that requires an upgrade): the request goes to the URL the
//! runtime gave, with the client's headers; after the runtime's 101 the two connections are
//! joined byte for byte. Any other answer goes back as it is.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::server::{text, Body, Req};

/// How long the runtime's streaming server has to accept a connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the client asks to switch protocols.
fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The error answer of upstream's kubelet responder: a 500 with the error's text.
fn failed(message: &str) -> http::Response<Body> {
    text(StatusCode::INTERNAL_SERVER_ERROR, message)
}

pub(super) async fn proxy_stream(mut req: Req, url: &str) -> http::Response<Body> {
    if !is_upgrade(req.headers()) {
        return failed("Upgrade request required");
    }
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return failed(&format!("invalid streaming URL {url:?}: {e}")),
    };
    if uri.scheme_str() != Some("http") {
        return failed(&format!(
            "streaming URL {url:?}: only plain http streaming servers are supported"
        ));
    }
    let Some(authority) = uri.authority().cloned() else {
        return failed(&format!("streaming URL {url:?} has no host"));
    };
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect((host, port)))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(&format!("dial tcp {authority}: {e}")),
        Err(_) => return failed(&format!("dial tcp {authority}: i/o timeout")),
    };
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(c) => c,
        Err(e) => return failed(&e.to_string()),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("streaming server connection: {e}");
        }
    });
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut out = match Request::builder().method(parts.method).uri(path).body(body) {
        Ok(r) => r,
        Err(e) => return failed(&e.to_string()),
    };
    *out.headers_mut() = parts.headers;
    if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
        out.headers_mut().insert(header::HOST, v);
    }
    let mut resp = match send.send_request(out).await {
        Ok(r) => r,
        Err(e) => return failed(&e.to_string()),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return http::Response::from_parts(
            parts,
            body.map_err(std::io::Error::other).boxed_unsync(),
        );
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
            (Ok(c), Ok(b)) => (c, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("streaming upgrade: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!("streaming connection ended: {e}");
        }
    });
    let (parts, _) = resp.into_parts();
    http::Response::from_parts(parts, crate::server::full(""))
}
