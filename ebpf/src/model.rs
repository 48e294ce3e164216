//! What a Service and its EndpointSlices ask of the data path, as upstream kube-proxy reads
//! them: one frontend per address and port the service answers on, each with the backends it
//! may use.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp = 6,
    Udp = 17,
}

/// Which program translates the frontend: the socket programs (in-cluster clients) or TC
/// (traffic arriving at the node from outside).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Sock = 0,
    Ext = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    /// `0.0.0.0` for a node port: any of the node's addresses.
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
    pub scope: Scope,
    /// `namespace/name:portName`: the frontends of one service port share session affinity.
    pub service_port: String,
    /// `sessionAffinity: ClientIP` and its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// Masquerade to the node (externalTrafficPolicy: Cluster on an external frontend).
    pub snat: bool,
    /// Without backends, drop rather than refuse: the service has endpoints, only none on
    /// this node for externalTrafficPolicy: Local (upstream drops such traffic).
    pub drop_when_empty: bool,
    /// Sorted and without duplicates; empty means connections are refused.
    pub backends: Vec<Backend>,
}

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when the API server has not filled it in
/// (upstream's `DefaultClientIPServiceAffinitySeconds`).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// The frontends `svc` asks for on the node `node_name`, with backends taken from `slices`.
///
/// The caller picks the slices of this service (label `kubernetes.io/service-name` in the
/// service's namespace); slices of another address type than IPv4 are ignored here. Output is
/// deterministic: service ports in spec order, and for each port its socket-layer frontends
/// (cluster IP, external IPs, load-balancer IPs) before its TC ones (node port, external IPs,
/// load-balancer IPs). A frontend that would repeat one already listed (same address, port,
/// protocol and scope) is left out.
pub fn frontends(svc: &Service, slices: &[&EndpointSlice], node_name: &str) -> Vec<Frontend> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let svc_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    // Upstream's ShouldSkipService: headless, unallocated and ExternalName services.
    if svc_type == "ExternalName" || matches!(spec.cluster_ip.as_deref(), None | Some("" | "None"))
    {
        return Vec::new();
    }
    let Some(cluster_ip) = cluster_ipv4(spec) else {
        return Vec::new();
    };

    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| parse_ipv4(ip))
        .collect();
    let lb_ips: Vec<Ipv4Addr> = svc
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        // An ingress in `Proxy` mode is reached through the load balancer, which rewrites
        // the destination: kube-proxy leaves it alone.
        .filter(|ing| matches!(ing.ip_mode.as_deref(), None | Some("VIP")))
        .filter_map(|ing| ing.ip.as_deref().and_then(parse_ipv4))
        .collect();

    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    // Upstream's ExternalPolicyLocal: only for services reachable from outside.
    let externally_accessible = matches!(svc_type, "NodePort" | "LoadBalancer")
        || (svc_type == "ClusterIP" && !external_ips.is_empty());
    let external_local =
        externally_accessible && spec.external_traffic_policy.as_deref() == Some("Local");
    let has_node_ports = matches!(svc_type, "NodePort" | "LoadBalancer");

    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|config| config.client_ip.as_ref())
            .and_then(|client_ip| client_ip.timeout_seconds)
            .and_then(|secs| u32::try_from(secs).ok())
            .filter(|secs| *secs > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });

    let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();

    // Slices in name order, so that which duplicate of an endpoint is kept does not depend on
    // the order the caller found them in.
    let mut slices: Vec<&EndpointSlice> = slices
        .iter()
        .copied()
        .filter(|slice| slice.address_type == "IPv4")
        .collect();
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for port in spec.ports.iter().flatten() {
        let Some(proto) = parse_proto(port.protocol.as_deref()) else {
            continue;
        };
        let Some(svc_port) = to_port(port.port) else {
            continue;
        };
        let port_name = port.name.as_deref().unwrap_or_default();
        let endpoints = endpoints_for(port, proto, &slices, node_name);
        let cluster = usable(endpoints.values());
        let local = usable(endpoints.values().filter(|ep| ep.local));

        let mut push =
            |addr: Ipv4Addr, port: u16, scope: Scope, snat: bool, backends: &[Backend]| {
                if seen.insert((addr, port, proto, scope)) {
                    out.push(Frontend {
                        addr,
                        port,
                        proto,
                        scope,
                        service_port: format!("{namespace}/{name}:{port_name}"),
                        affinity_timeout,
                        snat,
                        drop_when_empty: scope == Scope::Ext
                            && !snat
                            && backends.is_empty()
                            && !cluster.is_empty(),
                        backends: backends.to_vec(),
                    });
                }
            };

        // From inside the cluster: the cluster IP follows internalTrafficPolicy; external and
        // load-balancer IPs are short-circuited to every endpoint, as if the traffic had gone
        // out to the load balancer and come back in.
        let internal = if internal_local { &local } else { &cluster };
        push(cluster_ip, svc_port, Scope::Sock, false, internal);
        for &ip in external_ips.iter().chain(&lb_ips) {
            push(ip, svc_port, Scope::Sock, false, &cluster);
        }

        // From outside: externalTrafficPolicy Local keeps the client's address and uses only
        // this node's endpoints; Cluster masquerades, since the backend may be elsewhere.
        let (external, snat) = if external_local {
            (&local, false)
        } else {
            (&cluster, true)
        };
        if has_node_ports {
            if let Some(node_port) = port.node_port.and_then(to_port) {
                push(Ipv4Addr::UNSPECIFIED, node_port, Scope::Ext, snat, external);
            }
        }
        for &ip in external_ips.iter().chain(&lb_ips) {
            push(ip, svc_port, Scope::Ext, snat, external);
        }
    }
    out
}

