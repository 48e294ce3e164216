//! exec and attach for WebSocket clients, as upstream's StreamTranslatorHandler (1.30+):
//! the apiserver accepts the client's WebSocket with the `v5.channel.k8s.io` subprotocol
//! and speaks SPDY (remotecommand v4, or older) to the kubelet, which passes it on to the
//! runtime's streaming server unchanged.
//!
//! On the WebSocket every message starts with its channel: 0 stdin, 1 stdout, 2 stderr,
//! 3 the error channel (a `Status` at the end), 4 terminal resizes, and with v5 255, the
//! client's half-close of a channel (`[255, channel]`). On the SPDY side each of these is
//! a stream the client opens, named by its `streamType` header.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::client::{self, OutBody, Target};
use super::spdy::{self, Connection, StreamReader, StreamWriter};
use super::websocket::{self, CLOSE_NORMAL};
use crate::http::Body;
use crate::status::ApiResult;

type Req = Request<hyper::body::Incoming>;

/// The only WebSocket subprotocol translated: v4 plus the CLOSE signal.
pub(crate) const V5: &str = "v5.channel.k8s.io";

/// What the SPDY side offers the kubelet, newest first, as client-go's SPDY executor.
const SPDY_PROTOCOLS: &[&str] = &[
    V5,
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The header naming the negotiated streaming protocol.
pub(crate) const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How much of the error stream is kept.
const MAX_ERROR: usize = 64 * 1024;

/// How long the server waits, after its final status and close frame, for the client to
/// read what is left and close (upstream's finishTimeout).
const FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Which streams the client asked for.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Whether upstream would translate this request: a WebSocket offering v5.
pub(crate) fn wants(headers: &HeaderMap) -> bool {
    websocket::is_websocket(headers) && websocket::protocols(headers).iter().any(|p| p == V5)
}

/// Accepts the WebSocket and runs the session behind it.
pub(crate) async fn serve(
    target: Target,
    path_and_query: String,
    opts: Options,
    mut req: Req,
) -> ApiResult<Response<Body>> {
    let resp = match websocket::accept(req.method(), req.headers(), Some(V5)) {
        Ok(r) => r,
        Err(e) => return Ok(e.response()),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => session(TokioIo::new(io), target, path_and_query, opts).await,
            Err(e) => tracing::debug!("exec websocket upgrade: {e}"),
        }
    });
    Ok(resp)
}

/// How a remote command ended, as client-go's SPDY executor reports it.
#[derive(Debug, PartialEq)]
enum Outcome {
    Success,
    /// The command exited non-zero.
    Exit {
        code: u8,
        message: String,
    },
    /// A `Status` the kubelet answered instead of upgrading.
    Status(Value),
    /// Anything else: becomes an InternalError.
    Error(String),
}

/// The status the error channel carries at the end, as upstream's translator writes it.
fn final_status(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Success => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exit { code, message } => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: {message}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Status(mut s) => {
            if let Some(o) = s.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            s
        }
        Outcome::Error(e) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {e}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": e}]},
            "code": 500,
        }),
    }
}

/// What the client sends, by channel.
enum Input {
    Stdin(Bytes),
    StdinClosed,
    Resize(Bytes),
    ResizeClosed,
}

fn on_channel(channel: u8, data: &[u8]) -> Bytes {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    Bytes::from(m)
}

async fn session<S>(io: S, target: Target, path_and_query: String, opts: Options)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut ws_in, ws_out, _) = websocket::split(io);
    // An empty message on the lowest channel the client reads tells it the connection is up.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    if ws_out.send(Bytes::from(vec![first])).await.is_err() {
        return;
    }
    let (input_tx, input_rx) = mpsc::channel(16);
    let (gone_tx, mut gone) = watch::channel(false);
    let reader = tokio::spawn(async move {
        while let Some(msg) = ws_in.next().await {
            let Some((&channel, data)) = msg.split_first() else {
                continue;
            };
            let input = match (channel, data) {
                (STDIN, _) => Input::Stdin(msg.slice(1..)),
                (RESIZE, _) => Input::Resize(msg.slice(1..)),
                (CLOSE, [STDIN]) => Input::StdinClosed,
                (CLOSE, [RESIZE]) => Input::ResizeClosed,
                _ => continue,
            };
            // Once the command is over nobody reads this: the loop only waits for the close.
            let _ = input_tx.send(input).await;
        }
        let _ = gone_tx.send(true);
    });
    let outcome = tokio::select! {
        o = remote_command(&target, &path_and_query, opts, input_rx, ws_out.clone()) => Some(o),
        // The client went away: nobody is left to tell.
        _ = gone.wait_for(|g| *g) => None,
    };
    if let Some(outcome) = outcome {
        let status = final_status(outcome);
        let _ = ws_out
            .send(on_channel(ERROR, status.to_string().as_bytes()))
            .await;
        ws_out.close(CLOSE_NORMAL).await;
        let _ = tokio::time::timeout(FINISH_TIMEOUT, gone.wait_for(|g| *g)).await;
    }
    reader.abort();
}

