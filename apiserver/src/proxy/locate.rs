//! Where proxied requests go: a node's kubelet (its preferred address and daemon endpoint
//! port), a pod's IP, a ready endpoint of a service. As upstream's ResourceLocation
//! functions of the node, pod and service registries.

use std::net::IpAddr;

use rand::Rng;
use serde_json::Value;

use super::client::Target;
use crate::meta;
use crate::server::App;
use crate::status::{ApiError, ApiResult};

/// The kubelet port when the node reports none.
const DEFAULT_KUBELET_PORT: u16 = 10250;

/// `name`, `name:port` or `scheme:name:port`, as upstream's SplitSchemeNamePort.
pub(crate) fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// Go's `net.IP.IsGlobalUnicast`.
pub(crate) fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !v4.is_broadcast()
                && !v4.is_unspecified()
                && !v4.is_loopback()
                && !v4.is_multicast()
                && !v4.is_link_local()
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            match v6.to_ipv4_mapped() {
                Some(v4) => is_global_unicast(IpAddr::V4(v4)),
                None => {
                    !v6.is_unspecified() && !v6.is_loopback() && !v6.is_multicast() && !link_local
                }
            }
        }
    }
}

/// Upstream's isProxyableIP for hostnames: no loopback, link-local or interface-local
/// multicast addresses.
async fn check_proxyable_host(host: &str) -> ApiResult<()> {
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| ApiError::bad_request(format!("lookup {host}: {e}")))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(ApiError::bad_request("no addresses for hostname"));
    }
    for ip in addrs {
        let bad = match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.octets()[0] == 224,
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
                    || (v6.segments()[0] & 0xff0f) == 0xff02
                    || (v6.segments()[0] & 0xff0f) == 0xff01
            }
        };
        if bad {
            return Err(ApiError::bad_request("address not allowed"));
        }
    }
    Ok(())
}

