//! Service ClusterIP and NodePort allocation.
//!
//! ClusterIPs are allocated as upstream v1.33 does: each one is an `IPAddress` object named by
//! the address, so a second claim of the same address fails in the store itself. NodePorts are
//! tracked in memory, loaded from the stored Services at start.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use ferrokube_storage::Error as StoreError;
use serde_json::{json, Value};

use crate::meta;
use crate::registry::Registry;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult, FieldError};

/// An IPv4 CIDR such as 10.96.0.0/12.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        let bits: u8 = bits
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        if bits > 30 {
            return Err(format!("the service CIDR {s} is too small"));
        }
        let mask = u32::MAX << (32 - bits);
        Ok(Cidr {
            base: u32::from(addr) & mask,
            bits,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.bits)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.bits);
        u32::from(ip) & mask == self.base
    }

    /// The n-th address of the range (the first usable one is 1).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + n)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.bits)
    }
}

pub struct Allocators {
    pub service_cidr: Cidr,
    pub node_ports: (u16, u16),
    used_ports: Mutex<BTreeSet<(u16, String)>>,
}

/// What an allocation took, to give back if the write that needed it fails.
#[must_use]
pub struct Reservation {
    ips: Vec<String>,
    ports: Vec<(u16, String)>,
}

impl Reservation {
    fn none() -> Self {
        Reservation {
            ips: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// The write succeeded: keep what was allocated.
    pub fn keep(self) {}

    /// The write failed: release what was allocated for it.
    pub async fn undo(self, reg: &Registry) {
        for ip in &self.ips {
            let _ = reg.store.delete(&ip_key(ip), None).await;
        }
        let mut used = reg.alloc.used_ports.lock().unwrap();
        for p in &self.ports {
            used.remove(p);
        }
    }
}

fn ip_key(ip: &str) -> String {
    format!("/registry/ipaddresses/{ip}")
}

fn is_service(res: &Resource) -> bool {
    res.group.is_empty() && res.kind == "Service"
}

fn service_type(svc: &Value) -> &str {
    meta::path(svc, "spec.type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

fn port_protocol(port: &Value) -> String {
    port.get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("TCP")
        .to_string()
}

impl Allocators {
    pub fn new(service_cidr: Cidr, node_ports: (u16, u16)) -> Self {
        Allocators {
            service_cidr,
            node_ports,
            used_ports: Mutex::new(BTreeSet::new()),
        }
    }

    /// Records the node ports of Services already stored.
    pub fn load(&self, services: &[Value]) {
        let mut used = self.used_ports.lock().unwrap();
        for svc in services {
            for p in ports(svc) {
                if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                    used.insert((n as u16, port_protocol(&p)));
                }
            }
        }
    }

    /// The address the `kubernetes` Service gets: the first of the range.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.service_cidr.nth(1)
    }

    /// Allocates what a Service being created (old = None) or updated needs.
    pub async fn allocate(
        &self,
        reg: &Registry,
        res: &Resource,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<Reservation> {
        if !is_service(res) {
            return Ok(Reservation::none());
        }
        let mut reservation = Reservation::none();
        let name = meta::name(svc).to_string();
        let invalid = |errs: Vec<FieldError>| ApiError::invalid("", "Service", &name, &errs);

        // ClusterIP.
        let kind = service_type(svc).to_string();
        let old_ip = old
            .and_then(|o| meta::path(o, "spec.clusterIP"))
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
            .map(str::to_string);
        let asked = meta::path(svc, "spec.clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if kind == "ExternalName" {
            if !asked.is_empty() {
                return Err(invalid(vec![FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                )]));
            }
        } else if asked == "None" {
            set_cluster_ips(svc, "None");
        } else if let Some(old_ip) =
            old_ip.filter(|_| old.is_some_and(|o| service_type(o) != "ExternalName"))
        {
            // Once set, the address stays (validation rejects a change).
            if asked.is_empty() {
                set_cluster_ips(svc, &old_ip);
            }
        } else {
            let ip = self
                .claim_ip(reg, svc, &asked, dry_run)
                .await
                .map_err(|detail| {
                    invalid(vec![FieldError::invalid(
                        "spec.clusterIPs[0]",
                        asked.clone(),
                        format!("failed to allocate IP {asked}: {detail}"),
                    )])
                })?;
            if !dry_run {
                reservation.ips.push(ip.clone());
            }
            set_cluster_ips(svc, &ip);
        }

        // NodePorts.
        let mut errs = Vec::new();
        let old_ports: BTreeSet<(u16, String)> = old
            .filter(|o| wants_node_ports(o))
            .map(|o| {
                ports(o)
                    .iter()
                    .filter_map(|p| Some((p.get("nodePort")?.as_u64()? as u16, port_protocol(p))))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(list) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            let wants = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
            let mut used = self.used_ports.lock().unwrap();
            for (i, port) in list.iter_mut().enumerate() {
                if !wants {
                    if let Some(p) = port.as_object_mut() {
                        p.remove("nodePort");
                    }
                    continue;
                }
                let proto = port_protocol(port);
                match port.get("nodePort").and_then(Value::as_u64) {
                    Some(n) if n != 0 => {
                        let n16 = n as u16;
                        let key = (n16, proto.clone());
                        if old_ports.contains(&key) {
                            continue;
                        }
                        if n > u16::MAX as u64 || n16 < self.node_ports.0 || n16 > self.node_ports.1
                        {
                            errs.push(FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                n,
                                format!(
                                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                                    self.node_ports.0, self.node_ports.1
                                ),
                            ));
                        } else if used.contains(&key) || reservation.ports.contains(&key) {
                            errs.push(FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                n,
                                "provided port is already allocated",
                            ));
                        } else {
                            reservation.ports.push(key);
                        }
                    }
                    _ => {
                        let span = (self.node_ports.1 - self.node_ports.0) as u32 + 1;
                        let start = rand::random::<u32>() % span;
                        let free = (0..span)
                            .map(|k| self.node_ports.0 + ((start + k) % span) as u16)
                            .find(|n| {
                                let key = (*n, proto.clone());
                                !used.contains(&key) && !reservation.ports.contains(&key)
                            });
                        match free {
                            Some(n) => {
                                port["nodePort"] = json!(n);
                                reservation.ports.push((n, proto));
                            }
                            None => errs.push(FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                0,
                                "range is full",
                            )),
                        }
                    }
                }
            }
            if errs.is_empty() && !dry_run {
                used.extend(reservation.ports.iter().cloned());
            }
        }
        if !errs.is_empty() {
            let r = Reservation {
                ips: reservation.ips,
                ports: Vec::new(),
            };
            r.undo(reg).await;
            return Err(invalid(errs));
        }
        if dry_run {
            reservation.ports.clear();
        }
        Ok(reservation)
    }

