//! Printers of core kinds (pods and events have modules of their own).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{
    access_modes, annotation, at, containers, created, format_labels, int_at, items, len_at,
    load_balancer_addresses, name, opt_int, opt_str, quantity, str_at, str_or,
};
use super::Cells;

const NAMESPACE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Status", "string", "The status of the namespace"),
        Column::age(),
    ],
    cells: |obj| vec![name(obj), json!(str_at(obj, "status.phase")), created(obj)],
};

const CONTAINERS: &str = "Names of the template's containers.";
const IMAGES: &str = "Images of the template's containers.";

const POD_TEMPLATE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Containers", "string", CONTAINERS),
        Column::new("Images", "string", IMAGES),
        Column::new("Pod Labels", "string", "Labels of the pod template."),
    ],
    cells: |obj| {
        let (names, images) = containers(at(obj, "template.spec"));
        vec![
            name(obj),
            json!(names),
            json!(images),
            json!(format_labels(at(obj, "template.metadata.labels"))),
        ]
    },
};

const REPLICATION_CONTROLLER: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Desired", "integer", "Number of replicas wanted."),
        Column::new("Current", "integer", "Number of replicas that exist."),
        Column::new("Ready", "integer", "Number of ready replicas."),
        Column::age(),
        Column::new("Containers", "string", CONTAINERS).wide(),
        Column::new("Images", "string", IMAGES).wide(),
        Column::new("Selector", "string", "Labels the controlled pods carry.").wide(),
    ],
    cells: |obj| {
        let (names, images) = containers(at(obj, "spec.template.spec"));
        vec![
            name(obj),
            json!(opt_int(obj, "spec.replicas").unwrap_or(1)),
            json!(int_at(obj, "status.replicas")),
            json!(int_at(obj, "status.readyReplicas")),
            created(obj),
            json!(names),
            json!(images),
            json!(format_labels(at(obj, "spec.selector"))),
        ]
    },
};

const SERVICE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Type", "string", "How the service is exposed."),
        Column::new(
            "Cluster-IP",
            "string",
            "The service's virtual IP inside the cluster.",
        ),
        Column::new(
            "External-IP",
            "string",
            "Addresses the service is reachable at from outside.",
        ),
        Column::new("Port(s)", "string", "Ports the service exposes."),
        Column::age(),
        Column::new(
            "Selector",
            "string",
            "Labels of the pods behind the service.",
        )
        .wide(),
    ],
    cells: |svc| {
        vec![
            name(svc),
            json!(service_type(svc)),
            json!(cluster_ip(svc)),
            json!(external_ip(svc)),
            json!(service_ports(svc)),
            created(svc),
            json!(format_labels(at(svc, "spec.selector"))),
        ]
    },
};

/// A service's type; the API defaults an unset one to ClusterIP.
fn service_type(svc: &Value) -> &str {
    str_or(svc, "spec.type", "ClusterIP")
}

fn cluster_ip(svc: &Value) -> &str {
    if let Some(first) = items(svc, "spec.clusterIPs").first() {
        return first.as_str().unwrap_or("");
    }
    match opt_str(svc, "spec.clusterIP") {
        Some(ip) if !ip.is_empty() => ip,
        _ => "<none>",
    }
}