/// One endpoint of one service port, with what kube-proxy reads of its conditions.
struct EndpointInfo {
    backend: Backend,
    local: bool,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// The endpoints of the service port `port`, one per address and target port.
fn endpoints_for(
    port: &ServicePort,
    proto: Proto,
    slices: &[&EndpointSlice],
    node_name: &str,
) -> BTreeMap<(Ipv4Addr, u16), EndpointInfo> {
    let port_name = port.name.as_deref().unwrap_or_default();
    let mut out: BTreeMap<(Ipv4Addr, u16), EndpointInfo> = BTreeMap::new();
    for slice in slices {
        let target_ports = slice
            .ports
            .iter()
            .flatten()
            .filter(|p| {
                p.name.as_deref().unwrap_or_default() == port_name
                    && parse_proto(p.protocol.as_deref()) == Some(proto)
            })
            .filter_map(|p| p.port.and_then(to_port));
        for target_port in target_ports {
            for ep in &slice.endpoints {
                // Like kube-proxy, only the first address counts.
                let Some(addr) = ep.addresses.first().and_then(|a| parse_ipv4(a)) else {
                    continue;
                };
                let conditions = ep.conditions.as_ref();
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let endpoint = EndpointInfo {
                    backend: Backend {
                        addr,
                        port: target_port,
                        proto,
                    },
                    local: !node_name.is_empty() && ep.node_name.as_deref() == Some(node_name),
                    ready,
                    // kube-proxy reads an unset `serving` as true (the API's documented
                    // meaning), not as a copy of `ready`.
                    serving: conditions.and_then(|c| c.serving).unwrap_or(true),
                    terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                };
                // The same address and port in several slices counts once; if the copies
                // disagree about the node, the local one wins.
                match out.get(&(addr, target_port)) {
                    Some(kept) if kept.local || !endpoint.local => {}
                    _ => {
                        out.insert((addr, target_port), endpoint);
                    }
                }
            }
        }
    }
    out
}

/// Upstream's choice among endpoints: the ready ones, or if none is ready, those still
/// serving while they terminate. Sorted, as the input is.
fn usable<'a>(endpoints: impl Iterator<Item = &'a EndpointInfo> + Clone) -> Vec<Backend> {
    let ready: Vec<Backend> = endpoints
        .clone()
        .filter(|ep| ep.ready)
        .map(|ep| ep.backend)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .filter(|ep| ep.serving && ep.terminating)
        .map(|ep| ep.backend)
        .collect()
}

/// The service's IPv4 cluster IP, as upstream's GetClusterIPByFamily picks it.
fn cluster_ipv4(spec: &ServiceSpec) -> Option<Ipv4Addr> {
    match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().find_map(|ip| parse_ipv4(ip)),
        _ => spec.cluster_ip.as_deref().and_then(parse_ipv4),
    }
}

