//! The HTTP GET that probes and lifecycle hooks make, with the client upstream gives them: no
//! proxy, no keep-alive, no compression, certificates not verified, redirects followed only
//! while they stay on the first request's host, and Go's error text (`Get "url": ...`).
//!
//! HTTP/1.1 only, as Go's transport is when it is given its own TLS config.

use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::gofmt::quote;
use super::net::{dial, join_host_port, DialError};

/// How much of a response body is read, as upstream's probes read it.
pub(crate) const MAX_BODY: usize = 10 * 1024;

/// The Kubernetes minor release this kubelet speaks for, in user agents (`kube-probe/1.33`).
pub(crate) const KUBE_VERSION: &str = "1.33";

/// Go's client stops at this many requests in one chain of redirects.
const MAX_REQUESTS: usize = 10;

/// A URL as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub scheme: String,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// Path and query, escaped, starting with `/`.
    pub target: String,
}

impl Url {
    pub(crate) fn new(scheme: &str, host: &str, port: u16, path: &str) -> Url {
        Url {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_string(),
            port,
            target: escape_target(path),
        }
    }

    pub(crate) fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// Resolves a `Location` header against this URL (RFC 3986, as Go's `URL.Parse`).
    fn join(&self, location: &str) -> Result<Url, String> {
        if let Some((scheme, rest)) = split_scheme(location) {
            return parse_authority_and_path(&scheme, rest);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return parse_authority_and_path(&self.scheme, rest);
        }
        let (base_path, _) = split_query(&self.target);
        let location = location.split('#').next().unwrap_or("");
        let target = if location.is_empty() {
            self.target.clone()
        } else if location.starts_with('/') {
            remove_dot_segments(location)
        } else if location.starts_with('?') {
            format!("{base_path}{location}")
        } else {
            let dir = match base_path.rfind('/') {
                Some(i) => &base_path[..=i],
                None => "/",
            };
            remove_dot_segments(&format!("{dir}{location}"))
        };
        Ok(Url {
            target: escape_target(&target),
            ..self.clone()
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.target)
    }
}

fn split_scheme(s: &str) -> Option<(String, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme.to_ascii_lowercase(), rest))
}

fn split_query(target: &str) -> (&str, &str) {
    match target.find('?') {
        Some(i) => (&target[..i], &target[i..]),
        None => (target, ""),
    }
}

fn parse_authority_and_path(scheme: &str, rest: &str) -> Result<Url, String> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => 0,
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("parse {}: missing ']' in host", quote(rest)))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() => p
            .parse::<u16>()
            .map_err(|_| format!("parse {}: invalid port {}", quote(rest), quote(p)))?,
        _ => default_port,
    };
    let path = path.split('#').next().unwrap_or("");
    Ok(Url::new(scheme, host, port, path))
}

/// RFC 3986 section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let (path, query) = split_query(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut joined = out.join("/");
    if !joined.starts_with('/') {
        joined.insert(0, '/');
    }
    format!("{joined}{query}")
}