fn external_ips(svc: &Value) -> Vec<&str> {
    items(svc, "spec.externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn external_ip(svc: &Value) -> String {
    let ext = external_ips(svc);
    match service_type(svc) {
        "ClusterIP" | "NodePort" => {
            if ext.is_empty() {
                "<none>".into()
            } else {
                ext.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_addresses(at(svc, "status.loadBalancer"));
            if !ext.is_empty() {
                let mut all: Vec<&str> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(','));
                }
                all.extend(ext);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".into()
            }
        }
        "ExternalName" => str_at(svc, "spec.externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = items(svc, "spec.ports")
        .iter()
        .map(|p| {
            let port = int_at(p, "port");
            let protocol = str_or(p, "protocol", "TCP");
            match int_at(p, "nodePort") {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

const ENDPOINTS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Endpoints",
            "string",
            "Addresses and ports of the endpoints.",
        ),
        Column::age(),
    ],
    cells: |obj| vec![name(obj), json!(format_endpoints(obj)), created(obj)],
};

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Up to three `ip:port` pairs, then how many more there are.
fn format_endpoints(obj: &Value) -> String {
    let subsets = items(obj, "subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for subset in subsets {
        let addresses = items(subset, "addresses");
        let ports = items(subset, "ports");
        // Headless services may have addresses without ports.
        if ports.is_empty() {
            count += addresses.len();
            for addr in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(addr, "ip").to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for addr in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(str_at(addr, "ip"), int_at(port, "port")));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

const NODE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Status", "string", "The status of the node"),
        Column::new("Roles", "string", "The roles of the node"),
        Column::age(),
        Column::new("Version", "string", "The kubelet's version."),
        Column::new(
            "Internal-IP",
            "string",
            "The node's first internal address.",
        )
        .wide(),
        Column::new(
            "External-IP",
            "string",
            "The node's first external address.",
        )
        .wide(),
        Column::new("OS-Image", "string", "The node's operating system image.").wide(),
        Column::new("Kernel-Version", "string", "The node's kernel version.").wide(),
        Column::new(
            "Container-Runtime",
            "string",
            "The node's container runtime and version.",
        )
        .wide(),
    ],
    cells: |node| {
        let info = |field: &str| {
            let v = str_at(node, &format!("status.nodeInfo.{field}"));
            json!(if v.is_empty() { "<unknown>" } else { v })
        };
        vec![
            name(node),
            json!(node_status(node)),
            json!(node_roles(node)),
            created(node),
            json!(str_at(node, "status.nodeInfo.kubeletVersion")),
            json!(node_address(node, "InternalIP")),
            json!(node_address(node, "ExternalIP")),
            info("osImage"),
            info("kernelVersion"),
            info("containerRuntimeVersion"),
        ]
    },
};

fn node_status(node: &Value) -> String {
    // Upstream keys conditions by type, so a repeated Ready condition counts as its last copy.
    let ready = items(node, "status.conditions")
        .iter()
        .rev()
        .find(|c| str_at(c, "type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, "status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if at(node, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

fn node_roles(node: &Value) -> String {
    const ROLE_PREFIX: &str = "node-role.kubernetes.io/";
    let mut roles = BTreeSet::new();
    for (key, value) in crate::meta::labels(node) {
        if let Some(role) = key.strip_prefix(ROLE_PREFIX) {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if key == "kubernetes.io/role" && !value.is_empty() {
            roles.insert(value);
        }
    }
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn node_address<'a>(node: &'a Value, kind: &str) -> &'a str {
    items(node, "status.addresses")
        .iter()
        .find(|a| str_at(a, "type") == kind)
        .map(|a| str_at(a, "address"))
        .unwrap_or("<none>")
}

const CONFIG_MAP: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Data", "string", "Number of keys, text and binary."),
        Column::age(),
    ],
    cells: |obj| {
        vec![
            name(obj),
            json!(len_at(obj, "data") + len_at(obj, "binaryData")),
            created(obj),
        ]
    },
};

const SECRET: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Type", "string", "The kind of secret."),
        Column::new("Data", "string", "Number of keys."),
        Column::age(),
    ],
    cells: |obj| {
        vec![
            name(obj),
            json!(str_at(obj, "type")),
            json!(len_at(obj, "data")),
            created(obj),
        ]
    },
};

const SERVICE_ACCOUNT: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Secrets",
            "string",
            "Number of secrets listed for the account.",
        ),
        Column::age(),
    ],
    cells: |obj| vec![name(obj), json!(len_at(obj, "secrets")), created(obj)],
};

fn deleting(obj: &Value) -> bool {
    at(obj, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null())
}

