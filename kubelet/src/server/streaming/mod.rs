//! The streaming endpoints: `/exec`, `/attach`, `/portForward` and `/run`, as upstream's
//! kubelet server. For the first three the kubelet asks the runtime for a streaming URL
//! (CRI `Exec`, `Attach`, `PortForward`; containerd serves them on its own streaming
//! server) and proxies the client's upgrade request there: the SPDY or WebSocket session
//! then runs between the client (the apiserver) and the runtime, byte for byte. `/run`
//! runs a command to completion (CRI `ExecSync`) and answers its output.
//!
//! | path | methods |
//! |---|---|
//! | `/exec/{namespace}/{pod}[/{uid}]/{container}?command=..&input=1&output=1&error=1&tty=1` | GET, POST |
//! | `/attach/{namespace}/{pod}[/{uid}]/{container}?input=1&output=1&error=1&tty=1` | GET, POST |
//! | `/portForward/{namespace}/{pod}[/{uid}]` (`?port=` for WebSocket clients) | GET, POST |
//! | `/run/{namespace}/{pod}[/{uid}]/{container}?cmd=..` | POST |

mod exec;
mod port_forward;
mod proxy;
mod run;

use http::{header, Method, StatusCode};

use super::{text, Body, Ctx, Req};

/// Which streams a remote command has, as upstream's remotecommand `Options`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Why a streaming request could not start. Runtime errors keep their gRPC code, which
/// picks the HTTP status as upstream's `streaming.WriteError` does (NotFound 404,
/// ResourceExhausted 429, anything else 500); the message is the body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StreamError {
    pub code: Option<tonic::Code>,
    pub message: String,
}

impl StreamError {
    /// A kubelet-side error (no container, no pod): a 500.
    pub fn other(message: impl Into<String>) -> StreamError {
        StreamError {
            code: None,
            message: message.into(),
        }
    }

    /// A runtime error, worded as grpc-go prints it.
    pub fn runtime(status: &tonic::Status) -> StreamError {
        StreamError {
            code: Some(status.code()),
            message: crate::prober::gofmt::grpc_error(status),
        }
    }

    /// What a node without streaming answers.
    pub fn unsupported(what: &str) -> StreamError {
        StreamError::runtime(&tonic::Status::unimplemented(format!(
            "{what} is not supported by this node"
        )))
    }

    fn response(&self) -> http::Response<Body> {
        let status = match self.code {
            Some(tonic::Code::NotFound) => StatusCode::NOT_FOUND,
            Some(tonic::Code::ResourceExhausted) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut resp = text(status, &self.message);
        if status == StatusCode::TOO_MANY_REQUESTS {
            // The streaming server's request cache lives a minute.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("60"));
        }
        resp
    }
}

/// The path's segments after the endpoint's name, percent-decoded.
fn segments<B>(req: &http::Request<B>, endpoint: &str) -> Vec<String> {
    req.uri()
        .path()
        .trim_start_matches('/')
        .strip_prefix(endpoint)
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// A pod's path: namespace, name, the optional UID and (for commands) the container.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    namespace: String,
    pod: String,
    uid: Option<String>,
    container: String,
}

impl Target {
    /// `{namespace}/{pod}[/{uid}]/{container}`.
    fn with_container(segments: Vec<String>) -> Option<Target> {
        let (namespace, pod, uid, container) = match <[String; 3]>::try_from(segments) {
            Ok([n, p, c]) => (n, p, None, c),
            Err(s) => {
                let [n, p, u, c] = <[String; 4]>::try_from(s).ok()?;
                (n, p, Some(u), c)
            }
        };
        Some(Target {
            namespace,
            pod,
            uid,
            container,
        })
    }

