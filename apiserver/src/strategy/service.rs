//! Services and the endpoints behind them (Endpoints, EndpointSlices).
//!
//! Cluster IP and node port allocation happen in `alloc.rs` after validation; here a Service
//! is defaulted, its allocated values carried over on update (as upstream's
//! `patchAllocatedValues`), its type-dependent fields dropped, and its shape validated.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::util::{self, default_val, At, Errs};
use super::{NameRule, Strategy};
use crate::status::FieldError;

pub(super) struct Service;

fn svc_type(spec: &Map<String, Value>) -> &str {
    spec.get("type").and_then(Value::as_str).unwrap_or("")
}

fn externally_accessible(spec: &Map<String, Value>) -> bool {
    let t = svc_type(spec);
    t == "LoadBalancer"
        || t == "NodePort"
        || (t == "ClusterIP"
            && spec
                .get("externalIPs")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()))
}

fn needs_cluster_ip(spec: &Map<String, Value>) -> bool {
    matches!(svc_type(spec), "ClusterIP" | "NodePort" | "LoadBalancer")
}

fn needs_node_port(spec: &Map<String, Value>) -> bool {
    match svc_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => {
            spec.get("allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

fn needs_hc_node_port(spec: &Map<String, Value>) -> bool {
    svc_type(spec) == "LoadBalancer"
        && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
}

fn is_headless(spec: &At) -> bool {
    let ips = spec.child("clusterIPs").items(&mut Vec::new());
    ips.len() == 1 && ips[0].s() == Some("None")
}

impl Strategy for Service {
    fn name_rule(&self) -> NameRule {
        NameRule::Label1035
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        let Some(spec) = util::ensure_obj(map, "spec") else {
            return;
        };
        util::default_str(spec, "sessionAffinity", "None");
        match spec.get("sessionAffinity").and_then(Value::as_str) {
            Some("None") => {
                spec.remove("sessionAffinityConfig");
            }
            Some("ClientIP") => {
                let has_timeout = spec
                    .get("sessionAffinityConfig")
                    .and_then(|c| c.get("clientIP"))
                    .and_then(|c| c.get("timeoutSeconds"))
                    .is_some_and(|t| !t.is_null());
                if !has_timeout {
                    spec.insert(
                        "sessionAffinityConfig".into(),
                        json!({"clientIP": {"timeoutSeconds": 10800}}),
                    );
                }
            }
            _ => {}
        }
        util::default_str(spec, "type", "ClusterIP");
        util::each_obj_mut(spec, "ports", |p| {
            util::default_str(p, "protocol", "TCP");
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(v) => util::as_integer(v) == Some(0),
            };
            if unset {
                if let Some(port) = p.get("port").cloned() {
                    p.insert("targetPort".into(), port);
                }
            }
        });
        if externally_accessible(spec) {
            util::default_str(spec, "externalTrafficPolicy", "Cluster");
        }
        if matches!(svc_type(spec), "NodePort" | "LoadBalancer" | "ClusterIP") {
            default_val(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        let lb = svc_type(spec) == "LoadBalancer";
        if lb {
            default_val(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        if lb {
            if let Some(ingress) = map
                .get_mut("status")
                .and_then(|s| s.get_mut("loadBalancer"))
                .and_then(|l| l.get_mut("ingress"))
                .and_then(Value::as_array_mut)
            {
                for i in ingress.iter_mut().filter_map(Value::as_object_mut) {
                    if i.get("ip")
                        .and_then(Value::as_str)
                        .is_some_and(|ip| !ip.is_empty())
                    {
                        default_val(i, "ipMode", json!("VIP"));
                    }
                }
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        map.insert("status".into(), json!({"loadBalancer": {}}));
        if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
            let ip = spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let no_ips = spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if !ip.is_empty() && no_ips {
                spec.insert("clusterIPs".into(), json!([ip]));
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        self.defaults(new);
        let Some(old_spec) = old.get("spec").and_then(Value::as_object) else {
            return;
        };
        let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        patch_allocated(spec, old_spec);
        normalize_cluster_ips(spec, old_spec);
        drop_type_dependent(spec, old_spec);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_service(&mut errs, obj);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let (n, o) = (
            At::new(new, "").child("spec"),
            At::new(old, "").child("spec"),
        );
        cluster_ip_changes(&mut errs, &n, &o);
        ip_family_changes(&mut errs, &n, &o);
        let lb = |s: &At| s.child("type").s() == Some("LoadBalancer");
        if lb(&n) && lb(&o) && n.child("loadBalancerClass").v != o.child("loadBalancerClass").v {
            errs.push(FieldError::invalid(
                "spec.loadBalancerClass",
                n.child("loadBalancerClass").value(),
                "may not change once set",
            ));
        }
        let hc = |s: &At| lb(s) && s.child("externalTrafficPolicy").s() == Some("Local");
        if hc(&n) && hc(&o) && n.child("healthCheckNodePort").v != o.child("healthCheckNodePort").v
        {
            errs.push(FieldError::forbidden(
                "spec.healthCheckNodePort",
                util::IMMUTABLE,
            ));
        }
        validate_service(&mut errs, new);
        errs
    }
}

/// Keeps what was allocated when the client left it out, so that replacing a Service with
/// its original manifest is not a change.
fn patch_allocated(spec: &mut Map<String, Value>, old: &Map<String, Value>) {
    if needs_cluster_ip(old) && needs_cluster_ip(spec) {
        let ip_unset = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
        if ip_unset {
            if let Some(ip) = old.get("clusterIP") {
                spec.insert("clusterIP".into(), ip.clone());
            }
        }
        let ips_unset = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if ips_unset {
            if let Some(ips) = old
                .get("clusterIPs")
                .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
            {
                spec.insert("clusterIPs".into(), ips.clone());
            }
        }
        if spec.get("clusterIP") == old.get("clusterIP") {
            for f in ["ipFamilies", "ipFamilyPolicy"] {
                if util::is_unset(spec, f) {
                    if let Some(v) = old.get(f) {
                        spec.insert(f.into(), v.clone());
                    }
                }
            }
        }
    }
    if needs_node_port(old) && needs_node_port(spec) {
        let old_ports: Vec<Value> = old
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        util::each_obj_mut(spec, "ports", |p| {
            if p.get("nodePort").and_then(util::as_integer).unwrap_or(0) != 0 {
                return;
            }
            let same = old_ports.iter().find(|o| {
                o.get("port") == p.get("port")
                    && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                        == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
            });
            if let Some(np) = same
                .and_then(|o| o.get("nodePort"))
                .filter(|n| util::as_integer(n).unwrap_or(0) != 0)
            {
                p.insert("nodePort".into(), np.clone());
            }
        });
    }
    if needs_hc_node_port(old)
        && needs_hc_node_port(spec)
        && util::is_unset(spec, "healthCheckNodePort")
    {
        if let Some(v) = old.get("healthCheckNodePort") {
            spec.insert("healthCheckNodePort".into(), v.clone());
        }
    }
}

/// Upstream's `NormalizeClusterIPs` for an update: keeps `clusterIP` and `clusterIPs` in step
/// for clients that only know one of them.
fn normalize_cluster_ips(spec: &mut Map<String, Value>, old: &Map<String, Value>) {
    let ip = |m: &Map<String, Value>| {
        m.get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let ips = |m: &Map<String, Value>| {
        m.get("clusterIPs")
            .cloned()
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    };
    let (new_ip, old_ip) = (ip(spec), ip(old));
    if ips(old).is_some() && ips(spec).is_none() && old_ip == new_ip {
        if let Some(v) = ips(old) {
            spec.insert("clusterIPs".into(), v);
        }
    }
    if old_ip != new_ip {
        let same_ips = ips(spec) == ips(old);
        if !old_ip.is_empty() && new_ip.is_empty() {
            if same_ips {
                spec.remove("clusterIPs");
            }
        } else if same_ips {
            spec.insert("clusterIPs".into(), json!([new_ip]));
        }
    }
}

/// Upstream's `dropTypeDependentFields`: a type change clears what the old type implied,
/// unless the client changed those fields too.
fn drop_type_dependent(spec: &mut Map<String, Value>, old: &Map<String, Value>) {
    let same = |f: &str, spec: &Map<String, Value>| spec.get(f) == old.get(f);
    if needs_cluster_ip(old) && !needs_cluster_ip(spec) {
        if same("clusterIP", spec) && same("clusterIPs", spec) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if same("ipFamilies", spec) {
            spec.remove("ipFamilies");
        }
        if same("ipFamilyPolicy", spec) {
            spec.remove("ipFamilyPolicy");
        }
    }
    let node_ports = |m: &Map<String, Value>| -> Vec<Value> {
        m.get("ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| p.get("nodePort").cloned().unwrap_or(Value::Null))
                    .collect()
            })
            .unwrap_or_default()
    };
    if needs_node_port(old) && !needs_node_port(spec) && node_ports(spec) == node_ports(old) {
        util::each_obj_mut(spec, "ports", |p| {
            p.remove("nodePort");
        });
    }
    if needs_hc_node_port(old) && !needs_hc_node_port(spec) && same("healthCheckNodePort", spec) {
        spec.remove("healthCheckNodePort");
    }
    if svc_type(old) == "LoadBalancer" && svc_type(spec) != "LoadBalancer" {
        let both = spec
            .get("allocateLoadBalancerNodePorts")
            .is_some_and(Value::is_boolean)
            && old
                .get("allocateLoadBalancerNodePorts")
                .is_some_and(Value::is_boolean);
        if both && same("allocateLoadBalancerNodePorts", spec) {
            spec.remove("allocateLoadBalancerNodePorts");
        }
        if same("loadBalancerClass", spec) {
            spec.remove("loadBalancerClass");
        }
    }
    if externally_accessible(old)
        && !externally_accessible(spec)
        && same("externalTrafficPolicy", spec)
    {
        spec.remove("externalTrafficPolicy");
    }
}

fn validate_service(errs: &mut Errs, obj: &Value) {
    let root = At::new(obj, "");
    let ann = crate::meta::annotations(obj);
    const HINTS: &str = "service.kubernetes.io/topology-aware-hints";
    const MODE: &str = "service.kubernetes.io/topology-mode";
    if let (Some(h), Some(m)) = (ann.get(HINTS), ann.get(MODE)) {
        if h != m {
            errs.push(FieldError::invalid(
                format!("metadata.annotations[{MODE}]"),
                m.as_str(),
                format!("must match annotations[{HINTS}] when both are specified"),
            ));
        }
    }
    let spec = root.child("spec");
    if spec.is_set() && spec.obj(errs).is_none() {
        return;
    }
    let ty = spec.child("type").s().unwrap_or("");
    let headless = is_headless(&spec);
    let ports = spec.child("ports");
    let port_items = ports.items(errs);
    if port_items.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(ports.path.clone(), ""));
    }
    let ips = spec.child("clusterIPs");
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            ips.index_path(0),
            "None",
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            if ips.len() > 0 {
                errs.push(FieldError::forbidden(
                    ips.path.clone(),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.child("ipFamilies").len() > 0 {
                errs.push(FieldError::forbidden(
                    spec.child("ipFamilies").path,
                    "may not be set for ExternalName services",
                ));
            }
            if spec.child("ipFamilyPolicy").is_set() {
                errs.push(FieldError::forbidden(
                    spec.child("ipFamilyPolicy").path,
                    "may not be set for ExternalName services",
                ));
            }
            let en = spec.child("externalName");
            let name = en.string(errs);
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required(en.path.clone(), ""));
            } else {
                util::dns_subdomain(errs, &en.path, cname);
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    let require_name = port_items.len() > 1;
    for p in &port_items {
        if p.obj(errs).is_none() {
            continue;
        }
        let name = p.child("name");
        let n = name.string(errs);
        if require_name && n.is_empty() {
            errs.push(FieldError::required(name.path.clone(), ""));
        } else if !n.is_empty() {
            util::dns_label(errs, &name.path, n);
            if !names.insert(n) {
                errs.push(FieldError::duplicate(name.path.clone(), n));
            }
        }
        let port = p.child("port");
        let pn = port.int(errs).unwrap_or(0);
        for m in util::port_num_errors(pn) {
            errs.push(FieldError::invalid(port.path.clone(), pn, m));
        }
        let proto = p.child("protocol");
        match proto.string(errs) {
            "" => errs.push(FieldError::required(proto.path.clone(), "")),
            "TCP" | "UDP" | "SCTP" => {}
            other => errs.push(FieldError::not_supported(
                proto.path.clone(),
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
        util::port_num_or_name(errs, &p.child("targetPort"));
        let ap = p.child("appProtocol");
        if let Some(a) = ap.str(errs) {
            util::qualified_name(errs, &ap.path, a);
        }
        if let Some(np) = p.child("nodePort").int(errs).filter(|n| *n != 0) {
            if ty == "ClusterIP" {
                errs.push(FieldError::forbidden(
                    p.child("nodePort").path,
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
            let _ = np;
        }
    }
    let sel = spec.child("selector");
    if sel.is_set() {
        util::labels(errs, &sel);
    }
    let sa = spec.child("sessionAffinity");
    match sa.string(errs) {
        "" => errs.push(FieldError::required(sa.path.clone(), "")),
        "ClientIP" => {
            let cfg = spec.child("sessionAffinityConfig");
            let timeout = cfg.at("clientIP.timeoutSeconds");
            if !cfg.is_set() {
                errs.push(FieldError::required(
                    cfg.path,
                    "when session affinity type is ClientIP",
                ));
            } else if !cfg.child("clientIP").is_set() {
                errs.push(FieldError::required(
                    cfg.child("clientIP").path,
                    "when session affinity type is ClientIP",
                ));
            } else if !timeout.is_set() {
                errs.push(FieldError::required(
                    timeout.path,
                    "when session affinity type is ClientIP",
                ));
            } else if let Some(t) = timeout.int(errs) {
                if t <= 0 || t > 86400 {
                    errs.push(FieldError::invalid(
                        timeout.path,
                        t,
                        "must be greater than 0 and less than 86400",
                    ));
                }
            }
        }
        "None" => {
            if spec.child("sessionAffinityConfig").is_set() {
                errs.push(FieldError::forbidden(
                    spec.child("sessionAffinityConfig").path,
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            sa.path.clone(),
            other,
            &["ClientIP", "None"],
        )),
    }
    if ty != "ExternalName" {
        cluster_ip_fields(errs, &spec, headless);
    }
    for ip in spec.child("externalIPs").items(errs) {
        let v = ip.string(errs);
        let before = errs.len();
        util::ip(errs, &ip.path, v);
        if errs.len() == before {
            non_special_ip(errs, &ip.path, v, true);
        }
    }
    let tp = spec.child("type");
    match tp.string(errs) {
        "" => errs.push(FieldError::required(tp.path.clone(), "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errs.push(FieldError::not_supported(
            tp.path.clone(),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    let mut node_ports = HashSet::new();
    let mut port_keys = HashSet::new();
    for p in &port_items {
        let proto = p.child("protocol").s().unwrap_or("").to_string();
        let np = p.child("nodePort").i().unwrap_or(0);
        if np != 0 && !node_ports.insert((proto.clone(), np)) {
            errs.push(FieldError::duplicate(p.child("nodePort").path, np));
        }
        let port = p.child("port").i().unwrap_or(0);
        if !port_keys.insert((proto.clone(), port)) {
            errs.push(FieldError::duplicate(
                p.path.clone(),
                json!({"port": port, "protocol": proto}),
            ));
        }
    }
    let ranges = spec.child("loadBalancerSourceRanges");
    let range_path = format!("{}.LoadBalancerSourceRanges", spec.path);
    if ranges.len() > 0 {
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                range_path.clone(),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.strings(errs).iter().enumerate() {
            util::cidr(errs, &format!("{range_path}[{i}]"), r.trim());
        }
    } else if let Some(v) = ann.get("service.beta.kubernetes.io/load-balancer-source-ranges") {
        let path = "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]";
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                path,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        let v = v.trim();
        if !v.is_empty() {
            for c in v.split(',') {
                util::cidr(errs, path, c.trim());
            }
        }
    }
    let alnp = spec.child("allocateLoadBalancerNodePorts");
    if alnp.is_set() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            alnp.path.clone(),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && !alnp.is_set() {
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    let lbc = spec.child("loadBalancerClass");
    if let Some(c) = lbc.str(errs) {
        if ty == "LoadBalancer" {
            util::qualified_name(errs, &lbc.path, c);
        } else {
            errs.push(FieldError::forbidden(
                lbc.path.clone(),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    let spec_map = spec
        .v
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let etp = spec.child("externalTrafficPolicy");
    let policy = etp.string(errs);
    if !externally_accessible(&spec_map) {
        if !policy.is_empty() {
            errs.push(FieldError::invalid(
                etp.path.clone(),
                policy,
                "may only be set for externally-accessible services",
            ));
        }
    } else if policy.is_empty() {
        errs.push(FieldError::required(etp.path.clone(), ""));
    } else if policy != "Cluster" && policy != "Local" {
        errs.push(FieldError::not_supported(
            etp.path.clone(),
            policy,
            &["Cluster", "Local"],
        ));
    }
    let hc = spec.child("healthCheckNodePort");
    let hcn = hc.int(errs).unwrap_or(0);
    if !needs_hc_node_port(&spec_map) {
        if hcn != 0 {
            errs.push(FieldError::invalid(
                hc.path.clone(),
                hcn,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hcn != 0 {
        // Zero is left for allocation, which runs after validation here.
        for m in util::port_num_errors(hcn) {
            errs.push(FieldError::invalid(hc.path.clone(), hcn, m));
        }
    }
    let itp = spec.child("internalTrafficPolicy");
    match itp.str(errs) {
        None => {
            if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") {
                errs.push(FieldError::required(itp.path.clone(), ""));
            }
        }
        Some("Cluster") | Some("Local") => {}
        Some(other) => errs.push(FieldError::not_supported(
            itp.path.clone(),
            other,
            &["Cluster", "Local"],
        )),
    }
    let td = spec.child("trafficDistribution");
    if let Some(t) = td.str(errs) {
        if t != "PreferClose" {
            errs.push(FieldError::not_supported(
                td.path.clone(),
                t,
                &["PreferClose"],
            ));
        }
    }
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn cluster_ip_fields(errs: &mut Errs, spec: &At, headless: bool) {
    let ip = spec.child("clusterIP").string(errs);
    let ips_at = spec.child("clusterIPs");
    let ips = ips_at.strings(errs);
    if !ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required(ips_at.path.clone(), ""));
        } else if ips[0] != ip {
            errs.push(FieldError::invalid(
                ips_at.path.clone(),
                ips_at.value(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            ips_at.path.clone(),
            ips_at.value(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let fam = spec.child("ipFamilies");
    let families = fam.strings(errs);
    let mut seen = HashSet::new();
    for (i, f) in families.iter().enumerate() {
        if *f != "IPv4" && *f != "IPv6" {
            errs.push(FieldError::not_supported(
                fam.index_path(i),
                *f,
                &["IPv4", "IPv6"],
            ));
        }
        if !seen.insert(*f) {
            errs.push(FieldError::duplicate(fam.index_path(i), *f));
        }
    }
    let pol = spec.child("ipFamilyPolicy");
    if let Some(p) = pol.str(errs) {
        const POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(pol.path.clone(), p, POLICIES));
        }
    }
    let mut invalid = false;
    for (i, v) in ips.iter().enumerate() {
        if i == 0 && *v == "None" {
            if ips.len() > 1 {
                invalid = true;
                errs.push(FieldError::invalid(
                    ips_at.path.clone(),
                    ips_at.value(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let before = errs.len();
        util::ip(errs, &ips_at.index_path(i), v);
        invalid |= errs.len() != before;
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            ips_at.path.clone(),
            ips_at.value(),
            "may only hold up to 2 values",
        ));
    }
    if invalid {
        return;
    }
    let parsed: Vec<_> = ips
        .iter()
        .filter_map(|v| util::parse_ip_sloppy(v))
        .collect();
    if ips.len() > 1 && !(parsed.len() == 2 && parsed[0].is_ipv4() != parsed[1].is_ipv4()) {
        errs.push(FieldError::invalid(
            ips_at.path.clone(),
            ips_at.value(),
            "may specify no more than one IP for each IP family",
        ));
    }
    if !headless {
        for (i, (v, f)) in ips.iter().zip(&families).enumerate() {
            let v6 = util::parse_ip_sloppy(v).is_some_and(|a| a.is_ipv6());
            if *f == "IPv4" && v6 {
                errs.push(FieldError::invalid(
                    ips_at.index_path(i),
                    *v,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if *f == "IPv6" && !v6 {
                errs.push(FieldError::invalid(
                    ips_at.index_path(i),
                    *v,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
}

fn cluster_ip_changes(errs: &mut Errs, n: &At, o: &At) {
    let external = |s: &At| s.child("type").s() == Some("ExternalName");
    if external(n) || external(o) || (is_headless(n) && is_headless(o)) {
        return;
    }
    let ni = n.child("clusterIPs").strings(&mut Vec::new());
    let oi = o.child("clusterIPs").strings(&mut Vec::new());
    let value = n.child("clusterIPs").value();
    let path0 = "spec.clusterIPs[0]";
    if ni.len() == oi.len() {
        for (i, (a, b)) in oi.iter().zip(&ni).enumerate() {
            if a != b {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    value.clone(),
                    "may not change once set",
                ));
            }
        }
    } else if oi.len() > ni.len() {
        if ni.is_empty() {
            errs.push(FieldError::invalid(
                path0,
                value.clone(),
                "primary clusterIP can not be unset",
            ));
        }
        if !oi.is_empty() && !ni.is_empty() && ni[0] != oi[0] {
            errs.push(FieldError::invalid(
                path0,
                value.clone(),
                "may not change once set",
            ));
        }
        if ni.len() == 1 && n.child("ipFamilyPolicy").s() != Some("SingleStack") {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                n.child("ipFamilyPolicy").value(),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !oi.is_empty() && ni[0] != oi[0] {
        errs.push(FieldError::invalid(path0, value, "may not change once set"));
    }
}

fn ip_family_changes(errs: &mut Errs, n: &At, o: &At) {
    let external = |s: &At| s.child("type").s() == Some("ExternalName");
    if external(n) || external(o) || is_headless(n) != is_headless(o) || is_headless(n) {
        return;
    }
    let nf = n.child("ipFamilies").strings(&mut Vec::new());
    let of = o.child("ipFamilies").strings(&mut Vec::new());
    let fam_value = n.child("ipFamilies").value();
    let ips_value = n.child("clusterIPs").value();
    let path0 = "spec.ipFamilies[0]";
    if nf.len() == of.len() {
        if nf != of {
            errs.push(FieldError::invalid(
                path0,
                fam_value,
                "may not change once set",
            ));
        }
    } else if of.len() > nf.len() {
        if n.child("clusterIPs").len() == 0 {
            errs.push(FieldError::invalid(
                path0,
                fam_value,
                "primary ipFamily can not be unset",
            ));
        }
        if !nf.is_empty() && nf[0] != of[0] {
            errs.push(FieldError::invalid(
                path0,
                ips_value,
                "may not change once set",
            ));
        }
        if nf.len() == 1 && n.child("ipFamilyPolicy").s() != Some("SingleStack") {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                n.child("ipFamilyPolicy").value(),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !of.is_empty() && !nf.is_empty() && nf[0] != of[0] {
        errs.push(FieldError::invalid(
            path0,
            ips_value,
            "may not change once set",
        ));
    }
}

/// `ValidateNonSpecialIP`. Loopback is refused only where `refuse_loopback` (external IPs):
/// the `kubernetes` endpoints carry the advertise address, which is loopback in a
/// single-machine setup, and must keep validating.
fn non_special_ip(errs: &mut Errs, path: &str, v: &str, refuse_loopback: bool) {
    let Some(ip) = util::parse_ip_sloppy(v) else {
        errs.push(FieldError::invalid(path, v, "must be a valid IP address"));
        return;
    };
    if ip.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("may not be unspecified ({v})"),
        ));
    }
    if ip.is_loopback() && refuse_loopback {
        errs.push(FieldError::invalid(
            path,
            v,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local_unicast = match ip {
        std::net::IpAddr::V4(a) => a.is_link_local(),
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local_unicast {
        errs.push(FieldError::invalid(
            path,
            v,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    let link_local_multicast = match ip {
        std::net::IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xff0f) == 0xff02,
    };
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path,
            v,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

// ---- Endpoints ----

pub(super) struct Endpoints;

impl Strategy for Endpoints {
    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        util::each_obj_mut(map, "subsets", |s| {
            util::each_obj_mut(s, "ports", |p| util::default_str(p, "protocol", "TCP"));
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for ss in At::new(obj, "").child("subsets").items(&mut errs) {
            let addrs = ss.child("addresses");
            let not_ready = ss.child("notReadyAddresses");
            if addrs.len() == 0 && not_ready.len() == 0 {
                errs.push(FieldError::required(
                    ss.path.clone(),
                    "must specify `addresses` or `notReadyAddresses`",
                ));
            }
            for list in [&addrs, &not_ready] {
                for a in list.items(&mut errs) {
                    let ip = a.child("ip");
                    let v = ip.string(&mut errs);
                    util::ip(&mut errs, &ip.path, v);
                    let hn = a.child("hostname");
                    if let Some(h) = hn.str(&mut errs).filter(|h| !h.is_empty()) {
                        util::dns_label(&mut errs, &hn.path, h);
                    }
                    let nn = a.child("nodeName");
                    if let Some(n) = nn.str(&mut errs) {
                        util::dns_subdomain(&mut errs, &nn.path, n);
                    }
                    non_special_ip(&mut errs, &ip.path, v, false);
                }
            }
            let ports = ss.child("ports");
            let items = ports.items(&mut errs);
            let require_name = items.len() > 1;
            for p in &items {
                let name = p.child("name");
                let n = name.string(&mut errs);
                if require_name && n.is_empty() {
                    errs.push(FieldError::required(name.path.clone(), ""));
                } else if !n.is_empty() {
                    util::dns_label(&mut errs, &name.path, n);
                }
                let port = p.child("port");
                let pn = port.int(&mut errs).unwrap_or(0);
                for m in util::port_num_errors(pn) {
                    errs.push(FieldError::invalid(port.path.clone(), pn, m));
                }
                let proto = p.child("protocol");
                match proto.string(&mut errs) {
                    "" => errs.push(FieldError::required(proto.path.clone(), "")),
                    "TCP" | "UDP" | "SCTP" => {}
                    other => errs.push(FieldError::not_supported(
                        proto.path.clone(),
                        other,
                        &["SCTP", "TCP", "UDP"],
                    )),
                }
                let ap = p.child("appProtocol");
                if let Some(a) = ap.str(&mut errs) {
                    util::qualified_name(&mut errs, &ap.path, a);
                }
            }
        }
        errs
    }
}

// ---- EndpointSlice ----

pub(super) struct EndpointSlice;

impl Strategy for EndpointSlice {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        util::each_obj_mut(map, "ports", |p| {
            default_val(p, "name", json!(""));
            default_val(p, "protocol", json!("TCP"));
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        let at = root.child("addressType");
        let addr_type = at.string(&mut errs);
        match addr_type {
            "" => errs.push(FieldError::required(at.path.clone(), "")),
            "IPv4" | "IPv6" | "FQDN" => {}
            other => errs.push(FieldError::not_supported(
                at.path.clone(),
                other,
                &["FQDN", "IPv4", "IPv6"],
            )),
        }
        let eps = root.child("endpoints");
        let items = eps.items(&mut errs);
        if items.len() > 1000 {
            errs.push(FieldError::too_many(eps.path.clone(), items.len(), 1000));
            return errs;
        }
        for ep in &items {
            let addrs = ep.child("addresses");
            let list = addrs.items(&mut errs);
            if list.is_empty() {
                errs.push(FieldError::required(
                    addrs.path.clone(),
                    "must contain at least 1 address",
                ));
            } else if list.len() > 100 {
                errs.push(FieldError::too_many(addrs.path.clone(), list.len(), 100));
            }
            for a in &list {
                let v = a.string(&mut errs);
                match addr_type {
                    "IPv4" | "IPv6" => {
                        let want_v4 = addr_type == "IPv4";
                        match util::parse_ip_sloppy(v) {
                            Some(ip) if ip.is_ipv4() == want_v4 || (!want_v4 && ip.is_ipv6()) => {
                                non_special_ip(&mut errs, &a.path, v, false)
                            }
                            _ => errs.push(FieldError::invalid(
                                a.path.clone(),
                                v,
                                format!("must be a valid {addr_type} address"),
                            )),
                        }
                    }
                    "FQDN" => fqdn(&mut errs, &a.path, v),
                    _ => {}
                }
            }
            let nn = ep.child("nodeName");
            if let Some(n) = nn.str(&mut errs) {
                util::dns_subdomain(&mut errs, &nn.path, n);
            }
            let topo = ep.child("deprecatedTopology");
            if topo.len() > 16 {
                errs.push(FieldError::too_many(topo.path.clone(), topo.len(), 16));
            }
            util::labels(&mut errs, &topo);
            let hn = ep.child("hostname");
            if let Some(h) = hn.str(&mut errs) {
                util::dns_label(&mut errs, &hn.path, h);
            }
            let zones = ep.at("hints.forZones");
            let zs = zones.items(&mut errs);
            if zs.len() > 8 {
                errs.push(FieldError::too_many(zones.path.clone(), zs.len(), 8));
            }
            let mut seen = HashSet::new();
            for z in &zs {
                let name = z.child("name");
                let n = name.string(&mut errs);
                if !seen.insert(n) {
                    errs.push(FieldError::duplicate(name.path.clone(), n));
                }
                for m in ferrokube_common::labels::validate_label_value(n) {
                    errs.push(FieldError::invalid(name.path.clone(), n, m));
                }
            }
        }
        let ports = root.child("ports");
        let pitems = ports.items(&mut errs);
        if pitems.len() > 20000 {
            errs.push(FieldError::too_many(
                ports.path.clone(),
                pitems.len(),
                20000,
            ));
            return errs;
        }
        let mut names = HashSet::new();
        for p in &pitems {
            let name = p.child("name");
            let n = name.string(&mut errs);
            if !n.is_empty() {
                util::dns_label(&mut errs, &name.path, n);
            }
            if !names.insert(n) {
                errs.push(FieldError::duplicate(name.path.clone(), n));
            }
            let proto = p.child("protocol");
            match proto.str(&mut errs) {
                None => errs.push(FieldError::required(proto.path.clone(), "")),
                Some("TCP" | "UDP" | "SCTP") => {}
                Some(other) => errs.push(FieldError::not_supported(
                    proto.path.clone(),
                    other,
                    &["SCTP", "TCP", "UDP"],
                )),
            }
            let ap = p.child("appProtocol");
            if let Some(a) = ap.str(&mut errs) {
                util::qualified_name(&mut errs, &ap.path, a);
            }
            let port = p.child("port");
            if let Some(n) = port.int(&mut errs) {
                for m in util::port_num_errors(n) {
                    errs.push(FieldError::invalid(port.path.clone(), n, m));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        util::immutable(
            &mut errs,
            &At::new(new, "").child("addressType"),
            &At::new(old, "").child("addressType"),
        );
        errs
    }
}

/// `IsFullyQualifiedDomainName`.
fn fqdn(errs: &mut Errs, path: &str, name: &str) {
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = ferrokube_common::labels::is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        errs.push(FieldError::invalid(path, name, msgs.join(",")));
        return;
    }
    if name.split('.').count() < 2 {
        errs.push(FieldError::invalid(
            path,
            name,
            "should be a domain with at least two segments separated by dots",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn created(mut s: Value) -> Value {
        Service.prepare_for_create(&mut s);
        Service.defaults(&mut s);
        s
    }

    #[test]
    fn defaults() {
        let s = created(
            json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(s["status"], json!({"loadBalancer": {}}));
        assert!(
            Service.validate(&s).is_empty(),
            "{:?}",
            msgs(&Service.validate(&s))
        );

        let s = created(
            json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": "http"}]}}),
        );
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(
            s["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        assert_eq!(s["spec"]["ports"][0]["targetPort"], "http");
        assert!(s["spec"].get("externalTrafficPolicy").is_none());
        let lb = created(json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}));
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    }

    #[test]
    fn port_rules() {
        let s = created(
            json!({"spec": {"ports": [{"port": 80}, {"port": 80, "name": "Bad"}, {"port": 0, "protocol": "ICMP", "name": "x"}]}}),
        );
        let errs = msgs(&Service.validate(&s));
        for e in [
            "spec.ports[0].name: Required value",
            "spec.ports[2].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[2].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.ports[1]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}",
        ] {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
        let s = created(json!({"spec": {}}));
        assert!(msgs(&Service.validate(&s)).contains(&"spec.ports: Required value".to_string()));
        let s = created(json!({"spec": {"clusterIP": "None"}}));
        assert!(
            Service.validate(&s).is_empty(),
            "{:?}",
            msgs(&Service.validate(&s))
        );
    }

    #[test]
    fn external_name() {
        let s = created(json!({"spec": {"type": "ExternalName", "externalName": "example.com."}}));
        assert!(
            Service.validate(&s).is_empty(),
            "{:?}",
            msgs(&Service.validate(&s))
        );
        let s = created(json!({"spec": {"type": "ExternalName"}}));
        assert_eq!(
            msgs(&Service.validate(&s)),
            vec!["spec.externalName: Required value".to_string()]
        );
        let s = created(
            json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30000}]}}),
        );
        assert!(msgs(&Service.validate(&s)).contains(
            &"spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
                .to_string()
        ));
    }

    #[test]
    fn cluster_ip_cannot_change_and_is_kept() {
        let mut old = created(json!({"spec": {"ports": [{"port": 80}]}}));
        old["spec"]["clusterIP"] = json!("10.0.0.10");
        old["spec"]["clusterIPs"] = json!(["10.0.0.10"]);
        old["spec"]["ipFamilies"] = json!(["IPv4"]);
        old["spec"]["ipFamilyPolicy"] = json!("SingleStack");

        let mut new = json!({"spec": {"ports": [{"port": 80}]}});
        Service.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.10");
        assert_eq!(new["spec"]["ipFamilies"], json!(["IPv4"]));
        assert!(
            Service.validate_update(&new, &old).is_empty(),
            "{:?}",
            msgs(&Service.validate_update(&new, &old))
        );

        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.0.0.11");
        Service.prepare_for_update(&mut new, &old);
        let errs = msgs(&Service.validate_update(&new, &old));
        assert_eq!(
            errs,
            vec![
                "spec.clusterIPs[0]: Invalid value: [\"10.0.0.11\"]: may not change once set"
                    .to_string()
            ]
        );
    }

    #[test]
    fn type_change_drops_node_ports() {
        let mut old = created(json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}));
        old["spec"]["ports"][0]["nodePort"] = json!(30080);
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        Service.prepare_for_update(&mut new, &old);
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
        assert!(
            Service.validate_update(&new, &old).is_empty(),
            "{:?}",
            msgs(&Service.validate_update(&new, &old))
        );
    }

    #[test]
    fn endpoints_and_slices() {
        let mut ep = json!({"subsets": [{"addresses": [{"ip": "10.1.1.1"}, {"ip": "bad"}], "ports": [{"port": 80}, {"port": 81}]}, {}]});
        Endpoints.defaults(&mut ep);
        let errs = msgs(&Endpoints.validate(&ep));
        for e in [
            "subsets[0].addresses[1].ip: Invalid value: \"bad\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "subsets[0].ports[0].name: Required value",
            "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
        ] {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
        let mut ok = json!({"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 6443}]}]});
        Endpoints.defaults(&mut ok);
        assert!(Endpoints.validate(&ok).is_empty());

        let mut slice = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]});
        EndpointSlice.defaults(&mut slice);
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
        assert!(EndpointSlice.validate(&slice).is_empty());
        let bad = json!({"addressType": "IPX", "endpoints": [{"addresses": []}]});
        let errs = msgs(&EndpointSlice.validate(&bad));
        assert!(errs.contains(&"addressType: Unsupported value: \"IPX\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"".to_string()));
        assert!(errs.contains(
            &"endpoints[0].addresses: Required value: must contain at least 1 address".to_string()
        ));
    }

    #[test]
    fn odd_services_do_not_panic() {
        let strategies: [&dyn Strategy; 3] = [&Service, &Endpoints, &EndpointSlice];
        for s in strategies {
            for body in [
                json!({}),
                json!({"spec": 1, "subsets": 2, "endpoints": 3}),
                json!({"spec": {"ports": [1, {"port": "x"}], "clusterIPs": 3}}),
            ] {
                let mut o = body.clone();
                s.prepare_for_create(&mut o);
                s.defaults(&mut o);
                let _ = s.validate(&o);
                let mut n = body.clone();
                s.prepare_for_update(&mut n, &o);
                s.defaults(&mut n);
                let _ = s.validate_update(&n, &o);
            }
        }
    }
}
