//! Forwarding one request to a backend and its answer back, as upstream's
//! UpgradeAwareHandler: any method, bodies streamed both ways, hop-by-hop headers dropped,
//! `X-Forwarded-*` headers added, redirects to the backend rewritten to go through the proxy,
//! and upgrade requests (WebSocket, SPDY) turned into a raw two-way stream after the 101.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

use super::client::{self, OutBody, Target};
use super::ClientAddr;
use crate::http::Body;
use crate::status::{ApiError, ApiResult};

type Req = Request<Incoming>;

/// How to forward.
pub(crate) struct Forward {
    pub target: Target,
    /// The backend path (already joined), possibly empty.
    pub path: String,
    /// Rewrite redirects, add `X-Forwarded-*`, and answer unreachable backends with a 503, as
    /// upstream's proxy transport does for node, pod and service proxies.
    pub wrap: bool,
    /// Only upgrade requests are forwarded (exec, attach, port-forward).
    pub upgrade_required: bool,
    /// The proxy's own path prefix (`/api/v1/namespaces/ns/pods/p/proxy`).
    pub prefix: String,
    /// The backend's query; None passes the client's on.
    pub query: Option<String>,
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// Whether the client asks to switch protocols.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        && headers.contains_key(header::UPGRADE)
}

/// The host the client addressed.
fn request_host(req: &Req) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, client: Option<SocketAddr>) {
    let Some(addr) = client else {
        return;
    };
    let ip = addr.ip().to_string();
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.is_empty() => format!("{prior}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
    }
}

/// Go's `path.Join(prefix, path)` keeping a trailing slash of `path`.
fn join(prefix: &str, path: &str) -> String {
    let joined = super::clean_path(&format!("{prefix}/{path}"));
    if path.ends_with('/') && !joined.ends_with('/') {
        format!("{joined}/")
    } else {
        joined
    }
}

/// Rewrites a redirect to the backend so that it goes through the proxy, as upstream's
/// proxy transport does: relative-to-root locations on the backend's host (or none) get the
/// proxy prefix and the apiserver's scheme and host.
fn rewrite_location(location: &str, target: &Target, host: &str, prefix: &str) -> Option<String> {
    let (authority, rest) = if let Some(r) = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    {
        let end = r.find(['/', '?', '#']).unwrap_or(r.len());
        (Some(&r[..end]), &r[end..])
    } else {
        (None, location)
    };
    if let Some(a) = authority {
        if a != target.authority() && a != host {
            return None;
        }
    }
    if !rest.starts_with('/') {
        return None;
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(end);
    Some(format!("https://{host}{}{tail}", join(prefix, path)))
}

/// Forwards `req`; the answer comes back streamed.
pub(crate) async fn forward(f: Forward, mut req: Req) -> ApiResult<Response<Body>> {
    let client_addr = req.extensions().get::<ClientAddr>().map(|a| a.0);
    if is_upgrade(req.headers()) {
        return upgrade(f, req, client_addr).await;
    }
    if f.upgrade_required {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let mut path = f.path.clone();
    if !path.ends_with('/') && req.uri().path().ends_with('/') {
        path.push('/');
    }
    let query = f
        .query
        .clone()
        .or_else(|| req.uri().query().map(str::to_string));
    // A proxy root without a path redirects to itself with a slash, for relative links.
    if path.is_empty() && matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        let mut location = format!("{}/", req.uri().path());
        if let Some(q) = &query {
            location.push('?');
            location.push_str(q);
        }
        return Ok(Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, location)
            .body(crate::http::full(Bytes::new()))
            .unwrap_or_else(|_| Response::new(crate::http::full(Bytes::new()))));
    }
    if path.is_empty() {
        path.push('/');
    }
    let host = request_host(&req);
    let mut headers = std::mem::take(req.headers_mut());
    strip_hop_by_hop(&mut headers);
    // The apiserver authenticated the request; its credentials stay here.
    headers.remove(header::AUTHORIZATION);
    append_forwarded_for(&mut headers, client_addr);
    if f.wrap {
        let uri = join(&f.prefix, &path);
        for (name, value) in [
            ("x-forwarded-uri", uri.as_str()),
            ("x-forwarded-host", host.as_str()),
            ("x-forwarded-proto", "https"),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
    }
    if !headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, v);
        }
    }
    let path_and_query = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(&path_and_query)
        .body(req.into_body().boxed())
        .map_err(|e| ApiError::bad_request(format!("invalid proxy request: {e}")))?;
    *out.headers_mut() = headers;
    let resp = match send(&f.target, out).await {
        Ok(r) => r,
        Err(e) => return Err(unreachable(&f, &e)),
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if f.wrap {
        if let Some(loc) = parts
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| rewrite_location(l, &f.target, &host, &f.prefix))
        {
            if let Ok(v) = HeaderValue::from_str(&loc) {
                parts.headers.insert(header::LOCATION, v);
            }
        }
    }
    Ok(Response::from_parts(parts, relay(body)))
}