    /// Claims `asked`, or a free address when it is empty. Errors are upstream's detail text.
    async fn claim_ip(
        &self,
        reg: &Registry,
        svc: &Value,
        asked: &str,
        dry_run: bool,
    ) -> Result<String, String> {
        let claim = |ip: String| async move {
            if dry_run {
                return match reg.store.get(&ip_key(&ip)).await {
                    Ok(Some(_)) => Err(StoreError::AlreadyExists(ip)),
                    Ok(None) => Ok(ip),
                    Err(e) => Err(e),
                };
            }
            let obj = json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IPAddress",
                "metadata": {
                    "name": ip,
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": meta::now_rfc3339(),
                    "labels": {
                        "ipaddress.kubernetes.io/ip-family": "IPv4",
                        "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
                    },
                },
                "spec": {"parentRef": {
                    "group": "",
                    "resource": "services",
                    "namespace": meta::namespace(svc),
                    "name": meta::name(svc),
                }},
            });
            reg.store
                .create(&ip_key(&ip), serde_json::to_vec(&obj).unwrap_or_default())
                .await
                .map(|_| ip)
        };
        if !asked.is_empty() {
            let ip: Ipv4Addr = asked.parse().map_err(|_| {
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()
            })?;
            if !self.service_cidr.contains(ip) || u32::from(ip) == self.service_cidr.base {
                return Err(format!(
                    "the provided IP ({asked}) is not in the valid range. The range of valid IPs is {}",
                    self.service_cidr
                ));
            }
            return match claim(asked.to_string()).await {
                Ok(ip) => Ok(ip),
                Err(StoreError::AlreadyExists(_)) => Err("provided IP is already allocated".into()),
                Err(e) => Err(e.to_string()),
            };
        }
        // Random addresses come from above the first sixteenth of the range, which upstream
        // leaves to addresses chosen by hand (the first one is the `kubernetes` Service's).
        let size = self.service_cidr.size();
        let reserved = (size / 16).clamp(1, 256);
        let span = size - reserved - 1;
        let start = rand::random::<u32>() % span;
        for k in 0..span {
            let n = reserved + (start + k) % span;
            match claim(self.service_cidr.nth(n).to_string()).await {
                Ok(ip) => return Ok(ip),
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        // The random part is full: fall back to the hand-picked part.
        for n in 1..reserved {
            match claim(self.service_cidr.nth(n).to_string()).await {
                Ok(ip) => return Ok(ip),
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("range is full".into())
    }

    /// Gives back what a deleted Service held.
    pub async fn release(&self, reg: &Registry, res: &Resource, svc: &Value) {
        if !is_service(res) {
            return;
        }
        if let Some(ip) = meta::path(svc, "spec.clusterIP").and_then(Value::as_str) {
            if !ip.is_empty() && ip != "None" {
                let _ = reg.store.delete(&ip_key(ip), None).await;
            }
        }
        let mut used = self.used_ports.lock().unwrap();
        for p in ports(svc) {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                used.remove(&(n as u16, port_protocol(&p)));
            }
        }
    }
}

fn ports(svc: &Value) -> Vec<Value> {
    meta::path(svc, "spec.ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn set_cluster_ips(svc: &mut Value, ip: &str) {
    if !svc.get("spec").is_some_and(Value::is_object) {
        svc["spec"] = json!({});
    }
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);
    if ip != "None" {
        svc["spec"]["ipFamilies"] = json!(["IPv4"]);
        if svc["spec"].get("ipFamilyPolicy").is_none() {
            svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        let c = Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.nth(1), Ipv4Addr::new(10, 96, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 112, 0, 0)));
        assert!(Cidr::parse("10.0.0.0").is_err());
    }
}
