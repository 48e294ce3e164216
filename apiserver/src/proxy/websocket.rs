//! The server side of WebSocket (RFC 6455), as much as the streaming subresources need: the
//! opening handshake on a hyper request, and a connection split into a reader, which answers
//! pings and close frames itself, and a cloneable writer fed through a task.

use std::io;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::http::Body;

/// RFC 6455's key suffix for `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest message accepted from a client: far above what client-go sends (32 KiB
/// plus a channel byte), low enough that a client cannot make the server hold much.
const MAX_MESSAGE: usize = 16 << 20;

/// Normal closure.
pub(crate) const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Whether the request asks for a WebSocket, as upstream's `wsstream.IsWebSocketRequest`:
/// `Upgrade: websocket` and `upgrade` among the `Connection` tokens.
pub(crate) fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    upgrade
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The subprotocols the client offers, in its order.
pub(crate) fn protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `Sec-WebSocket-Accept` for a client's key.
fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// A refused handshake: the status and the text gorilla/websocket answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandshakeError {
    pub status: StatusCode,
    pub message: String,
}

impl HandshakeError {
    /// The plain-text answer, as Go's `http.Error`.
    pub fn response(&self) -> Response<Body> {
        Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-content-type-options", "nosniff")
            .body(crate::http::full(format!("{}\n", self.message)))
            .unwrap_or_else(|_| Response::new(crate::http::full(Bytes::new())))
    }
}

/// Checks the opening handshake and builds the 101 that completes it, naming `protocol`
/// when one was chosen.
pub(crate) fn accept(
    method: &http::Method,
    headers: &HeaderMap,
    protocol: Option<&str>,
) -> Result<Response<Body>, HandshakeError> {
    let bad = |status: StatusCode, message: &str| HandshakeError {
        status,
        message: format!("websocket: {message}"),
    };
    if !is_websocket(headers) {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header",
        ));
    }
    if method != http::Method::GET {
        return Err(bad(
            StatusCode::METHOD_NOT_ALLOWED,
            "the client is not using the websocket protocol: request method is not GET",
        ));
    }
    let version_ok = headers
        .get_all(header::SEC_WEBSOCKET_VERSION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "13");
    if !version_ok {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "unsupported version: 13 not found in 'Sec-Websocket-Version' header",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            bad(
                StatusCode::BAD_REQUEST,
                "not a websocket handshake: 'Sec-WebSocket-Key' header is missing or blank",
            )
        })?;
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key(key));
    if let Some(p) = protocol {
        if let Ok(v) = HeaderValue::from_str(p) {
            resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    resp.body(crate::http::full(Bytes::new()))
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

/// What the writer task sends.
enum Outgoing {
    Message(Bytes),
    Pong(Bytes),
    Close(u16),
}

/// Sends messages on the connection; clones share one writer task. Every message is one
/// binary frame.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Outgoing>,
}

impl Writer {
    /// Sends one binary message; fails once the connection is closing or gone.
    pub async fn send(&self, message: Bytes) -> io::Result<()> {
        self.tx
            .send(Outgoing::Message(message))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed"))
    }

    /// Starts the closing handshake; nothing is sent after the close frame.
    pub async fn close(&self, code: u16) {
        let _ = self.tx.send(Outgoing::Close(code)).await;
    }
}

/// Reads messages; answers pings, and ends at the peer's close frame (echoing it when the
/// server had not started closing) or at the end of the connection.
pub(crate) struct Reader<R> {
    io: BufReader<R>,
    writer: Writer,
    done: bool,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// The next data message (binary or text), None once the connection is closed.
    pub async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        match self.read_message().await {
            Ok(Some(m)) => Some(m),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                tracing::debug!("websocket read: {e}");
                let code = if e.kind() == io::ErrorKind::InvalidData {
                    if e.to_string().contains("too big") {
                        CLOSE_TOO_BIG
                    } else {
                        CLOSE_PROTOCOL_ERROR
                    }
                } else {
                    CLOSE_NORMAL
                };
                self.writer.close(code).await;
                self.done = true;
                None
            }
        }
    }

    async fn read_message(&mut self) -> io::Result<Option<Bytes>> {
        let mut message: Option<BytesMut> = None;
        loop {
            let Some((fin, opcode, payload)) = read_frame(&mut self.io).await? else {
                return Ok(None);
            };
            match opcode {
                OP_PING => {
                    let _ = self.writer.tx.send(Outgoing::Pong(payload)).await;
                }
                OP_PONG => {}
                OP_CLOSE => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        CLOSE_NORMAL
                    };
                    // Echoed unless the server sent its own already (the writer ignores a
                    // second close).
                    self.writer.close(code).await;
                    return Ok(None);
                }
                OP_TEXT | OP_BINARY => {
                    if message.is_some() {
                        return Err(invalid("new message before the last one ended"));
                    }
                    if fin {
                        return Ok(Some(payload));
                    }
                    message = Some(BytesMut::from(&payload[..]));
                }
                OP_CONTINUATION => {
                    let Some(m) = message.as_mut() else {
                        return Err(invalid("continuation frame without a message"));
                    };
                    if m.len() + payload.len() > MAX_MESSAGE {
                        return Err(invalid("message too big"));
                    }
                    m.extend_from_slice(&payload);
                    if fin {
                        return Ok(message.take().map(BytesMut::freeze));
                    }
                }
                other => return Err(invalid(&format!("unknown opcode {other}"))),
            }
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One frame from a client: fin, opcode and the unmasked payload; None at a clean end of
/// the connection before a frame starts.
async fn read_frame<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<Option<(bool, u8, Bytes)>> {
    let mut head = [0u8; 2];
    match io.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    io.read_exact(&mut head[1..]).await?;
    let fin = head[0] & 0x80 != 0;
    if head[0] & 0x70 != 0 {
        return Err(invalid("reserved bits set without an extension"));
    }
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => u64::from(io.read_u16().await?),
        127 => io.read_u64().await?,
        n => u64::from(n),
    };
    if opcode >= 0x8 && (len > 125 || !fin) {
        return Err(invalid("bad control frame"));
    }
    if !masked {
        return Err(invalid("client frame not masked"));
    }
    if len > MAX_MESSAGE as u64 {
        return Err(invalid("message too big"));
    }
    let mut mask = [0u8; 4];
    io.read_exact(&mut mask).await?;
    let mut payload = vec![0u8; len as usize];
    io.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some((fin, opcode, Bytes::from(payload))))
}