/// The SPDY upgrade to the kubelet: the connection and the protocol it chose.
async fn connect(target: &Target, path_and_query: &str) -> Result<(Connection, String), Outcome> {
    let mut send = client::connect::<OutBody>(target)
        .await
        .map_err(|e| Outcome::Error(format!("error dialing backend: {e}")))?;
    let mut req = Request::post(path_and_query)
        .header(header::HOST, target.authority())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, spdy::SPDY_31)
        .body(client::empty_body())
        .map_err(|e| Outcome::Error(e.to_string()))?;
    for p in SPDY_PROTOCOLS {
        req.headers_mut()
            .append(PROTOCOL_HEADER, HeaderValue::from_static(p));
    }
    let mut resp = send
        .send_request(req)
        .await
        .map_err(|e| Outcome::Error(format!("error sending request: {e}")))?;
    if !is_spdy_upgrade(resp.status(), resp.headers()) {
        let body = super::forward::read_body(resp.into_body(), MAX_ERROR).await;
        return Err(refusal(&body));
    }
    let protocol = resp
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    let io = hyper::upgrade::on(&mut resp)
        .await
        .map_err(|e| Outcome::Error(format!("error upgrading connection: {e}")))?;
    let conn = Connection::client(TokioIo::new(io)).map_err(|e| Outcome::Error(e.to_string()))?;
    Ok((conn, protocol))
}

/// A 101 to SPDY/3.1, as client-go's SpdyRoundTripper checks it.
pub(crate) fn is_spdy_upgrade(status: StatusCode, headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(token))
    };
    status == StatusCode::SWITCHING_PROTOCOLS
        && has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "spdy/3.1")
}

/// The error for a refused upgrade: the Status in the body, or its text.
fn refusal(body: &[u8]) -> Outcome {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if v.get("kind").and_then(Value::as_str) == Some("Status") {
            return Outcome::Status(v);
        }
    }
    Outcome::Error(format!(
        "unable to upgrade connection: {}",
        String::from_utf8_lossy(body).trim()
    ))
}

/// The protocol's version number; 1 for `channel.k8s.io` or none.
fn version(protocol: &str) -> u8 {
    match protocol {
        "v5.channel.k8s.io" => 5,
        "v4.channel.k8s.io" => 4,
        "v3.channel.k8s.io" => 3,
        "v2.channel.k8s.io" => 2,
        _ => 1,
    }
}

/// Reads the error stream's message as client-go's decoders do for the protocol.
fn decode_error(version: u8, message: &[u8]) -> Outcome {
    if message.is_empty() {
        return Outcome::Success;
    }
    let text = String::from_utf8_lossy(message);
    if version < 4 {
        return Outcome::Error(format!("error executing remote command: {text}"));
    }
    let status: Value = match serde_json::from_slice(message) {
        Ok(v) => v,
        Err(e) => {
            return Outcome::Error(format!("error stream protocol error: {e} in {text:?}"));
        }
    };
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match str_of(&status, "status").as_str() {
        "Success" => Outcome::Success,
        "Failure" if str_of(&status, "reason") == "NonZeroExitCode" => {
            let Some(details) = status.get("details").filter(|d| !d.is_null()) else {
                return Outcome::Error("error stream protocol error: details must be set".into());
            };
            let causes = details
                .get("causes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match causes.iter().find(|c| str_of(c, "reason") == "ExitCode") {
                Some(c) => match str_of(c, "message").parse::<u8>() {
                    Ok(code) => Outcome::Exit {
                        code,
                        message: format!(
                            "command terminated with non-zero exit code: {}",
                            str_of(&status, "message")
                        ),
                    },
                    Err(_) => Outcome::Error(format!(
                        "error stream protocol error: invalid exit code value {:?}",
                        str_of(c, "message")
                    )),
                },
                None => {
                    Outcome::Error("error stream protocol error: no ExitCode cause given".into())
                }
            }
        }
        "Failure" => Outcome::Error(str_of(&status, "message")),
        _ => Outcome::Error("error stream protocol error: unknown error".into()),
    }
}

fn stream_type(kind: &str) -> spdy::Headers {
    vec![("streamType".into(), kind.into())]
}