fn resource(app: &App, plural: &str) -> ApiResult<std::sync::Arc<crate::resources::Resource>> {
    app.table
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

/// A node's kubelet: its preferred address and port.
pub(crate) struct NodeConnection {
    pub host: String,
    pub port: u16,
}

/// Upstream's NodeConnectionInfoGetter: the first address of the preferred types (a
/// `Hostname` falls back to the `kubernetes.io/hostname` label), and the port the kubelet
/// reports in `status.daemonEndpoints`.
pub(crate) async fn node_connection(app: &App, node_name: &str) -> ApiResult<NodeConnection> {
    let nodes = resource(app, "nodes")?;
    let node = app.registry.get(&nodes, None, node_name, None).await?;
    let addresses: Vec<(&str, &str)> = meta::path(&node, "status.addresses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["type"].as_str().unwrap_or(""),
                        x["address"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut host = None;
    for wanted in app.kubelet.address_types()? {
        if let Some((_, a)) = addresses.iter().find(|(t, _)| *t == wanted) {
            host = Some(a.to_string());
            break;
        }
        if wanted == "Hostname" {
            if let Some(h) = meta::path(&node, "metadata.labels")
                .and_then(|l| l.get("kubernetes.io/hostname"))
                .and_then(Value::as_str)
            {
                host = Some(h.to_string());
                break;
            }
        }
    }
    let Some(host) = host else {
        let known: Vec<String> = addresses
            .iter()
            .map(|(t, a)| format!("{{{t} {a}}}"))
            .collect();
        return Err(ApiError::new(
            500,
            "",
            format!(
                "no preferred addresses found; known addresses: [{}]",
                known.join(" ")
            ),
        ));
    };
    let port = meta::path(&node, "status.daemonEndpoints.kubeletEndpoint.Port")
        .and_then(Value::as_i64)
        .filter(|p| *p > 0 && *p <= u16::MAX as i64)
        .map(|p| p as u16)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(NodeConnection { host, port })
}

/// The kubelet of a node, over TLS.
pub(crate) async fn kubelet(app: &App, node_name: &str, insecure: bool) -> ApiResult<Target> {
    let conn = node_connection(app, node_name).await?;
    Ok(Target {
        scheme: "https",
        host: conn.host,
        port: conn.port,
        tls: Some(app.kubelet.kubelet_tls(insecure)?),
    })
}

fn https_or_http(app: &App, scheme: &str, host: String, port: u16) -> ApiResult<Target> {
    Ok(if scheme == "https" {
        Target {
            scheme: "https",
            host,
            port,
            tls: Some(app.kubelet.proxy_tls()?),
        }
    } else {
        Target {
            scheme: "http",
            host,
            port,
            tls: None,
        }
    })
}

fn parse_port(port: &str, what: &str) -> ApiResult<u16> {
    port.parse::<u16>()
        .map_err(|_| ApiError::bad_request(format!("invalid port {port:?} in {what}")))
}

/// `nodes/<id>/proxy`: the kubelet, or another port of the node.
pub(crate) async fn node(app: &App, id: &str) -> ApiResult<Target> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let conn = node_connection(app, name).await?;
    if port.is_empty() || port == conn.port.to_string() {
        return Ok(Target {
            scheme: "https",
            host: conn.host,
            port: conn.port,
            tls: Some(app.kubelet.kubelet_tls(false)?),
        });
    }
    check_proxyable_host(&conn.host).await?;
    let port = parse_port(port, id)?;
    https_or_http(app, scheme, conn.host, port)
}

/// A pod's IP: `status.podIPs[0]` (or `status.podIP`).
pub(crate) fn pod_ip(pod: &Value) -> &str {
    meta::path(pod, "status.podIPs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|p| p["ip"].as_str())
        .or_else(|| meta::path(pod, "status.podIP").and_then(Value::as_str))
        .unwrap_or("")
}

/// `pods/<id>/proxy`: the pod's IP, at the named port or the first declared container port.
pub(crate) async fn pod(app: &App, namespace: Option<&str>, id: &str) -> ApiResult<Target> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid pod request {id:?}")))?;
    let pods = resource(app, "pods")?;
    let pod = app.registry.get(&pods, namespace, name, None).await?;
    let mut port = port.to_string();
    if port.is_empty() {
        port = meta::path(&pod, "spec.containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["ports"].as_array().and_then(|p| p.first()))
            .find_map(|p| p["containerPort"].as_i64())
            .map(|p| p.to_string())
            .unwrap_or_default();
    }
    let ip = pod_ip(&pod);
    match ip.parse::<IpAddr>() {
        Ok(addr) if is_global_unicast(addr) => {}
        _ => return Err(ApiError::bad_request("address not allowed")),
    }
    let port = if port.is_empty() {
        if scheme == "https" {
            443
        } else {
            80
        }
    } else {
        parse_port(&port, id)?
    };
    https_or_http(app, scheme, ip.to_string(), port)
}

/// `services/<id>/proxy`: a ready endpoint address of the service that is a pod's IP, on the
/// port named (or numbered) in the request.
pub(crate) async fn service(app: &App, namespace: Option<&str>, id: &str) -> ApiResult<Target> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid service request {id:?}")))?;
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<i64>() {
        let services = resource(app, "services")?;
        let svc = app.registry.get(&services, namespace, name, None).await?;
        let found = meta::path(&svc, "spec.ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(number));
        match found {
            Some(p) => port_name = p["name"].as_str().unwrap_or("").to_string(),
            None => {
                return Err(ApiError::service_unavailable(format!(
                    "no service port {number} found for service {name:?}"
                )))
            }
        }
    }
    let endpoints = resource(app, "endpoints")?;
    let eps = app.registry.get(&endpoints, namespace, name, None).await?;
    let subsets: Vec<Value> = eps["subsets"].as_array().cloned().unwrap_or_default();
    if subsets.is_empty() {
        return Err(ApiError::service_unavailable(format!(
            "no endpoints available for service {name:?}"
        )));
    }
    let pods = resource(app, "pods")?;
    let seed = rand::rng().random_range(0..subsets.len());
    for i in 0..subsets.len() {
        let subset = &subsets[(seed + i) % subsets.len()];
        let addresses = subset["addresses"].as_array().cloned().unwrap_or_default();
        if addresses.is_empty() {
            continue;
        }
        for p in subset["ports"].as_array().into_iter().flatten() {
            if p["name"].as_str().unwrap_or("") != port_name {
                continue;
            }
            let Some(number) = p["port"].as_i64().filter(|n| (1..=65535).contains(n)) else {
                continue;
            };
            let start = rand::rng().random_range(0..addresses.len());
            for t in 0..addresses.len() {
                let addr = &addresses[(start + t) % addresses.len()];
                let ip = addr["ip"].as_str().unwrap_or("");
                // Only addresses of pods of the namespace whose IPs they are.
                let target = &addr["targetRef"];
                if target.is_null() || target["namespace"].as_str() != namespace {
                    continue;
                }
                let Some(pod_name) = target["name"].as_str() else {
                    continue;
                };
                let Ok(pod) = app.registry.get(&pods, namespace, pod_name, None).await else {
                    continue;
                };
                let has_ip = meta::path(&pod, "status.podIPs")
                    .and_then(Value::as_array)
                    .is_some_and(|ips| ips.iter().any(|x| x["ip"].as_str() == Some(ip)));
                if !has_ip {
                    continue;
                }
                return https_or_http(app, scheme, ip.to_string(), number as u16);
            }
        }
    }
    Err(ApiError::service_unavailable(format!(
        "no endpoints available for service {id:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_name_port() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            Some(("https", "web", "443"))
        );
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn global_unicast_as_go() {
        for ok in ["10.0.0.1", "192.0.2.2", "2001:db8::1", "fd00::2"] {
            assert!(is_global_unicast(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.1.1",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "255.255.255.255",
        ] {
            assert!(!is_global_unicast(bad.parse().unwrap()), "{bad}");
        }
    }
}