/// The path and query of a probe's `path` as Go's `url.URL.String()` writes them: a leading
/// `/`, the fragment dropped, and bytes that may not appear in a request line escaped.
fn escape_target(path: &str) -> String {
    let path = path.split('#').next().unwrap_or("");
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/?".contains(&b)
            || (b == b'%'
                && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A GET request with upstream's headers already applied.
#[derive(Debug, Clone)]
pub(crate) struct GetRequest {
    pub url: Url,
    /// Header lines in order, names canonicalised as Go's `http.Header` does. `Host` and
    /// `User-Agent` are among them when the user set them.
    pub headers: Vec<(String, String)>,
}

impl GetRequest {
    /// Upstream's `newProbeRequest`: `User-Agent: kube-<purpose>/1.33` and `Accept: */*`
    /// unless the caller set them; an explicitly empty `Accept` removes the header.
    pub(crate) fn new(url: Url, user_headers: &[(String, String)], purpose: &str) -> GetRequest {
        let mut headers: Vec<(String, String)> = user_headers
            .iter()
            .map(|(k, v)| (canonical_header_key(k), v.clone()))
            .collect();
        if !headers.iter().any(|(k, _)| k == "User-Agent") {
            headers.push((
                "User-Agent".into(),
                format!("kube-{purpose}/{KUBE_VERSION}"),
            ));
        }
        match headers.iter().find(|(k, _)| k == "Accept") {
            None => headers.push(("Accept".into(), "*/*".into())),
            Some((_, v)) if v.is_empty() => headers.retain(|(k, _)| k != "Accept"),
            Some(_) => {}
        }
        GetRequest { url, headers }
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Upstream's `NewRequestForHTTPGetAction`: the scheme defaults to http, the host to the pod
/// IP, and a named port is looked up in the container's ports.
pub(crate) fn request_for_action(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: &str,
    purpose: &str,
) -> Result<GetRequest, String> {
    let scheme = action.scheme.as_deref().unwrap_or("").to_ascii_lowercase();
    let scheme = if scheme.is_empty() {
        "http".into()
    } else {
        scheme
    };
    let host = match action.host.as_deref() {
        Some(h) if !h.is_empty() => h,
        _ => pod_ip,
    };
    let port = super::resolve_port(&action.port, container)?;
    let url = Url::new(&scheme, host, port, action.path.as_deref().unwrap_or(""));
    let headers: Vec<(String, String)> = action
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    Ok(GetRequest::new(url, &headers, purpose))
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-custom-header` becomes `X-Custom-Header`; a key
/// with characters outside a token is left alone.
fn canonical_header_key(key: &str) -> String {
    let token = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return key.to_string();
    }
    let mut upper = true;
    key.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    /// At most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub(crate) enum GetError {
    /// The request failed before a response arrived; Go's text, `Get "url": ...`.
    Transport(String),
    /// The response came but its body could not be read.
    Body(String),
}

/// The client. `timeout` bounds the whole exchange, redirects and body included, as Go's
/// `http.Client.Timeout` does; lifecycle hooks run without one.
#[derive(Clone)]
pub(crate) struct HttpGetter {
    timeout: Option<Duration>,
}

impl HttpGetter {
    pub(crate) fn new(timeout: Option<Duration>) -> HttpGetter {
        HttpGetter { timeout }
    }

    pub(crate) async fn get(&self, req: &GetRequest) -> Result<Response, GetError> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let first_host = req.url.host.clone();
        let mut url = req.url.clone();
        let mut host_header = req
            .first("Host")
            .filter(|h| !h.is_empty())
            .map(String::from);
        let mut referer: Option<String> = None;
        let mut requests = 0;
        loop {
            requests += 1;
            let failed =
                |e: String| GetError::Transport(format!("Get {}: {e}", quote(&url.to_string())));
            let (status, location, body) = send(
                &url,
                host_header.as_deref(),
                referer.as_deref(),
                req,
                deadline,
            )
            .await
            .map_err(failed)?;
            let next = match location {
                Some(loc) if matches!(status, 301 | 302 | 303 | 307 | 308) => {
                    Some((url.join(&loc).map_err(failed)?, loc))
                }
                _ => None,
            };
            let Some((next, location)) = next else {
                return read_body(body, deadline)
                    .await
                    .map(|body| Response { status, body });
            };
            // A redirect to another host ends the chain with this response, as upstream's
            // probes ask of Go's client.
            if next.host != first_host {
                return read_body(body, deadline)
                    .await
                    .map(|body| Response { status, body });
            }
            if requests >= MAX_REQUESTS {
                return Err(GetError::Transport(format!(
                    "Get {}: stopped after 10 redirects",
                    quote(&next.to_string())
                )));
            }
            // Go keeps a custom Host only through relative redirects.
            if split_scheme(&location).is_some() || location.starts_with("//") {
                host_header = None;
            }
            referer = (!(url.scheme == "https" && next.scheme == "http")).then(|| url.to_string());
            url = next;
        }
    }
}

type Body = hyper::body::Incoming;

/// One request on a fresh connection: the status, the `Location` header and the unread body.
async fn send(
    url: &Url,
    host_header: Option<&str>,
    referer: Option<&str>,
    req: &GetRequest,
    deadline: Option<Instant>,
) -> Result<(u16, Option<String>, BodyReader), String> {
    let awaiting = " (Client.Timeout exceeded while awaiting headers)";
    let timed_out = || format!("context deadline exceeded{awaiting}");
    if url.scheme != "http" && url.scheme != "https" {
        return Err(format!(
            "unsupported protocol scheme {}",
            quote(&url.scheme)
        ));
    }
    let tcp = dial(&url.host, url.port, deadline)
        .await
        .map_err(|e| match e {
            DialError::Timeout(_) => format!("{}{awaiting}", e.message()),
            DialError::Failed(m) => m,
        })?;
    let request = build_request(url, host_header, referer, req)?;
    if url.scheme == "https" {
        let config = tls_config()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sniffed = Sniff {
            inner: tcp,
            seen: seen.clone(),
        };
        let name = server_name(&url.host);
        let connect = tokio_rustls::TlsConnector::from(config).connect(name, sniffed);
        let tls = with_deadline(deadline, connect)
            .await
            .ok_or_else(timed_out)?
            .map_err(|e| {
                let head = seen.lock().map(|s| s.clone()).unwrap_or_default();
                if head.starts_with(b"HTTP/") {
                    "http: server gave HTTP response to HTTPS client".to_string()
                } else {
                    tls_error_text(&e)
                }
            })?;
        exchange(TokioIo::new(tls), request, deadline).await
    } else {
        exchange(TokioIo::new(tcp), request, deadline).await
    }
}

fn build_request(
    url: &Url,
    host_header: Option<&str>,
    referer: Option<&str>,
    req: &GetRequest,
) -> Result<http::Request<Empty<Bytes>>, String> {
    let mut builder = http::Request::get(url.target.as_str());
    builder = builder.header(
        http::header::HOST,
        host_header.map_or_else(|| url.authority(), String::from),
    );
    if let Some(ua) = req.first("User-Agent").filter(|ua| !ua.is_empty()) {
        builder = builder.header(http::header::USER_AGENT, ua);
    }
    for (name, value) in &req.headers {
        if name == "Host" || name == "User-Agent" {
            continue;
        }
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {}", quote(name)))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| format!("net/http: invalid header field value for {}", quote(name)))?;
        builder = builder.header(header, value);
    }
    if let Some(r) = referer {
        builder = builder.header(http::header::REFERER, r);
    }
    builder = builder.header(http::header::CONNECTION, "close");
    builder
        .body(Empty::new())
        .map_err(|e| format!("net/http: {e}"))
}

async fn exchange<I>(
    io: I,
    request: http::Request<Empty<Bytes>>,
    deadline: Option<Instant>,
) -> Result<(u16, Option<String>, BodyReader), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let timed_out =
        || "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_string();
    let handshake = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(io);
    let (mut sender, conn) = with_deadline(deadline, handshake)
        .await
        .ok_or_else(timed_out)?
        .map_err(|e| hyper_error_text(&e))?;
    let conn = tokio::spawn(conn);
    let response = with_deadline(deadline, sender.send_request(request))
        .await
        .ok_or_else(timed_out)?
        .map_err(|e| hyper_error_text(&e))?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(String::from);
    Ok((
        status,
        location,
        BodyReader {
            body: response.into_body(),
            conn: conn.abort_handle(),
        },
    ))
}

/// A response body and the connection task that feeds it, ended when the body is dropped.
struct BodyReader {
    body: Body,
    conn: tokio::task::AbortHandle,
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// Reads up to [`MAX_BODY`] bytes; the rest is left unread, as upstream's `ReadAtMost`.
async fn read_body(mut reader: BodyReader, deadline: Option<Instant>) -> Result<Vec<u8>, GetError> {
    let mut out = Vec::new();
    while out.len() < MAX_BODY {
        let frame = match with_deadline(deadline, reader.body.frame()).await {
            None => {
                return Err(GetError::Body(
                    "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
                        .into(),
                ))
            }
            Some(None) => break,
            Some(Some(Err(e))) => return Err(GetError::Body(hyper_error_text(&e))),
            Some(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            let room = MAX_BODY - out.len();
            out.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(out)
}

async fn with_deadline<F: std::future::Future>(
    deadline: Option<Instant>,
    f: F,
) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// Go's words for a connection that ends early, where hyper's differ.
fn hyper_error_text(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_closed() {
        return "EOF".into();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("read: {}", super::gofmt::errno_text(io));
        }
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Go's TLS errors are worded differently; this keeps rustls' description, in Go's shape.
fn tls_error_text(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("remote error: tls: {}", alert_text(*alert))
        }
        Some(other) => format!("tls: {other}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "EOF".into(),
        None => super::gofmt::errno_text(e),
    }
}

fn alert_text(alert: rustls::AlertDescription) -> String {
    // `HandshakeFailure` becomes `handshake failure`, as Go names alerts.
    let name = format!("{alert:?}");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// SNI goes out for host names only, as Go sends it; an IP, or a name rustls refuses, sends
/// none (nothing is verified against the name anyway).
fn server_name(host: &str) -> ServerName<'static> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_string()).unwrap_or(ServerName::IpAddress(
        std::net::IpAddr::from([0, 0, 0, 0]).into(),
    ))
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    ferrokube_common::tls::AcceptAnyServerCert(provider),
                ))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Keeps the first bytes the server sends, so that a plain-HTTP answer to a TLS hello can be
/// told apart from other handshake failures, as Go tells it.
struct Sniff<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if let Ok(mut seen) = this.seen.lock() {
                let room = 5usize.saturating_sub(seen.len());
                let new = &buf.filled()[before..];
                seen.extend_from_slice(&new[..new.len().min(room)]);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_written_as_go_writes_them() {
        let u = Url::new("HTTP", "10.0.0.1", 8080, "healthz");
        assert_eq!(u.to_string(), "http://10.0.0.1:8080/healthz");
        let u = Url::new("https", "fd00::1", 443, "/a b?x=1#frag");
        assert_eq!(u.to_string(), "https://[fd00::1]:443/a%20b?x=1");
        assert_eq!(Url::new("http", "h", 80, "").target, "/");
        assert_eq!(Url::new("http", "h", 80, "/%41%zz").target, "/%41%25zz");
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = Url::new("http", "10.0.0.1", 80, "/a/b/c?q=1");
        let cases = [
            ("/x", "http://10.0.0.1:80/x"),
            ("d", "http://10.0.0.1:80/a/b/d"),
            ("../d?z", "http://10.0.0.1:80/a/d?z"),
            ("?y=2", "http://10.0.0.1:80/a/b/c?y=2"),
            ("//other:81/p", "http://other:81/p"),
            ("https://other/p", "https://other:443/p"),
            ("http://[::1]:90/", "http://[::1]:90/"),
        ];
        for (loc, want) in cases {
            assert_eq!(base.join(loc).unwrap().to_string(), want, "{loc}");
        }
    }

    #[test]
    fn probe_headers_follow_upstream_defaults() {
        let url = Url::new("http", "h", 80, "/");
        let r = GetRequest::new(url.clone(), &[], "probe");
        assert_eq!(r.first("User-Agent"), Some("kube-probe/1.33"));
        assert_eq!(r.first("Accept"), Some("*/*"));

        let custom = [
            ("user-agent".to_string(), "mine".to_string()),
            ("accept".to_string(), String::new()),
            ("x-trace-id".to_string(), "1".to_string()),
        ];
        let r = GetRequest::new(url, &custom, "lifecycle");
        assert_eq!(r.first("User-Agent"), Some("mine"));
        assert_eq!(r.first("Accept"), None);
        assert_eq!(r.first("X-Trace-Id"), Some("1"));
    }
}
