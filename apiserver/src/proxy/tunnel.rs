//! port-forward for WebSocket clients, as upstream's TunnelingHandler (1.31+): the client
//! asks for the `SPDY/3.1+portforward.k8s.io` subprotocol and speaks SPDY inside the
//! WebSocket's binary messages. The apiserver sends the kubelet a SPDY upgrade request,
//! and once the kubelet has switched protocols it accepts the WebSocket and carries the
//! bytes between the two: the SPDY session runs end to end, client to runtime.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::{self, Target};
use super::translate::{is_spdy_upgrade, PROTOCOL_HEADER};
use super::websocket::{self, CLOSE_NORMAL};
use super::ClientAddr;
use crate::http::Body;
use crate::status::{ApiError, ApiResult};

type Req = Request<hyper::body::Incoming>;

/// The prefix of the tunneling subprotocols.
const PREFIX: &str = "SPDY/3.1+";

/// How long one side of the tunnel may stay open after the other ended.
const LINGER: Duration = Duration::from_secs(30);

/// Whether upstream would tunnel this request: a WebSocket offering a `SPDY/3.1+` protocol.
pub(crate) fn wants(headers: &http::HeaderMap) -> bool {
    websocket::is_websocket(headers)
        && websocket::protocols(headers)
            .iter()
            .any(|p| p.starts_with(PREFIX))
}

/// The SPDY protocols inside the tunneling ones (`SPDY/3.1+portforward.k8s.io` gives
/// `portforward.k8s.io`).
fn spdy_protocols(headers: &http::HeaderMap) -> Vec<String> {
    websocket::protocols(headers)
        .iter()
        .filter(|p| p.ends_with(".k8s.io"))
        .filter_map(|p| p.strip_prefix(PREFIX))
        .map(str::to_string)
        .collect()
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(crate::http::full(format!("{message}\n")))
        .unwrap_or_else(|_| Response::new(crate::http::full(Bytes::new())))
}

pub(crate) async fn serve(
    target: Target,
    path_and_query: String,
    mut req: Req,
) -> ApiResult<Response<Body>> {
    let protocols = spdy_protocols(req.headers());
    if protocols.is_empty() {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: no tunneling spdy protocols provided",
        ));
    }
    // The handshake must be one the WebSocket side can complete before the kubelet is asked.
    if let Err(e) = websocket::accept(req.method(), req.headers(), None) {
        return Ok(e.response());
    }
    let client_addr: Option<SocketAddr> = req.extensions().get::<ClientAddr>().map(|a| a.0);
    let mut headers = req.headers().clone();
    for h in [
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::UPGRADE,
        header::CONNECTION,
        header::AUTHORIZATION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::HOST,
    ] {
        headers.remove(h);
    }
    headers.remove(PROTOCOL_HEADER);
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::UPGRADE,
        HeaderValue::from_static(super::spdy::SPDY_31),
    );
    for p in &protocols {
        if let Ok(v) = HeaderValue::from_str(p) {
            headers.append(PROTOCOL_HEADER, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&target.authority()) {
        headers.insert(header::HOST, v);
    }
    super::forward::append_forwarded_for(&mut headers, client_addr);
    let mut out = Request::builder()
        .method(Method::POST)
        .uri(&path_and_query)
        .body(client::empty_body())
        .map_err(|e| ApiError::bad_request(format!("invalid proxy request: {e}")))?;
    *out.headers_mut() = headers;
    let mut send = client::connect(&target)
        .await
        .map_err(|e| ApiError::new(500, "", format!("error dialing backend: {e}")))?;
    let mut resp = send
        .send_request(out)
        .await
        .map_err(|e| ApiError::new(500, "", format!("error dialing backend: {e}")))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Anything but an upgrade goes back as the kubelet answered it.
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(parts, super::forward::relay(body)));
    }
    if !is_spdy_upgrade(resp.status(), resp.headers()) {
        return Ok(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unable to upgrade: missing upgrade headers in response",
        ));
    }
    let chosen = resp
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("{PREFIX}{p}"));
    let accepted = match websocket::accept(req.method(), req.headers(), chosen.as_deref()) {
        Ok(r) => r,
        Err(e) => return Ok(e.response()),
    };
    let backend = hyper::upgrade::on(&mut resp);
    let client = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match tokio::join!(client, backend) {
            (Ok(c), Ok(b)) => carry(TokioIo::new(c), TokioIo::new(b)).await,
            (Err(e), _) | (_, Err(e)) => tracing::debug!("port-forward tunnel upgrade: {e}"),
        }
    });
    Ok(accepted)
}

/// WebSocket message payloads to the kubelet, the kubelet's bytes back as messages.
async fn carry<C, B>(client: C, backend: B)
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    B: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut ws_in, ws_out, _) = websocket::split(client);
    let (mut from_backend, mut to_backend) = tokio::io::split(backend);
    let up = async move {
        while let Some(m) = ws_in.next().await {
            if to_backend.write_all(&m).await.is_err() || to_backend.flush().await.is_err() {
                break;
            }
        }
        let _ = to_backend.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_backend.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_out
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        ws_out.close(CLOSE_NORMAL).await;
    };
    let (mut up, mut down) = (Box::pin(up), Box::pin(down));
    tokio::select! {
        _ = &mut up => { let _ = tokio::time::timeout(LINGER, down).await; }
        _ = &mut down => { let _ = tokio::time::timeout(LINGER, up).await; }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunneled_protocols() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("SPDY/3.1+portforward.k8s.io, other"),
        );
        assert!(wants(&h));
        assert_eq!(spdy_protocols(&h), ["portforward.k8s.io"]);
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("SPDY/3.1+nothing"),
        );
        assert!(wants(&h));
        assert!(spdy_protocols(&h).is_empty());
    }
}
