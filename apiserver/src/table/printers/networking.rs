//! Printers of networking.k8s.io and discovery.k8s.io kinds.

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{
    at, created, format_selector, items, list_with_more, load_balancer_addresses, name, opt_int,
    opt_str, str_at,
};
use super::Cells;

const INGRESS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Class", "string", "The IngressClass handling the ingress."),
        Column::new("Hosts", "string", "Hosts the ingress rules match."),
        Column::new(
            "Address",
            "string",
            "Addresses the load balancer serves the ingress at.",
        ),
        Column::new("Ports", "string", "Ports the ingress is served on."),
        Column::age(),
    ],
    cells: |ing| {
        let ports = if items(ing, "spec.tls").is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            name(ing),
            json!(opt_str(ing, "spec.ingressClassName").unwrap_or("<none>")),
            json!(ingress_hosts(items(ing, "spec.rules"))),
            json!(load_balancer_addresses(at(ing, "status.loadBalancer"))),
            json!(ports),
            created(ing),
        ]
    },
};

/// Up to three rule hosts, "*" when no rule names one.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = str_at(rule, "host");
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".into();
    }
    let joined = hosts.join(",");
    if more {
        // Counts every rule past the third, hostless ones included, as upstream does.
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

const INGRESS_CLASS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Controller",
            "string",
            "The controller implementing the class.",
        ),
        Column::new(
            "Parameters",
            "string",
            "The resource holding the class's parameters.",
        ),
        Column::age(),
    ],
    cells: |ic| {
        let parameters = match at(ic, "spec.parameters").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let mut kind = str_at(p, "kind").to_string();
                if let Some(group) = opt_str(p, "apiGroup") {
                    kind = format!("{kind}.{group}");
                }
                format!("{kind}/{}", str_at(p, "name"))
            }
        };
        vec![
            name(ic),
            json!(str_at(ic, "spec.controller")),
            json!(parameters),
            created(ic),
        ]
    },
};

const NETWORK_POLICY: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Pod-Selector", "string", "The pods the policy applies to."),
        Column::age(),
    ],
    cells: |np| {
        vec![
            name(np),
            json!(format_selector(at(np, "spec.podSelector"))),
            created(np),
        ]
    },
};

const IP_ADDRESS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "ParentRef",
            "string",
            "The object the address is allocated to.",
        ),
    ],
    // Upstream emits an age cell with no column for it; clients ignore surplus cells.
    cells: |ip| {
        let parent = match at(ip, "spec.parentRef").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let group = str_at(p, "group");
                let resource = str_at(p, "resource");
                let mut text = if group.is_empty() {
                    resource.to_lowercase()
                } else {
                    format!("{resource}.{group}").to_lowercase()
                };
                let namespace = str_at(p, "namespace");
                if !namespace.is_empty() {
                    text = format!("{text}/{namespace}");
                }
                format!("{text}/{}", str_at(p, "name"))
            }
        };
        vec![name(ip), json!(parent), created(ip)]
    },
};

const SERVICE_CIDR: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "CIDRs",
            "string",
            "The ranges service IPs are allocated from.",
        ),
        Column::age(),
    ],
    cells: |sc| {
        let cidrs: Vec<&str> = items(sc, "spec.cidrs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        vec![name(sc), json!(cidrs.join(",")), created(sc)]
    },
};

const ENDPOINT_SLICE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "AddressType",
            "string",
            "The kind of addresses the slice holds.",
        ),
        Column::new("Ports", "string", "The ports of the endpoints."),
        Column::new("Endpoints", "string", "Addresses of the endpoints."),
        Column::age(),
    ],
    cells: |es| {
        vec![
            name(es),
            json!(str_at(es, "addressType")),
            json!(slice_ports(items(es, "ports"))),
            json!(slice_endpoints(items(es, "endpoints"))),
            created(es),
        ]
    },
};

const SLICE_MAX: usize = 3;