const PERSISTENT_VOLUME: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Capacity", "string", "The volume's storage capacity."),
        Column::new("Access Modes", "string", "Ways the volume can be mounted."),
        Column::new(
            "Reclaim Policy",
            "string",
            "What happens to the volume once released.",
        ),
        Column::new("Status", "string", "The volume's phase."),
        Column::new("Claim", "string", "The claim bound to the volume."),
        Column::new("StorageClass", "string", "StorageClass of the pv"),
        Column::new(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pv",
        ),
        Column::new("Reason", "string", "Why the volume is in its phase."),
        Column::age(),
        Column::new(
            "VolumeMode",
            "string",
            "Whether the volume is a filesystem or a block device.",
        )
        .wide(),
    ],
    cells: |pv| {
        let claim = if at(pv, "spec.claimRef").is_some_and(Value::is_object) {
            format!(
                "{}/{}",
                str_at(pv, "spec.claimRef.namespace"),
                str_at(pv, "spec.claimRef.name")
            )
        } else {
            String::new()
        };
        let phase = if deleting(pv) {
            "Terminating"
        } else {
            str_at(pv, "status.phase")
        };
        // The beta annotation predates the field and still takes precedence over it.
        let class = annotation(pv, "volume.beta.kubernetes.io/storage-class")
            .unwrap_or_else(|| str_at(pv, "spec.storageClassName"));
        vec![
            name(pv),
            json!(quantity(at(pv, "spec.capacity.storage"))),
            json!(access_modes(items(pv, "spec.accessModes"))),
            json!(str_or(pv, "spec.persistentVolumeReclaimPolicy", "Retain")),
            json!(phase),
            json!(claim),
            json!(class),
            json!(opt_str(pv, "spec.volumeAttributesClassName").unwrap_or("<unset>")),
            json!(str_at(pv, "status.reason")),
            created(pv),
            json!(opt_str(pv, "spec.volumeMode").unwrap_or("<unset>")),
        ]
    },
};

const PERSISTENT_VOLUME_CLAIM: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Status", "string", "The claim's phase."),
        Column::new("Volume", "string", "The volume bound to the claim."),
        Column::new("Capacity", "string", "The bound volume's capacity."),
        Column::new(
            "Access Modes",
            "string",
            "Ways the bound volume can be mounted.",
        ),
        Column::new("StorageClass", "string", "StorageClass of the pvc"),
        Column::new(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pvc",
        ),
        Column::age(),
        Column::new(
            "VolumeMode",
            "string",
            "Whether the volume is a filesystem or a block device.",
        )
        .wide(),
    ],
    cells: |pvc| {
        let phase = if deleting(pvc) {
            "Terminating"
        } else {
            str_at(pvc, "status.phase")
        };
        let volume = str_at(pvc, "spec.volumeName");
        // Capacity and modes describe the bound volume, so they stay blank until binding.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                quantity(at(pvc, "status.capacity.storage")),
                access_modes(items(pvc, "status.accessModes")),
            )
        };
        let class = annotation(pvc, "volume.beta.kubernetes.io/storage-class")
            .unwrap_or_else(|| str_at(pvc, "spec.storageClassName"));
        vec![
            name(pvc),
            json!(phase),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(class),
            json!(opt_str(pvc, "spec.volumeAttributesClassName").unwrap_or("<unset>")),
            created(pvc),
            json!(opt_str(pvc, "spec.volumeMode").unwrap_or("<unset>")),
        ]
    },
};