/// Runs the command over SPDY, wiring the client's channels to the streams.
async fn remote_command(
    target: &Target,
    path_and_query: &str,
    opts: Options,
    mut input: mpsc::Receiver<Input>,
    ws: websocket::Writer,
) -> Outcome {
    let (conn, protocol) = match connect(target, path_and_query).await {
        Ok(c) => c,
        Err(o) => return o,
    };
    let version = version(&protocol);
    let open = |kind: &'static str| {
        let conn = &conn;
        async move { conn.open_stream(stream_type(kind)).await }
    };
    // Opened in client-go's order; each waits for the kubelet's reply.
    let streams = async {
        let error = open("error").await?;
        let stdin = match opts.stdin {
            true => Some(open("stdin").await?),
            false => None,
        };
        let stdout = match opts.stdout {
            true => Some(open("stdout").await?),
            false => None,
        };
        let stderr = match opts.stderr && !opts.tty {
            true => Some(open("stderr").await?),
            false => None,
        };
        let resize = match opts.tty && version >= 3 {
            true => Some(open("resize").await?),
            false => None,
        };
        Ok::<_, String>((error, stdin, stdout, stderr, resize))
    };
    let (error, stdin, stdout, stderr, resize) = match streams.await {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let mut error = error.reader;
    let stdin: Option<StreamWriter> = stdin.map(|s| s.writer);
    let resize: Option<StreamWriter> = resize.map(|s| s.writer);
    let pump_input = async {
        let (mut stdin, mut resize) = (stdin, resize);
        while let Some(i) = input.recv().await {
            match i {
                Input::Stdin(data) => {
                    if let Some(s) = &stdin {
                        if s.write(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Input::Resize(data) => {
                    if let Some(r) = &resize {
                        if r.write(&data).await.is_err() {
                            resize = None;
                        }
                    }
                }
                Input::StdinClosed => {
                    if let Some(s) = stdin.take() {
                        s.close().await;
                    }
                }
                Input::ResizeClosed => {
                    if let Some(r) = resize.take() {
                        r.close().await;
                    }
                }
            }
        }
        // The client's reader is gone; its stdin ends with it.
        if let Some(s) = stdin.take() {
            s.close().await;
        }
        std::future::pending::<()>().await
    };
    let copy_out = |reader: Option<StreamReader>, channel: u8| {
        let ws = ws.clone();
        async move {
            let Some(mut reader) = reader else {
                return;
            };
            while let Some(data) = reader.read().await {
                if ws.send(on_channel(channel, &data)).await.is_err() {
                    break;
                }
            }
        }
    };
    let finished = async {
        let (_, _, message) = tokio::join!(
            copy_out(stdout.map(|s| s.reader), STDOUT),
            copy_out(stderr.map(|s| s.reader), STDERR),
            error.read_to_end(MAX_ERROR),
        );
        decode_error(version, &message)
    };
    tokio::select! {
        outcome = finished => outcome,
        // Never taken: the input pump waits forever once the client's reader is gone.
        _ = pump_input => Outcome::Error("input ended".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_errors_read_as_client_go_reads_them() {
        assert_eq!(decode_error(4, b""), Outcome::Success);
        assert_eq!(
            decode_error(4, br#"{"metadata":{},"status":"Success"}"#),
            Outcome::Success
        );
        let exit = br#"{"metadata":{},"status":"Failure","message":"error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(
            decode_error(4, exit),
            Outcome::Exit {
                code: 3,
                message: "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3".into()
            }
        );
        assert_eq!(
            decode_error(4, br#"{"status":"Failure","message":"boom"}"#),
            Outcome::Error("boom".into())
        );
        assert_eq!(
            decode_error(4, br#"{"status":"Failure","reason":"NonZeroExitCode"}"#),
            Outcome::Error("error stream protocol error: details must be set".into())
        );
        assert_eq!(
            decode_error(2, b"oops"),
            Outcome::Error("error executing remote command: oops".into())
        );
        assert!(
            matches!(decode_error(4, b"{"), Outcome::Error(e) if e.starts_with("error stream protocol error: "))
        );
    }

    #[test]
    fn final_statuses_are_upstreams() {
        assert_eq!(
            final_status(Outcome::Success).to_string(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let s = final_status(Outcome::Exit {
            code: 3,
            message: "command terminated with non-zero exit code: x".into(),
        });
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        let s = final_status(refusal(b"container not found (\"x\")\n"));
        assert_eq!(
            s["message"],
            "Internal error occurred: unable to upgrade connection: container not found (\"x\")"
        );
        assert_eq!(s["reason"], "InternalError");
        assert_eq!(s["code"], 500);
        let s = final_status(refusal(
            br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no","reason":"Forbidden","code":403}"#,
        ));
        assert_eq!(s["reason"], "Forbidden");
        assert!(s.get("kind").is_none());
    }

    #[test]
    fn only_v5_websockets_are_translated() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert!(!wants(&h));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        assert!(wants(&h));
        h.insert("upgrade", HeaderValue::from_static("SPDY/3.1"));
        assert!(!wants(&h));
        let mut up = HeaderMap::new();
        up.insert("connection", HeaderValue::from_static("Upgrade"));
        up.insert("upgrade", HeaderValue::from_static("SPDY/3.1"));
        assert!(is_spdy_upgrade(StatusCode::SWITCHING_PROTOCOLS, &up));
        assert!(!is_spdy_upgrade(StatusCode::OK, &up));
    }
}