    /// `{namespace}/{pod}[/{uid}]`.
    fn without_container(segments: Vec<String>) -> Option<Target> {
        let (namespace, pod, uid) = match <[String; 2]>::try_from(segments) {
            Ok([n, p]) => (n, p, None),
            Err(s) => {
                let [n, p, u] = <[String; 3]>::try_from(s).ok()?;
                (n, p, Some(u))
            }
        };
        Some(Target {
            namespace,
            pod,
            uid,
            container: String::new(),
        })
    }
}

/// Every value of a query parameter.
fn query_values<B>(req: &http::Request<B>, key: &str) -> Vec<String> {
    req.uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The first value of a query parameter, as Go's `FormValue` (empty when absent).
fn query_value<B>(req: &http::Request<B>, key: &str) -> String {
    query_values(req, key)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Upstream's remotecommand `NewOptions`: `1` turns a stream on; a TTY has no stderr.
fn stream_options<B>(req: &http::Request<B>) -> Result<StreamOptions, String> {
    let on = |key: &str| query_value(req, key) == "1";
    let tty = on("tty");
    let opts = StreamOptions {
        stdin: on("input"),
        stdout: on("output"),
        stderr: on("error") && !tty,
        tty,
    };
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    Ok(opts)
}

fn method_not_allowed(allow: &'static str) -> http::Response<Body> {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    resp
}

fn page_not_found() -> http::Response<Body> {
    text(StatusCode::NOT_FOUND, "404: Page Not Found")
}

/// Serves `/{endpoint}/...` for one of the streaming endpoints.
pub(super) async fn serve(ctx: &Ctx, req: Req, endpoint: &str) -> http::Response<Body> {
    let streaming_method = matches!(*req.method(), Method::GET | Method::POST);
    match endpoint {
        "exec" | "attach" if !streaming_method => method_not_allowed("GET, POST"),
        "portForward" if !streaming_method => method_not_allowed("GET, POST"),
        "run" if req.method() != Method::POST => method_not_allowed("POST"),
        "exec" => exec::exec(ctx, req).await,
        "attach" => exec::attach(ctx, req).await,
        "portForward" => port_forward::serve(ctx, req).await,
        "run" => run::serve(ctx, req).await,
        _ => page_not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> http::Request<()> {
        http::Request::get(uri).body(()).unwrap()
    }

    #[test]
    fn options_and_paths_as_upstream_reads_them() {
        let reqs: Vec<_> = [
            "/exec/ns/web/app?command=sh&command=-c&command=echo%20hi&output=1&error=1",
            "/exec/ns/web/uid-1/app?input=1&output=1&error=1&tty=1",
            "/exec/ns/web/app?output=true",
            "/portForward/ns/web",
        ]
        .into_iter()
        .map(req)
        .collect();
        let opts = stream_options(&reqs[0]).unwrap();
        assert_eq!(
            opts,
            StreamOptions {
                stdin: false,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        assert_eq!(query_values(&reqs[0], "command"), ["sh", "-c", "echo hi"]);
        assert_eq!(
            Target::with_container(segments(&reqs[0], "exec")),
            Some(Target {
                namespace: "ns".into(),
                pod: "web".into(),
                uid: None,
                container: "app".into()
            })
        );
        // A TTY has no separate stderr.
        let opts = stream_options(&reqs[1]).unwrap();
        assert!(opts.tty && opts.stdin && opts.stdout && !opts.stderr);
        assert_eq!(
            Target::with_container(segments(&reqs[1], "exec")).and_then(|t| t.uid),
            Some("uid-1".into())
        );
        assert_eq!(
            stream_options(&reqs[2]).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        let t = Target::without_container(segments(&reqs[3], "portForward")).unwrap();
        assert_eq!((t.namespace.as_str(), t.pod.as_str()), ("ns", "web"));
        assert!(Target::with_container(vec!["a".into()]).is_none());
    }

    #[test]
    fn runtime_errors_pick_the_status() {
        let e = StreamError::runtime(&tonic::Status::not_found("no such container"));
        assert_eq!(
            e.message,
            "rpc error: code = NotFound desc = no such container"
        );
        assert_eq!(e.response().status(), StatusCode::NOT_FOUND);
        let e = StreamError::runtime(&tonic::Status::resource_exhausted("busy"));
        let resp = e.response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], "60");
        let e = StreamError::other("container not found (\"x\")");
        assert_eq!(e.response().status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            StreamError::unsupported("exec").message,
            "rpc error: code = Unimplemented desc = exec is not supported by this node"
        );
    }
}