const RESOURCE_QUOTA: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Request",
            "string",
            "Usage against the quota's request limits.",
        ),
        Column::new(
            "Limit",
            "string",
            "Usage against the quota's `limits.*` limits.",
        ),
        Column::age(),
    ],
    cells: |obj| {
        let mut resources: Vec<&String> = at(obj, "status.hard")
            .and_then(Value::as_object)
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        resources.sort();
        let mut requests = Vec::new();
        let mut limits = Vec::new();
        for res in resources {
            let used = quantity(at(obj, "status.used").and_then(|u| u.get(res)));
            let hard = quantity(at(obj, "status.hard").and_then(|h| h.get(res)));
            let entry = format!("{res}: {used}/{hard}");
            let mut pieces = res.split('.');
            if pieces.next() == Some("limits") && pieces.next().is_some() {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
        vec![
            name(obj),
            json!(requests.join(", ")),
            json!(limits.join(", ")),
            created(obj),
        ]
    },
};

const COMPONENT_STATUS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Status", "string", "Whether the component reports healthy."),
        Column::new("Message", "string", "The component's health message."),
        Column::new("Error", "string", "The component's health error."),
    ],
    cells: |obj| {
        let healthy = items(obj, "conditions")
            .iter()
            .find(|c| str_at(c, "type") == "Healthy");
        let (status, message, error) = match healthy {
            Some(c) => (
                if str_at(c, "status") == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                },
                str_at(c, "message"),
                str_at(c, "error"),
            ),
            None => ("Unknown", "", ""),
        };
        vec![name(obj), json!(status), json!(message), json!(error)]
    },
};

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    if !group.is_empty() {
        return None;
    }
    Some(match kind {
        "Namespace" => &NAMESPACE,
        "Pod" => &super::pod::Pod,
        "PodTemplate" => &POD_TEMPLATE,
        "ReplicationController" => &REPLICATION_CONTROLLER,
        "Service" => &SERVICE,
        "Endpoints" => &ENDPOINTS,
        "Node" => &NODE,
        "ConfigMap" => &CONFIG_MAP,
        "Secret" => &SECRET,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "PersistentVolume" => &PERSISTENT_VOLUME,
        "PersistentVolumeClaim" => &PERSISTENT_VOLUME_CLAIM,
        "ResourceQuota" => &RESOURCE_QUOTA,
        "ComponentStatus" => &COMPONENT_STATUS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(kind: &str, obj: Value) -> Vec<Value> {
        lookup("", kind).expect("printer").cells(&obj)
    }

    fn svc(spec: Value, status: Value) -> Vec<Value> {
        cells(
            "Service",
            json!({"metadata": {"name": "s"}, "spec": spec, "status": status}),
        )
    }

    #[test]
    fn service_columns() {
        let c = svc(
            json!({"type": "ClusterIP", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                   "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                   "selector": {"app": "web", "tier": "fe"}}),
            json!({}),
        );
        assert_eq!(
            c[1..5],
            [
                json!("ClusterIP"),
                json!("10.0.0.1"),
                json!("<none>"),
                json!("80/TCP,53/UDP")
            ]
        );
        assert_eq!(c[6], json!("app=web,tier=fe"));

        let c = svc(
            json!({"type": "NodePort", "clusterIP": "10.0.0.2",
                           "ports": [{"port": 80, "nodePort": 30080}],
                           "externalIPs": ["1.2.3.4", "5.6.7.8"]}),
            json!({}),
        );
        assert_eq!(
            c[2..5],
            [
                json!("10.0.0.2"),
                json!("1.2.3.4,5.6.7.8"),
                json!("80:30080/TCP")
            ]
        );
        assert_eq!(c[6], json!("<none>"));

        let c = svc(
            json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.3"], "ports": []}),
            json!({}),
        );
        assert_eq!(c[3..5], [json!("<pending>"), json!("<none>")]);

        let lb = json!({"loadBalancer": {"ingress": [
            {"hostname": "lb.example.com"}, {"ip": "9.9.9.9"}, {"ip": "9.9.9.9"}]}});
        let c = svc(json!({"type": "LoadBalancer"}), lb.clone());
        assert_eq!(c[3], json!("9.9.9.9,lb.example.com"));
        let c = svc(
            json!({"type": "LoadBalancer", "externalIPs": ["1.1.1.1"]}),
            lb,
        );
        assert_eq!(c[3], json!("9.9.9.9,lb.example.com,1.1.1.1"));

        let c = svc(
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        );
        assert_eq!(c[2..4], [json!("<none>"), json!("db.example.com")]);

        let c = svc(json!({"clusterIP": "None"}), json!({}));
        assert_eq!(
            c[1..4],
            [json!("ClusterIP"), json!("None"), json!("<none>")]
        );

        assert_eq!(cells("Service", json!(null)).len(), 7);
    }

    #[test]
    fn node_status_and_roles() {
        let node = json!({
            "metadata": {"name": "n1", "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "master",
                "other": "x"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"},
                              {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "",
                             "containerRuntimeVersion": "containerd://2.0"}}
        });
        let c = cells("Node", node);
        assert_eq!(c[1], json!("Ready,SchedulingDisabled"));
        assert_eq!(c[2], json!("control-plane,master"));
        assert_eq!(
            c[4..],
            [
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("containerd://2.0")
            ]
        );

        let c = cells(
            "Node",
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        );
        assert_eq!(c[1..3], [json!("NotReady"), json!("<none>")]);
        let c = cells("Node", json!({}));
        assert_eq!(c[1], json!("Unknown"));
    }

    #[test]
    fn endpoints_cells() {
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "10.1.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}, {"port": 443}]}
        ]});
        assert_eq!(
            format_endpoints(&ep),
            "10.1.0.1:80,[fd00::1]:80,10.1.0.1:443 + 1 more..."
        );
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.1.0.1"}]}]});
        assert_eq!(format_endpoints(&headless), "10.1.0.1");
        assert_eq!(format_endpoints(&json!({})), "<none>");
    }

    #[test]
    fn volumes_and_claims() {
        let pv = json!({
            "metadata": {"name": "pv1"},
            "spec": {"capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
                     "claimRef": {"namespace": "ns", "name": "data"}},
            "status": {"phase": "Bound"}
        });
        let c = cells("PersistentVolume", pv);
        assert_eq!(
            c[1..9],
            [
                json!("1Gi"),
                json!("RWO"),
                json!("Retain"),
                json!("Bound"),
                json!("ns/data"),
                json!("fast"),
                json!("<unset>"),
                json!("")
            ]
        );
        assert_eq!(c[10], json!("<unset>"));

        let pending = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}},
                             "status": {"phase": "Pending"}});
        let c = cells("PersistentVolumeClaim", pending);
        assert_eq!(
            c[1..6],
            [
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("fast")
            ]
        );
        let bound = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"},
                           "spec": {"volumeName": "pv1", "volumeMode": "Filesystem"},
                           "status": {"phase": "Bound", "capacity": {"storage": "5Gi"},
                                      "accessModes": ["ReadWriteMany", "ReadOnlyMany"]}});
        let c = cells("PersistentVolumeClaim", bound);
        assert_eq!(
            c[1..5],
            [
                json!("Terminating"),
                json!("pv1"),
                json!("5Gi"),
                json!("ROX,RWX")
            ]
        );
        assert_eq!(c[8], json!("Filesystem"));
    }

    #[test]
    fn quota_columns() {
        let rq = json!({"status": {
            "hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi", "limitsfoo": "1"},
            "used": {"pods": "3", "limits.cpu": "500m"}}});
        let c = cells("ResourceQuota", rq);
        assert_eq!(
            c[1],
            json!("limitsfoo: 0/1, pods: 3/10, requests.memory: 0/1Gi")
        );
        assert_eq!(c[2], json!("limits.cpu: 500m/2"));
    }

    #[test]
    fn small_kinds() {
        let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(cells("ConfigMap", cm)[1], json!(3));
        let s = json!({"type": "Opaque", "data": {"a": ""}});
        assert_eq!(cells("Secret", s)[1..3], [json!("Opaque"), json!(1)]);
        assert_eq!(cells("ServiceAccount", json!({}))[1], json!(0));
        let rc = json!({"spec": {"selector": {"app": "x"},
                                 "template": {"spec": {"containers": [{"name": "a", "image": "i:1"}, {"name": "b", "image": "j"}]}}},
                        "status": {"replicas": 2, "readyReplicas": 1}});
        let c = cells("ReplicationController", rc);
        assert_eq!(c[1..4], [json!(1), json!(2), json!(1)]);
        assert_eq!(c[5..], [json!("a,b"), json!("i:1,j"), json!("app=x")]);
        let cs = json!({"conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(
            cells("ComponentStatus", cs)[1..],
            [json!("Healthy"), json!("ok"), json!("")]
        );
        let pt = json!({"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "img"}]}}});
        assert_eq!(
            cells("PodTemplate", pt)[1..],
            [json!("c"), json!("img"), json!("a=b")]
        );
    }
}