/// A server frame (never masked).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Writes what the writer handles send, until a close frame went out or every handle is
/// gone; then shuts the write side down (the client may still answer the close).
async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::Receiver<Outgoing>,
    closed: watch::Sender<bool>,
) {
    while let Some(out) = rx.recv().await {
        let (bytes, last) = match out {
            Outgoing::Message(m) => (frame(OP_BINARY, &m), false),
            Outgoing::Pong(p) => (frame(OP_PONG, &p), false),
            Outgoing::Close(code) => (frame(OP_CLOSE, &code.to_be_bytes()), true),
        };
        if let Err(e) = async {
            io.write_all(&bytes).await?;
            io.flush().await
        }
        .await
        {
            tracing::debug!("websocket write: {e}");
            break;
        }
        if last {
            break;
        }
    }
    let _ = io.shutdown().await;
    let _ = closed.send(true);
    rx.close();
}

/// Splits an upgraded connection into its reader and writer. The returned watch turns true
/// once the writer has sent its close frame or failed.
pub(crate) fn split<S>(
    io: S,
) -> (
    Reader<tokio::io::ReadHalf<S>>,
    Writer,
    watch::Receiver<bool>,
)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel(16);
    let (closed_tx, closed_rx) = watch::channel(false);
    tokio::spawn(write_loop(write, rx, closed_tx));
    let writer = Writer { tx };
    (
        Reader {
            io: BufReader::with_capacity(64 * 1024, read),
            writer: writer.clone(),
            done: false,
        },
        writer,
        closed_rx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_rfc6455s() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn handshake_checks() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
        );
        assert!(is_websocket(&h));
        assert_eq!(protocols(&h), ["v5.channel.k8s.io", "v4.channel.k8s.io"]);
        let err = accept(&http::Method::GET, &h, None).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("Sec-WebSocket-Key"), "{}", err.message);
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let err = accept(&http::Method::POST, &h, None).unwrap_err();
        assert_eq!(err.status, StatusCode::METHOD_NOT_ALLOWED);
        let resp = accept(&http::Method::GET, &h, Some("v5.channel.k8s.io")).unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            resp.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            resp.headers()["sec-websocket-protocol"],
            "v5.channel.k8s.io"
        );
    }

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn messages_pings_and_close() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (mut reader, writer, mut closed) = split(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let big = vec![7u8; 70_000];
        let mut input = client_frame(false, OP_BINARY, &[1, 2]);
        input.extend(client_frame(true, OP_PING, b"hb"));
        input.extend(client_frame(true, OP_CONTINUATION, &[3]));
        input.extend(client_frame(true, OP_BINARY, &big[..300]));
        input.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        client_write.write_all(&input).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Bytes::from_static(&[1, 2, 3]));
        assert_eq!(reader.next().await.unwrap().len(), 300);
        assert!(reader.next().await.is_none());
        // Nothing goes out after the echoed close, not even a message sent now.
        writer.send(Bytes::from(big.clone())).await.ok();
        closed.wait_for(|c| *c).await.unwrap();
        let mut got = Vec::new();
        client_read.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..4], &[0x8A, 2, b'h', b'b']);
        assert_eq!(&got[4..6], &[0x88, 2]);
        assert_eq!(&got[6..8], &1000u16.to_be_bytes());
        // Nothing after the close frame.
        assert_eq!(got.len(), 8);
    }

    #[tokio::test]
    async fn unmasked_frames_are_refused() {
        let (client, server) = tokio::io::duplex(4096);
        let (mut reader, _writer, _closed) = split(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(&[0x82, 1, 9]).await.unwrap();
        assert!(reader.next().await.is_none());
        let mut got = [0u8; 4];
        client_read.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x88, 2, 0x03, 0xEA]);
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(frame(OP_BINARY, &[1])[..2], [0x82, 1]);
        assert_eq!(frame(OP_BINARY, &[0; 200])[..4], [0x82, 126, 0, 200]);
        assert_eq!(frame(OP_BINARY, &[0; 70_000])[..2], [0x82, 127]);
    }
}