async fn send(target: &Target, req: Request<OutBody>) -> Result<Response<Incoming>, String> {
    let mut conn = client::connect::<OutBody>(target).await?;
    conn.send_request(req).await.map_err(|e| e.to_string())
}

/// The error for a backend that could not be reached.
fn unreachable(f: &Forward, e: &str) -> ApiError {
    if f.wrap {
        ApiError::service_unavailable(format!("error trying to reach service: {e}"))
    } else {
        ApiError::new(500, "", format!("error dialing backend: {e}"))
    }
}

/// Upgrade requests: forwarded with their Connection and Upgrade headers; after the
/// backend's 101 the two connections are joined byte for byte.
async fn upgrade(
    f: Forward,
    mut req: Req,
    client_addr: Option<SocketAddr>,
) -> ApiResult<Response<Body>> {
    let mut path = if f.path.is_empty() {
        "/".to_string()
    } else {
        f.path.clone()
    };
    if !path.ends_with('/') && req.uri().path().ends_with('/') {
        path.push('/');
    }
    let query = f
        .query
        .clone()
        .or_else(|| req.uri().query().map(str::to_string));
    let path_and_query = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let host = request_host(&req);
    let mut headers = std::mem::take(req.headers_mut());
    headers.remove(header::AUTHORIZATION);
    append_forwarded_for(&mut headers, client_addr);
    if !headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, v);
        }
    }
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(&path_and_query)
        .body(req.into_body().boxed())
        .map_err(|e| ApiError::bad_request(format!("invalid proxy request: {e}")))?;
    *out.headers_mut() = headers;
    let mut resp = match send(&f.target, out).await {
        Ok(r) => r,
        Err(e) => return Err(unreachable(&f, &e)),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The backend refused the upgrade: its answer goes back as it is.
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(parts, relay(body)));
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
            (Ok(c), Ok(b)) => (c, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("proxied upgrade failed: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!("proxied upgraded stream ended: {e}");
        }
    });
    let (parts, _) = resp.into_parts();
    Ok(Response::from_parts(parts, crate::http::full(Bytes::new())))
}

/// A backend's body, at most `limit` bytes of it; what could not be read is left out.
pub(crate) async fn read_body(mut body: Incoming, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(&data[..data.len().min(room)]);
            if out.len() >= limit {
                break;
            }
        }
    }
    out
}

/// A backend's body passed on frame by frame. An error from the backend ends it: the
/// response cannot carry an error any more once it has started.
pub(crate) fn relay(body: Incoming) -> Body {
    BodyExt::boxed(Relay(body))
}

struct Relay(Incoming);

impl hyper::body::Body for Relay {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!("proxied response body: {e}");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_rewritten_through_the_proxy() {
        let target = Target {
            scheme: "http",
            host: "10.0.0.5".into(),
            port: 8080,
            tls: None,
        };
        let prefix = "/api/v1/namespaces/ns/pods/web/proxy";
        assert_eq!(
            rewrite_location("/login?next=1", &target, "api:6443", prefix).as_deref(),
            Some("https://api:6443/api/v1/namespaces/ns/pods/web/proxy/login?next=1")
        );
        assert_eq!(
            rewrite_location("http://10.0.0.5:8080/a/", &target, "api:6443", prefix).as_deref(),
            Some("https://api:6443/api/v1/namespaces/ns/pods/web/proxy/a/")
        );
        assert_eq!(
            rewrite_location("http://example.com/a", &target, "api:6443", prefix),
            None
        );
        assert_eq!(
            rewrite_location("relative", &target, "api:6443", prefix),
            None
        );
    }

    #[test]
    fn hop_by_hop_headers_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
        let mut up = HeaderMap::new();
        up.insert("connection", HeaderValue::from_static("Upgrade"));
        up.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&up));
    }
}
