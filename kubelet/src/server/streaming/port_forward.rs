//! `/portForward`: upstream's getPortForward. SPDY clients name the ports in their
//! streams' headers; WebSocket clients in the `port` query parameter, which must be there.

use http::StatusCode;

use super::{page_not_found, proxy, query_values, segments, Target};
use crate::server::{text, Body, Ctx, Req};

/// Upstream's portforward `NewV4Options`: the ports of a WebSocket request.
fn websocket_ports(values: &[String]) -> Result<Vec<i32>, String> {
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p.parse().map_err(|e: std::num::ParseIntError| {
                let why = match e.kind() {
                    std::num::IntErrorKind::PosOverflow => "value out of range",
                    _ => "invalid syntax",
                };
                format!(
                    "unable to parse {value:?} as a port: strconv.ParseUint: parsing {p:?}: {why}"
                )
            })?;
            if port < 1 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(i32::from(port));
        }
    }
    Ok(ports)
}

fn is_websocket<B>(req: &http::Request<B>) -> bool {
    let h = req.headers();
    h.get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && h.get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

pub(super) async fn serve(ctx: &Ctx, req: Req) -> http::Response<Body> {
    let Some(target) = Target::without_container(segments(&req, "portForward")) else {
        return page_not_found();
    };
    let ports = if is_websocket(&req) {
        match websocket_ports(&query_values(&req, "port")) {
            Ok(p) => p,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e),
        }
    } else {
        Vec::new()
    };
    let Some(pod) = ctx.node.pod(&target.namespace, &target.pod) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    if let Some(uid) = &target.uid {
        if pod.metadata.uid.as_deref() != Some(uid.as_str()) {
            return text(StatusCode::NOT_FOUND, "pod not found");
        }
    }
    match ctx.node.port_forward_url(&pod, ports).await {
        Ok(url) => proxy::proxy_stream(req, &url).await,
        Err(e) => e.response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_ports_as_upstream_parses_them() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            websocket_ports(&v(&["80,8080", "443"])).unwrap(),
            [80, 8080, 443]
        );
        assert_eq!(
            websocket_ports(&[]).unwrap_err(),
            "query parameter \"port\" is required"
        );
        assert_eq!(
            websocket_ports(&v(&[""])).unwrap_err(),
            "query parameter \"port\" cannot be empty"
        );
        assert_eq!(
            websocket_ports(&v(&["0"])).unwrap_err(),
            "port \"0\" must be > 0"
        );
        assert!(websocket_ports(&v(&["x"]))
            .unwrap_err()
            .starts_with("unable to parse \"x\" as a port"));
        assert!(websocket_ports(&v(&["70000"]))
            .unwrap_err()
            .contains("value out of range"));
    }
}
