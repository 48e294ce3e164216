//! The subresources that reach past the apiserver: `pods/log` (streamed from the pod's
//! kubelet), `nodes/proxy`, `pods/proxy` and `services/proxy` (any method, bodies streamed,
//! upgrades joined after the 101), and `pods/exec`, `pods/attach`, `pods/portforward`
//! (upgrade requests forwarded to the kubelet's `/exec`, `/attach` and `/portForward`).
//!
//! Streaming clients speak SPDY or WebSocket. SPDY requests and the older WebSocket
//! subprotocols are joined to the kubelet byte for byte; as upstream 1.30+ does,
//! `v5.channel.k8s.io` WebSockets for exec and attach are translated to SPDY here
//! ([`translate`]), and port-forward's `SPDY/3.1+portforward.k8s.io` WebSockets carry the
//! client's SPDY session to the kubelet ([`tunnel`]). The kubelet only ever sees SPDY from
//! kubectl 1.30+.

mod client;
mod forward;
mod locate;
mod log;
mod spdy;
mod translate;
mod tunnel;
mod websocket;

use std::net::SocketAddr;

use http::{Request, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

pub use client::{KubeletClient, KubeletClientConfig, DEFAULT_ADDRESS_TYPES};
use forward::Forward;

use crate::http::Body;
use crate::meta;
use crate::request::ResourceRequest;
use crate::resources::Resource;
use crate::server::App;
use crate::status::{ApiError, ApiResult};

type Req = Request<hyper::body::Incoming>;

/// The address of the client, which the server puts in each request's extensions, for
/// `X-Forwarded-For`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Whether this module serves the subresource.
pub fn handles(subresource: &str) -> bool {
    matches!(
        subresource,
        "log" | "proxy" | "exec" | "attach" | "portforward"
    )
}

/// What a path segment keeps unescaped: Go's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Go's `path.Clean` for rooted paths.
pub(crate) fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Splits the raw request path after `skip` segments: the proxy's prefix and the rest.
fn split_after_segments(path: &str, skip: usize) -> (&str, &str) {
    let bytes = path.as_bytes();
    let (mut i, mut seen) = (0, 0);
    while i < bytes.len() && seen < skip {
        while i < bytes.len() && bytes[i] == b'/' {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        while i < bytes.len() && bytes[i] != b'/' {
            i += 1;
        }
        seen += 1;
    }
    path.split_at(i)
}

/// The proxy's prefix and the backend path (`path.Join` of the rest: empty stays empty).
fn proxy_paths(req: &Req, info: &ResourceRequest) -> (String, String) {
    let skip = if info.group.is_empty() { 2 } else { 3 }
        + if info.namespace.is_some() { 2 } else { 0 }
        + 3;
    let (prefix, rest) = split_after_segments(req.uri().path(), skip);
    let path = if rest.is_empty() {
        String::new()
    } else {
        clean_path(rest)
    };
    (prefix.to_string(), path)
}

pub async fn serve(
    app: &App,
    req: Req,
    res: &Resource,
    namespace: Option<&str>,
    info: &ResourceRequest,
    query: &[(String, String)],
) -> ApiResult<Response<Body>> {
    let name = info.name.as_deref().unwrap_or("");
    let sub = info.subresource.as_deref().unwrap_or("");
    match (res.group.as_str(), res.plural.as_str(), sub) {
        ("", "pods", "log") => log::serve(app, namespace, name, query).await,
        ("", "pods", "exec" | "attach" | "portforward") => {
            streaming(app, req, namespace, name, sub, query).await
        }
        ("", "pods" | "nodes" | "services", "proxy") => {
            let target = match res.plural.as_str() {
                "pods" => locate::pod(app, namespace, name).await?,
                "nodes" => locate::node(app, name).await?,
                _ => locate::service(app, namespace, name).await?,
            };
            let (prefix, path) = proxy_paths(&req, info);
            forward::forward(
                Forward {
                    target,
                    path,
                    wrap: true,
                    upgrade_required: false,
                    prefix,
                    query: None,
                },
                req,
            )
            .await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

/// Every value of a query key.
fn all<'a>(query: &'a [(String, String)], key: &'a str) -> impl Iterator<Item = &'a str> {
    query
        .iter()
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// exec, attach and port-forward: upgrade requests to the kubelet, with the options as
/// upstream's streamLocation and PortForwardLocation pass them.
async fn streaming(
    app: &App,
    req: Req,
    namespace: Option<&str>,
    name: &str,
    sub: &str,
    query: &[(String, String)],
) -> ApiResult<Response<Body>> {
    let pods = app
        .table
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = app.registry.get(&pods, namespace, name, None).await?;
    let (path, params) = stream_request(&pod, sub, query)?;
    let node = meta::path(&pod, "spec.nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let target = locate::kubelet(app, node, false).await?;
    let path_and_query = if params.is_empty() {
        path.clone()
    } else {
        format!("{path}?{params}")
    };
    if sub == "portforward" && tunnel::wants(req.headers()) {
        return tunnel::serve(target, path_and_query, req).await;
    }
    if sub != "portforward" && translate::wants(req.headers()) {
        let opts = translate::Options {
            stdin: log::query_bool(query, "stdin"),
            stdout: log::query_bool(query, "stdout"),
            stderr: log::query_bool(query, "stderr"),
            tty: log::query_bool(query, "tty"),
        };
        return translate::serve(target, path_and_query, opts, req).await;
    }
    forward::forward(
        Forward {
            target,
            path,
            wrap: false,
            upgrade_required: true,
            prefix: String::new(),
            query: Some(params),
        },
        req,
    )
    .await
}

/// The kubelet path and query for exec, attach or port-forward of `pod`.
fn stream_request(
    pod: &Value,
    sub: &str,
    query: &[(String, String)],
) -> ApiResult<(String, String)> {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    let path = if sub == "portforward" {
        let mut ports = Vec::new();
        for p in all(query, "ports") {
            for one in p.split(',').filter(|s| !s.is_empty()) {
                let n: i32 = one.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "strconv.ParseInt: parsing {one:?}: invalid syntax"
                    ))
                })?;
                ports.push(n.to_string());
            }
        }
        if !ports.is_empty() {
            ser.append_pair("port", &ports.join(","));
        }
        format!(
            "/portForward/{}/{}",
            segment(meta::namespace(pod)),
            segment(meta::name(pod))
        )
    } else {
        let wanted = all(query, "container").next().unwrap_or("");
        let container = log::choose_container(pod, wanted)?;
        // Keys in the order Go's url.Values.Encode writes them.
        if sub == "exec" {
            for c in all(query, "command") {
                ser.append_pair("command", c);
            }
        }
        for (param, key) in [
            ("error", "stderr"),
            ("input", "stdin"),
            ("output", "stdout"),
            ("tty", "tty"),
        ] {
            if log::query_bool(query, key) {
                ser.append_pair(param, "1");
            }
        }
        format!(
            "/{sub}/{}/{}/{}",
            segment(meta::namespace(pod)),
            segment(meta::name(pod)),
            segment(&container)
        )
    };
    Ok((path, ser.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a//b/./c/../d/"), "/a/b/d");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(
            split_after_segments("/api/v1/namespaces/ns/pods/p/proxy/a/b/", 7),
            ("/api/v1/namespaces/ns/pods/p/proxy", "/a/b/")
        );
        assert_eq!(
            split_after_segments("/api/v1/nodes/n/proxy", 5),
            ("/api/v1/nodes/n/proxy", "")
        );
        assert_eq!(segment("a b/c-d.e"), "a%20b%2Fc-d.e");
    }
}