fn slice_ports(ports: &[Value]) -> String {
    let list: Vec<String> = ports
        .iter()
        .take(SLICE_MAX)
        .map(|p| match (opt_int(p, "port"), opt_str(p, "name")) {
            (Some(n), _) => n.to_string(),
            (None, Some(port_name)) => port_name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    list_with_more(&list, ports.len() > SLICE_MAX, ports.len(), SLICE_MAX)
}

fn slice_endpoints(endpoints: &[Value]) -> String {
    let all: Vec<String> = endpoints
        .iter()
        .flat_map(|e| items(e, "addresses"))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    let shown: Vec<String> = all.iter().take(SLICE_MAX).cloned().collect();
    list_with_more(&shown, all.len() > SLICE_MAX, all.len(), SLICE_MAX)
}

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    Some(match (group, kind) {
        ("networking.k8s.io", "Ingress") => &INGRESS,
        ("networking.k8s.io", "IngressClass") => &INGRESS_CLASS,
        ("networking.k8s.io", "NetworkPolicy") => &NETWORK_POLICY,
        ("networking.k8s.io", "IPAddress") => &IP_ADDRESS,
        ("networking.k8s.io", "ServiceCIDR") => &SERVICE_CIDR,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_cells() {
        let ing = json!({
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example"]}],
                     "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}, {"hostname": "lb.example"}]}}
        });
        let c = INGRESS.cells(&ing);
        assert_eq!(
            c[1..5],
            [
                json!("nginx"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("10.0.0.9,lb.example"),
                json!("80, 443"),
            ]
        );
        let c = INGRESS.cells(&json!({"spec": {"rules": [{"http": {}}]}}));
        assert_eq!(
            c[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    fn ingress_class(obj: &Value) -> [Value; 2] {
        let c = INGRESS_CLASS.cells(obj);
        [c[1].clone(), c[2].clone()]
    }

    #[test]
    fn ingress_class_and_policy() {
        let ic = json!({"spec": {"controller": "k8s.io/ingress-nginx",
                                 "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"}}});
        assert_eq!(
            ingress_class(&ic),
            [
                json!("k8s.io/ingress-nginx"),
                json!("Params.k8s.example.com/p")
            ]
        );
        let ic =
            json!({"spec": {"controller": "c", "parameters": {"kind": "ConfigMap", "name": "p"}}});
        assert_eq!(ingress_class(&ic)[1], json!("ConfigMap/p"));
        assert_eq!(ingress_class(&json!({}))[1], json!("<none>"));

        let np = json!({"spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(NETWORK_POLICY.cells(&np)[1], json!("role=db"));
        assert_eq!(
            NETWORK_POLICY.cells(&json!({"spec": {"podSelector": {}}}))[1],
            json!("<none>")
        );
    }

    #[test]
    fn endpoint_slice_cells() {
        let es = json!({
            "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}, {}, {"port": 9}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}]
        });
        let c = ENDPOINT_SLICE.cells(&es);
        assert_eq!(
            c[1..4],
            [
                json!("IPv4"),
                json!("80,metrics,* + 1 more..."),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
            ]
        );
        let c = ENDPOINT_SLICE.cells(&json!({"addressType": "IPv6"}));
        assert_eq!(c[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn ip_address_and_cidr() {
        let ip = json!({"metadata": {"name": "10.96.0.1"},
                        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}});
        let c = IP_ADDRESS.cells(&ip);
        assert_eq!(c[1], json!("services/default/kubernetes"));
        assert_eq!(c.len(), 3);
        let ip = json!({"spec": {"parentRef": {"group": "Gateway.Networking.k8s.io", "resource": "Gateways", "name": "g"}}});
        assert_eq!(
            IP_ADDRESS.cells(&ip)[1],
            json!("gateways.gateway.networking.k8s.io/g")
        );
        let sc = json!({"spec": {"cidrs": ["10.96.0.0/16", "fd00::/108"]}});
        assert_eq!(SERVICE_CIDR.cells(&sc)[1], json!("10.96.0.0/16,fd00::/108"));
    }
}