/// TCP when unset, as the API server defaults it; `None` for SCTP and anything else.
fn parse_proto(proto: Option<&str>) -> Option<Proto> {
    match proto.unwrap_or("TCP") {
        "TCP" => Some(Proto::Tcp),
        "UDP" => Some(Proto::Udp),
        _ => None,
    }
}

fn to_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|port| *port != 0)
}

/// A dotted-quad IPv4 address, accepting the leading zeros that older API servers let
/// through (read as decimal, like upstream's ParseIPSloppy).
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = part.trim_start_matches('0');
        *octet = if digits.is_empty() {
            0
        } else if digits.len() > 3 {
            return None;
        } else {
            u8::try_from(digits.parse::<u16>().ok()?).ok()?
        };
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn service(v: Value) -> Service {
        serde_json::from_value(v).expect("valid Service")
    }

    /// An IPv4 slice of service `web` in `default`.
    fn slice(name: &str, ports: Value, endpoints: Value) -> EndpointSlice {
        slice_of_type(name, "IPv4", ports, endpoints)
    }

    fn slice_of_type(
        name: &str,
        address_type: &str,
        ports: Value,
        endpoints: Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": address_type,
            "ports": ports,
            "endpoints": endpoints,
        }))
        .expect("valid EndpointSlice")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn tcp(addr: &str, port: u16) -> Backend {
        Backend {
            addr: ip(addr),
            port,
            proto: Proto::Tcp,
        }
    }

    fn udp(addr: &str, port: u16) -> Backend {
        Backend {
            addr: ip(addr),
            port,
            proto: Proto::Udp,
        }
    }

    fn find<'a>(
        fes: &'a [Frontend],
        addr: &str,
        port: u16,
        proto: Proto,
        scope: Scope,
    ) -> &'a Frontend {
        let addr = ip(addr);
        fes.iter()
            .find(|fe| fe.addr == addr && fe.port == port && fe.proto == proto && fe.scope == scope)
            .unwrap_or_else(|| panic!("no frontend {addr}:{port} {proto:?} {scope:?} in {fes:#?}"))
    }

    /// A ClusterIP service `default/web` with one port `http` 80 -> `http`.
    fn web(extra_spec: Value) -> Service {
        let mut spec = json!({
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
        });
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        service(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}))
    }

    fn http_port(port: u16) -> Value {
        json!([{"name": "http", "port": port, "protocol": "TCP"}])
    }

    /// Endpoints on node-a (.1, .2) and node-b (.3, .4), all ready.
    fn two_nodes() -> EndpointSlice {
        slice(
            "web-1",
            http_port(8080),
            json!([
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "nodeName": "node-a"},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}, "nodeName": "node-a"},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true}, "nodeName": "node-b"},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true}, "nodeName": "node-b"},
            ]),
        )
    }

    fn all_four() -> Vec<Backend> {
        vec![
            tcp("10.0.0.1", 8080),
            tcp("10.0.0.2", 8080),
            tcp("10.0.0.3", 8080),
            tcp("10.0.0.4", 8080),
        ]
    }

    #[test]
    fn cluster_ip_uses_ready_endpoints() {
        let s = slice(
            "web-1",
            http_port(8080),
            json!([
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": false}},
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.4"], "conditions": {}},
            ]),
        );
        let fes = frontends(&web(json!({})), &[&s], "node-a");
        assert_eq!(
            fes,
            vec![Frontend {
                addr: ip("10.96.0.10"),
                port: 80,
                proto: Proto::Tcp,
                scope: Scope::Sock,
                service_port: "default/web:http".into(),
                affinity_timeout: None,
                snat: false,
                drop_when_empty: false,
                backends: vec![
                    tcp("10.0.0.1", 8080),
                    tcp("10.0.0.3", 8080),
                    tcp("10.0.0.4", 8080),
                ],
            }]
        );
    }

    #[test]
    fn no_slices_means_no_backends() {
        let fes = frontends(&web(json!({})), &[], "node-a");
        assert_eq!(fes.len(), 1);
        assert!(fes[0].backends.is_empty());
    }

    #[test]
    fn serving_terminating_endpoints_only_when_none_is_ready() {
        let terminating = json!([
            {"addresses": ["10.0.0.1"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": false, "terminating": true}},
            // Unset `serving` reads as true, as in kube-proxy.
            {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "terminating": true}},
            // Not ready, not terminating: starting up, never used.
            {"addresses": ["10.0.0.4"], "conditions": {"ready": false, "serving": true, "terminating": false}},
            {"addresses": ["10.0.0.5"], "conditions": {"ready": false, "serving": true}},
        ]);
        let s = slice("web-1", http_port(8080), terminating.clone());
        let fes = frontends(&web(json!({})), &[&s], "node-a");
        assert_eq!(
            fes[0].backends,
            vec![tcp("10.0.0.1", 8080), tcp("10.0.0.3", 8080)]
        );

        // One ready endpoint anywhere and the terminating ones are left alone.
        let mut with_ready = terminating.as_array().unwrap().clone();
        with_ready.push(json!({"addresses": ["10.0.0.9"], "conditions": {"ready": true}}));
        let s = slice("web-1", http_port(8080), Value::Array(with_ready));
        let fes = frontends(&web(json!({})), &[&s], "node-a");
        assert_eq!(fes[0].backends, vec![tcp("10.0.0.9", 8080)]);

        // Nothing serving at all: no backends.
        let s = slice(
            "web-1",
            http_port(8080),
            json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": false, "serving": false, "terminating": true}}]),
        );
        assert!(frontends(&web(json!({})), &[&s], "node-a")[0]
            .backends
            .is_empty());
    }

    #[test]
    fn named_port_resolves_per_slice() {
        let a = slice(
            "web-a",
            http_port(8080),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let b = slice(
            "web-b",
            http_port(9090),
            json!([{"addresses": ["10.0.0.2"]}]),
        );
        // A slice without the port contributes nothing to it.
        let c = slice(
            "web-c",
            json!([{"name": "metrics", "port": 9100, "protocol": "TCP"}]),
            json!([{"addresses": ["10.0.0.3"]}]),
        );
        let fes = frontends(&web(json!({})), &[&c, &b, &a], "node-a");
        assert_eq!(fes.len(), 1);
        assert_eq!(
            fes[0].backends,
            vec![tcp("10.0.0.1", 8080), tcp("10.0.0.2", 9090)]
        );
    }

    #[test]
    fn unnamed_port_and_default_protocol() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
        }));
        // Name "" and unset name are the same; unset protocol is TCP on both sides.
        let a = slice(
            "web-a",
            json!([{"name": "", "port": 8080}]),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let b = slice(
            "web-b",
            json!([{"port": 8081}]),
            json!([{"addresses": ["10.0.0.2"]}]),
        );
        // Unset or zero port numbers are ignored.
        let c = slice(
            "web-c",
            json!([{"name": ""}, {"port": 0}]),
            json!([{"addresses": ["10.0.0.3"]}]),
        );
        let fes = frontends(&svc, &[&a, &b, &c], "node-a");
        assert_eq!(fes.len(), 1);
        assert_eq!(fes[0].proto, Proto::Tcp);
        assert_eq!(fes[0].service_port, "default/web:");
        assert_eq!(
            fes[0].backends,
            vec![tcp("10.0.0.1", 8080), tcp("10.0.0.2", 8081)]
        );
    }

    #[test]
    fn tcp_and_udp_on_the_same_port() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "kube-system"},
            "spec": {
                "clusterIP": "10.96.0.10",
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        }));
        let s = slice(
            "web-1",
            json!([
                {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                {"name": "dns", "port": 5353, "protocol": "UDP"},
                // Right name, wrong protocol: no match.
                {"name": "dns", "port": 9999, "protocol": "TCP"},
            ]),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let fes = frontends(&svc, &[&s], "node-a");
        assert_eq!(fes.len(), 2);
        assert_eq!(fes[0].proto, Proto::Udp);
        assert_eq!(fes[0].service_port, "kube-system/web:dns");
        assert_eq!(fes[0].backends, vec![udp("10.0.0.1", 5353)]);
        assert_eq!(fes[1].proto, Proto::Tcp);
        assert_eq!(fes[1].service_port, "kube-system/web:dns-tcp");
        assert_eq!(fes[1].backends, vec![tcp("10.0.0.1", 5353)]);
    }

    #[test]
    fn multiple_ports_in_spec_order_and_sctp_skipped() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "clusterIP": "10.96.0.10",
                "ports": [
                    {"name": "https", "port": 443, "protocol": "TCP"},
                    {"name": "sctp", "port": 9000, "protocol": "SCTP"},
                    {"name": "http", "port": 80, "protocol": "TCP"},
                ],
            },
        }));
        let s = slice(
            "web-1",
            json!([
                {"name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "https", "port": 8443, "protocol": "TCP"},
                {"name": "sctp", "port": 9000, "protocol": "SCTP"},
            ]),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let fes = frontends(&svc, &[&s], "node-a");
        let summary: Vec<_> = fes
            .iter()
            .map(|fe| (fe.port, fe.service_port.as_str(), fe.backends.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (443, "default/web:https", vec![tcp("10.0.0.1", 8443)]),
                (80, "default/web:http", vec![tcp("10.0.0.1", 8080)]),
            ]
        );
    }

    #[test]
    fn services_without_a_cluster_ip_produce_nothing() {
        let s = slice(
            "web-1",
            http_port(8080),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let headless = web(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
        assert!(frontends(&headless, &[&s], "node-a").is_empty());

        let external_name = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com",
                     "ports": [{"name": "http", "port": 80}]},
        }));
        assert!(frontends(&external_name, &[&s], "node-a").is_empty());

        let unallocated = web(json!({"clusterIP": "", "clusterIPs": []}));
        assert!(frontends(&unallocated, &[&s], "node-a").is_empty());

        let ipv6_only = web(json!({"clusterIP": "fd00::10", "clusterIPs": ["fd00::10"]}));
        assert!(frontends(&ipv6_only, &[&s], "node-a").is_empty());

        let garbage = web(json!({"clusterIP": "not-an-ip", "clusterIPs": ["not-an-ip"]}));
        assert!(frontends(&garbage, &[&s], "node-a").is_empty());

        let no_spec = service(json!({"metadata": {"name": "web", "namespace": "default"}}));
        assert!(frontends(&no_spec, &[&s], "node-a").is_empty());

        let no_ports = web(json!({"ports": []}));
        assert!(frontends(&no_ports, &[&s], "node-a").is_empty());
    }

    #[test]
    fn dual_stack_uses_the_ipv4_cluster_ip() {
        let svc = web(json!({"clusterIP": "fd00::10", "clusterIPs": ["fd00::10", "10.96.0.20"]}));
        let fes = frontends(&svc, &[], "node-a");
        assert_eq!(fes.len(), 1);
        assert_eq!(fes[0].addr, ip("10.96.0.20"));

        // Without clusterIPs, clusterIP is used; leading zeros read as decimal.
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "010.096.000.010", "ports": [{"name": "http", "port": 80}]},
        }));
        assert_eq!(frontends(&svc, &[], "node-a")[0].addr, ip("10.96.0.10"));
    }

    #[test]
    fn node_port_with_cluster_policy_uses_every_endpoint_and_masquerades() {
        let svc = web(json!({
            "type": "NodePort",
            "externalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        }));
        let s = two_nodes();
        let fes = frontends(&svc, &[&s], "node-a");
        assert_eq!(fes.len(), 2);
        let sock = &fes[0];
        assert_eq!(
            (sock.addr, sock.port, sock.scope),
            (ip("10.96.0.10"), 80, Scope::Sock)
        );
        assert!(!sock.snat);
        assert_eq!(sock.backends, all_four());
        let ext = &fes[1];
        assert_eq!(
            (ext.addr, ext.port, ext.scope),
            (Ipv4Addr::UNSPECIFIED, 30080, Scope::Ext)
        );
        assert!(ext.snat);
        assert_eq!(ext.backends, all_four());
        assert_eq!(ext.service_port, "default/web:http");
    }

    #[test]
    fn node_port_with_local_policy_uses_local_endpoints_without_snat() {
        let svc = web(json!({
            "type": "NodePort",
            "externalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        }));
        let s = two_nodes();
        let fes = frontends(&svc, &[&s], "node-a");
        // In-cluster clients of the cluster IP still reach every endpoint.
        assert_eq!(
            find(&fes, "10.96.0.10", 80, Proto::Tcp, Scope::Sock).backends,
            all_four()
        );
        let ext = find(&fes, "0.0.0.0", 30080, Proto::Tcp, Scope::Ext);
        assert!(!ext.snat);
        assert_eq!(
            ext.backends,
            vec![tcp("10.0.0.1", 8080), tcp("10.0.0.2", 8080)]
        );

        // On node-b, node-b's endpoints.
        let fes = frontends(&svc, &[&s], "node-b");
        assert_eq!(
            find(&fes, "0.0.0.0", 30080, Proto::Tcp, Scope::Ext).backends,
            vec![tcp("10.0.0.3", 8080), tcp("10.0.0.4", 8080)]
        );

        assert!(!ext.drop_when_empty);

        // A node without endpoints gets none, even though others have some: its traffic is
        // dropped rather than refused, as upstream does.
        let fes = frontends(&svc, &[&s], "node-c");
        let ext = find(&fes, "0.0.0.0", 30080, Proto::Tcp, Scope::Ext);
        assert!(ext.backends.is_empty() && ext.drop_when_empty);
        // Without any endpoint at all it is refused.
        let fes = frontends(&svc, &[], "node-c");
        assert!(!find(&fes, "0.0.0.0", 30080, Proto::Tcp, Scope::Ext).drop_when_empty);
        // And an empty node name matches no endpoint (nor one without a node name).
        let fes = frontends(&svc, &[&s], "");
        assert!(find(&fes, "0.0.0.0", 30080, Proto::Tcp, Scope::Ext)
            .backends
            .is_empty());
    }

    #[test]
    fn local_set_falls_back_to_local_terminating_endpoints() {
        let svc = web(json!({
            "type": "NodePort",
            "externalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        }));
        let s = slice(
            "web-1",
            http_port(8080),
            json!([
                {"addresses": ["10.0.0.1"], "nodeName": "node-a",
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.2"], "nodeName": "node-a",
                 "conditions": {"ready": false, "serving": false, "terminating": true}},
                {"addresses": ["10.0.0.3"], "nodeName": "node-b", "conditions": {"ready": true}},
            ]),
        );
        let fes = frontends(&svc, &[&s], "node-a");
        // Cluster-wide, a ready endpoint exists: only it.
        assert_eq!(
            find(&fes, "10.96.0.10", 80, Proto::Tcp, Scope::Sock).backends,
            vec![tcp("10.0.0.3", 8080)]
        );
        // Locally, none is ready: the serving terminating one.
        assert_eq!(
            find(&fes, "0.0.0.0", 30080, Proto::Tcp, Scope::Ext).backends,
            vec![tcp("10.0.0.1", 8080)]
        );
    }

    #[test]
    fn internal_traffic_policy_local() {
        let svc = web(json!({"internalTrafficPolicy": "Local", "externalIPs": ["192.0.2.10"]}));
        let s = two_nodes();
        let fes = frontends(&svc, &[&s], "node-b");
        let cluster_ip = find(&fes, "10.96.0.10", 80, Proto::Tcp, Scope::Sock);
        assert_eq!(
            cluster_ip.backends,
            vec![tcp("10.0.0.3", 8080), tcp("10.0.0.4", 8080)]
        );
        assert!(!cluster_ip.snat);
        // External IPs reached from inside are not subject to internalTrafficPolicy.
        assert_eq!(
            find(&fes, "192.0.2.10", 80, Proto::Tcp, Scope::Sock).backends,
            all_four()
        );
        // Nor from outside (externalTrafficPolicy Cluster by default).
        let ext = find(&fes, "192.0.2.10", 80, Proto::Tcp, Scope::Ext);
        assert_eq!(ext.backends, all_four());
        assert!(ext.snat);

        // Cluster (the default) and an explicit "Cluster" use every endpoint.
        for extra in [json!({}), json!({"internalTrafficPolicy": "Cluster"})] {
            let fes = frontends(&web(extra), &[&s], "node-b");
            assert_eq!(fes[0].backends, all_four());
        }
    }

    #[test]
    fn external_ips_and_load_balancer_ingress() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "externalIPs": ["192.0.2.10", "2001:db8::1", "bogus"],
                "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
            },
            "status": {"loadBalancer": {"ingress": [
                {"ip": "198.51.100.7"},
                {"ip": "198.51.100.8", "ipMode": "Proxy"},
                {"ip": "198.51.100.9", "ipMode": "VIP"},
                {"hostname": "lb.example.com"},
                {"ip": "2001:db8::2"},
                {"ip": ""},
            ]}},
        }));
        let s = two_nodes();
        let fes = frontends(&svc, &[&s], "node-a");
        let local = vec![tcp("10.0.0.1", 8080), tcp("10.0.0.2", 8080)];
        let summary: Vec<_> = fes
            .iter()
            .map(|fe| (fe.addr, fe.port, fe.scope, fe.snat, fe.backends.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (ip("10.96.0.10"), 80, Scope::Sock, false, all_four()),
                (ip("192.0.2.10"), 80, Scope::Sock, false, all_four()),
                (ip("198.51.100.7"), 80, Scope::Sock, false, all_four()),
                (ip("198.51.100.9"), 80, Scope::Sock, false, all_four()),
                (
                    Ipv4Addr::UNSPECIFIED,
                    30080,
                    Scope::Ext,
                    false,
                    local.clone()
                ),
                (ip("192.0.2.10"), 80, Scope::Ext, false, local.clone()),
                (ip("198.51.100.7"), 80, Scope::Ext, false, local.clone()),
                (ip("198.51.100.9"), 80, Scope::Ext, false, local),
            ]
        );
        assert!(fes
            .iter()
            .all(|fe| fe.service_port == "default/web:http" && fe.proto == Proto::Tcp));

        // externalTrafficPolicy Cluster: every endpoint, masqueraded.
        let mut cluster = svc.clone();
        cluster.spec.as_mut().unwrap().external_traffic_policy = Some("Cluster".into());
        let fes = frontends(&cluster, &[&s], "node-a");
        for fe in fes.iter().filter(|fe| fe.scope == Scope::Ext) {
            assert!(fe.snat);
            assert_eq!(fe.backends, all_four());
        }
        assert_eq!(fes.iter().filter(|fe| fe.scope == Scope::Ext).count(), 4);
    }

    #[test]
    fn cluster_ip_with_external_ips_honours_external_policy() {
        let svc = web(json!({"externalIPs": ["192.0.2.10"], "externalTrafficPolicy": "Local"}));
        let s = two_nodes();
        let fes = frontends(&svc, &[&s], "node-a");
        // No node port for a ClusterIP service.
        assert_eq!(fes.len(), 3);
        assert!(!fes.iter().any(|fe| fe.addr.is_unspecified()));
        let ext = find(&fes, "192.0.2.10", 80, Proto::Tcp, Scope::Ext);
        assert!(!ext.snat);
        assert_eq!(
            ext.backends,
            vec![tcp("10.0.0.1", 8080), tcp("10.0.0.2", 8080)]
        );
    }

    #[test]
    fn load_balancer_without_node_ports() {
        let svc = web(json!({
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": false,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        }));
        let fes = frontends(&svc, &[], "node-a");
        assert_eq!(fes.len(), 1);
        assert_eq!(fes[0].scope, Scope::Sock);
    }

    #[test]
    fn session_affinity() {
        let svc = web(json!({
            "type": "NodePort",
            "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        }));
        let fes = frontends(&svc, &[], "node-a");
        assert_eq!(fes.len(), 2);
        assert!(fes.iter().all(|fe| fe.affinity_timeout == Some(10_800)));

        let svc = web(json!({
            "type": "NodePort",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        }));
        let fes = frontends(&svc, &[], "node-a");
        assert_eq!(fes.len(), 2);
        assert!(fes.iter().all(|fe| fe.affinity_timeout == Some(60)));

        let svc = web(json!({
            "sessionAffinity": "None",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        }));
        assert_eq!(frontends(&svc, &[], "node-a")[0].affinity_timeout, None);
    }

    #[test]
    fn ipv6_slices_and_odd_addresses_are_ignored() {
        let v6 = slice_of_type(
            "web-v6",
            "IPv6",
            http_port(8080),
            json!([{"addresses": ["fd00::1"]}]),
        );
        // Even if an IPv4 address were in it.
        let v6_with_v4 = slice_of_type(
            "web-v6b",
            "IPv6",
            http_port(8080),
            json!([{"addresses": ["10.0.0.9"]}]),
        );
        let fqdn = slice_of_type(
            "web-fqdn",
            "FQDN",
            http_port(8080),
            json!([{"addresses": ["example.com"]}]),
        );
        let v4 = slice(
            "web-v4",
            http_port(8080),
            json!([
                // Only the first address counts.
                {"addresses": ["10.0.0.1", "10.0.0.2"]},
                {"addresses": []},
                {"addresses": ["fd00::3"]},
                {"addresses": ["10.0.0.256"]},
                {"addresses": ["10.0.0"]},
                {"addresses": ["10.0.0.4.5"]},
                {"addresses": [" 10.0.0.6"]},
            ]),
        );
        let fes = frontends(&web(json!({})), &[&v6, &v6_with_v4, &fqdn, &v4], "node-a");
        assert_eq!(fes[0].backends, vec![tcp("10.0.0.1", 8080)]);
    }

    #[test]
    fn duplicates_count_once() {
        let svc = web(json!({
            "type": "NodePort",
            "externalTrafficPolicy": "Local",
            "externalIPs": ["192.0.2.10", "192.0.2.10"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        }));
        let a = slice(
            "web-a",
            http_port(8080),
            json!([
                {"addresses": ["10.0.0.1"], "nodeName": "node-b"},
                {"addresses": ["10.0.0.2"], "nodeName": "node-b"},
            ]),
        );
        // The same endpoints again, one of them claiming to be on node-a: the local copy wins.
        let b = slice(
            "web-b",
            http_port(8080),
            json!([
                {"addresses": ["10.0.0.1"], "nodeName": "node-a"},
                {"addresses": ["10.0.0.2"], "nodeName": "node-b"},
            ]),
        );
        for slices in [[&a, &b], [&b, &a]] {
            let fes = frontends(&svc, &slices, "node-a");
            assert_eq!(
                find(&fes, "10.96.0.10", 80, Proto::Tcp, Scope::Sock).backends,
                vec![tcp("10.0.0.1", 8080), tcp("10.0.0.2", 8080)]
            );
            assert_eq!(
                find(&fes, "0.0.0.0", 30080, Proto::Tcp, Scope::Ext).backends,
                vec![tcp("10.0.0.1", 8080)]
            );
            // The repeated external IP yields one frontend per scope.
            assert_eq!(fes.len(), 4);
        }

        // The same address on another target port is another backend.
        let c = slice(
            "web-c",
            http_port(8081),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let fes = frontends(&web(json!({})), &[&a, &c], "node-a");
        assert_eq!(
            fes[0].backends,
            vec![
                tcp("10.0.0.1", 8080),
                tcp("10.0.0.1", 8081),
                tcp("10.0.0.2", 8080)
            ]
        );
    }

    #[test]
    fn odd_numbers_do_not_panic() {
        let svc = web(json!({
            "type": "NodePort",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": -5}},
            "ports": [
                {"name": "big", "port": 70000, "nodePort": 70000},
                {"name": "neg", "port": -1, "nodePort": -1},
                {"name": "http", "port": 80, "nodePort": 0},
            ],
        }));
        let s = slice(
            "web-1",
            json!([{"name": "http", "port": 70000}, {"name": "http", "port": -3}]),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let fes = frontends(&svc, &[&s], "node-a");
        assert_eq!(fes.len(), 1);
        assert_eq!(fes[0].port, 80);
        assert!(fes[0].backends.is_empty());
        assert_eq!(fes[0].affinity_timeout, Some(10_800));
    }

    #[test]
    fn parses_ipv4_like_upstream() {
        assert_eq!(parse_ipv4("10.1.2.3"), Some(ip("10.1.2.3")));
        assert_eq!(parse_ipv4("010.001.0002.03"), Some(ip("10.1.2.3")));
        assert_eq!(parse_ipv4("0.0.0.0"), Some(Ipv4Addr::UNSPECIFIED));
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.256",
            "1..2.3",
            "a.b.c.d",
            "::1",
            "+1.2.3.4",
            "1.2.3.4 ",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad:?}");
        }
    }
}
