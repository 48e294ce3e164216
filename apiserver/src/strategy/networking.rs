//! `networking.k8s.io`: Ingresses, IngressClasses and NetworkPolicies.

use serde_json::{json, Value};

use super::util::{self, At, Errs};
use super::Strategy;
use crate::status::FieldError;

// ---- Ingress ----

pub(super) struct Ingress;

const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];

/// A host is a DNS subdomain, optionally behind a `*.` wildcard, and never an IP.
fn host(errs: &mut Errs, path: &str, h: &str) {
    if util::parse_ip_sloppy(h).is_some() {
        errs.push(FieldError::invalid(
            path,
            h,
            "must be a DNS name, not an IP address",
        ));
    }
    if let Some(rest) = h.strip_prefix("*.") {
        let msgs = ferrokube_common::labels::is_dns1123_subdomain(rest);
        if !msgs.is_empty() || h.len() > 253 {
            errs.push(FieldError::invalid(
                path,
                h,
                ferrokube_common::labels::regex_error(
                    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character",
                    "\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                    &["*.example.com"],
                ),
            ));
        }
    } else {
        util::dns_subdomain(errs, path, h);
    }
}

fn backend(errs: &mut Errs, b: &At) {
    let svc = b.child("service");
    let res = b.child("resource");
    match (svc.is_set(), res.is_set()) {
        (true, true) => errs.push(FieldError::invalid(
            b.path.clone(),
            "",
            "cannot set both resource and service backends",
        )),
        (false, false) => errs.push(FieldError::invalid(
            b.path.clone(),
            "",
            "resource or service backend is required",
        )),
        (true, false) => {
            let name = svc.child("name");
            let n = name.string(errs);
            if n.is_empty() {
                errs.push(FieldError::required(name.path.clone(), ""));
            } else {
                util::dns1035_label(errs, &name.path, n);
            }
            let port = svc.child("port");
            let pname = port.child("name").string(errs);
            let pnum = port.child("number").int(errs).unwrap_or(0);
            if !pname.is_empty() && pnum != 0 {
                errs.push(FieldError::invalid(
                    port.path.clone(),
                    port.value(),
                    "cannot set both port name & port number",
                ));
            } else if !pname.is_empty() {
                for m in util::port_name_errors(pname) {
                    errs.push(FieldError::invalid(port.child("name").path, pname, m));
                }
            } else if pnum != 0 {
                for m in util::port_num_errors(pnum) {
                    errs.push(FieldError::invalid(port.child("number").path, pnum, m));
                }
            } else {
                errs.push(FieldError::required(
                    port.path.clone(),
                    "port name or number is required",
                ));
            }
        }
        (false, true) => typed_ref(errs, &res),
    }
}

fn typed_ref(errs: &mut Errs, r: &At) {
    for f in ["name", "kind"] {
        let a = r.child(f);
        if a.string(errs).is_empty() {
            errs.push(FieldError::required(a.path.clone(), ""));
        }
    }
    let g = r.child("apiGroup");
    if let Some(group) = g.str(errs).filter(|s| !s.is_empty()) {
        util::dns_subdomain(errs, &g.path, group);
    }
}

fn http_path(errs: &mut Errs, p: &At) {
    let path = p.child("path");
    let value = path.string(errs);
    let pt = p.child("pathType");
    match pt.str(errs) {
        None => errs.push(FieldError::required(
            pt.path.clone(),
            "pathType must be specified",
        )),
        Some("Exact" | "Prefix") => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    path.path.clone(),
                    value,
                    "must be an absolute path",
                ));
            }
            if !value.is_empty() {
                for seq in INVALID_PATH_SEQUENCES {
                    if value.contains(seq) {
                        errs.push(FieldError::invalid(
                            path.path.clone(),
                            value,
                            format!("must not contain '{seq}'"),
                        ));
                    }
                }
                for suffix in INVALID_PATH_SUFFIXES {
                    if value.ends_with(suffix) {
                        errs.push(FieldError::invalid(
                            path.path.clone(),
                            value,
                            format!("cannot end with '{suffix}'"),
                        ));
                    }
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    path.path.clone(),
                    value,
                    "must be an absolute path",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            pt.path.clone(),
            other,
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    backend(errs, &p.child("backend"));
}

impl Strategy for Ingress {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let rules = spec.child("rules");
        let default = spec.child("defaultBackend");
        if rules.len() == 0 && !default.is_set() {
            errs.push(FieldError::invalid(
                spec.path.clone(),
                rules.value(),
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if default.is_set() {
            backend(&mut errs, &default);
        }
        for r in rules.items(&mut errs) {
            let h = r.child("host");
            if let Some(v) = h.str(&mut errs).filter(|v| !v.is_empty()) {
                host(&mut errs, &h.path, v);
            }
            let http = r.child("http");
            if http.is_set() {
                let paths = http.child("paths");
                let items = paths.items(&mut errs);
                if items.is_empty() {
                    errs.push(FieldError::required(paths.path.clone(), ""));
                }
                for p in &items {
                    http_path(&mut errs, p);
                }
            }
        }
        for t in spec.child("tls").items(&mut errs) {
            for h in t.child("hosts").items(&mut errs) {
                let v = h.string(&mut errs);
                host(&mut errs, &h.path, v);
            }
        }
        let class = spec.child("ingressClassName");
        if let Some(c) = class.str(&mut errs) {
            util::dns_subdomain(&mut errs, &class.path, c);
            let ann = crate::meta::annotations(obj);
            if let Some(a) = ann.get("kubernetes.io/ingress.class") {
                errs.push(FieldError::invalid(
                    "metadata.annotations[kubernetes.io/ingress.class]",
                    a.as_str(),
                    "can not be set when the class field is also set",
                ));
            }
        }
        errs
    }
}

// ---- IngressClass ----

pub(super) struct IngressClass;

impl Strategy for IngressClass {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let c = spec.child("controller");
        let controller = c.string(&mut errs);
        if controller.is_empty() {
            errs.push(FieldError::required(c.path.clone(), ""));
        } else {
            match controller
                .split_once('/')
                .filter(|(h, p)| !h.is_empty() && !p.is_empty())
            {
                None => errs.push(FieldError::invalid(
                    c.path.clone(),
                    controller,
                    "must be a domain-prefixed path (such as \"acme.io/foo\")",
                )),
                Some((h, _)) => util::dns_subdomain(&mut errs, &c.path, h),
            }
            if controller.len() > 250 {
                errs.push(FieldError::too_long(c.path.clone(), 250));
            }
        }
        let p = spec.child("parameters");
        if p.is_set() {
            for f in ["kind", "name"] {
                let a = p.child(f);
                if a.string(&mut errs).is_empty() {
                    errs.push(FieldError::required(a.path.clone(), ""));
                }
            }
            let g = p.child("apiGroup");
            if let Some(group) = g.str(&mut errs).filter(|s| !s.is_empty()) {
                util::dns_subdomain(&mut errs, &g.path, group);
            }
            let scope = p.child("scope");
            let ns = p.child("namespace");
            match scope.str(&mut errs) {
                None => errs.push(FieldError::required(scope.path.clone(), "")),
                Some("Cluster") => {
                    if ns.is_set() {
                        errs.push(FieldError::forbidden(
                            ns.path.clone(),
                            "`parameters.scope` is set to 'Cluster'",
                        ));
                    }
                }
                Some("Namespace") => match ns.str(&mut errs) {
                    None => errs.push(FieldError::required(
                        ns.path.clone(),
                        "`parameters.scope` is set to 'Namespace'",
                    )),
                    Some(n) => util::dns_label(&mut errs, &ns.path, n),
                },
                Some(other) => errs.push(FieldError::not_supported(
                    scope.path.clone(),
                    other,
                    &["Cluster", "Namespace"],
                )),
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        util::immutable(
            &mut errs,
            &At::new(new, "").at("spec.controller"),
            &At::new(old, "").at("spec.controller"),
        );
        errs
    }
}

// ---- NetworkPolicy ----

pub(super) struct NetworkPolicy;

impl Strategy for NetworkPolicy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        for dir in ["ingress", "egress"] {
            util::each_obj_mut(spec, dir, |rule| {
                util::each_obj_mut(rule, "ports", |p| util::default_str(p, "protocol", "TCP"));
            });
        }
        let empty = spec
            .get("policyTypes")
            .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty) || p.is_null());
        if empty {
            let mut types = vec![json!("Ingress")];
            if spec
                .get("egress")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty())
            {
                types.push(json!("Egress"));
            }
            spec.insert("policyTypes".into(), Value::Array(types));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        util::label_selector(&mut errs, &spec.child("podSelector"), false);
        for (dir, peers_field) in [("ingress", "from"), ("egress", "to")] {
            for rule in spec.child(dir).items(&mut errs) {
                for port in rule.child("ports").items(&mut errs) {
                    np_port(&mut errs, &port);
                }
                for peer in rule.child(peers_field).items(&mut errs) {
                    np_peer(&mut errs, &peer);
                }
            }
        }
        let types = spec.child("policyTypes");
        let list = types.strings(&mut errs);
        for (i, t) in list.iter().enumerate() {
            if *t != "Ingress" && *t != "Egress" {
                errs.push(FieldError::not_supported(
                    types.index_path(i),
                    *t,
                    &["Egress", "Ingress"],
                ));
            }
        }
        if list.len() > 2 {
            errs.push(FieldError::invalid(
                types.path.clone(),
                types.value(),
                "may not specify more than two policyTypes",
            ));
        }
        errs
    }
}

fn np_port(errs: &mut Errs, port: &At) {
    let proto = port.child("protocol");
    if let Some(p) = proto.str(errs) {
        if !["TCP", "UDP", "SCTP"].contains(&p) {
            errs.push(FieldError::not_supported(
                proto.path.clone(),
                p,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    let p = port.child("port");
    let end = port.child("endPort");
    match p.v {
        Some(Value::String(s)) => {
            for m in util::port_name_errors(s) {
                errs.push(FieldError::invalid(p.path.clone(), s.as_str(), m));
            }
            if end.is_set() {
                errs.push(FieldError::forbidden(
                    end.path.clone(),
                    "may not be specified when `port` is non-numeric",
                ));
            }
        }
        Some(v) => {
            let n = util::as_integer(v).unwrap_or(0);
            for m in util::port_num_errors(n) {
                errs.push(FieldError::invalid(p.path.clone(), n, m));
            }
            if let Some(e) = end.int(errs) {
                if e < n {
                    errs.push(FieldError::invalid(
                        end.path.clone(),
                        e,
                        "must be greater than or equal to `port`",
                    ));
                }
                for m in util::port_num_errors(e) {
                    errs.push(FieldError::invalid(end.path.clone(), e, m));
                }
            }
        }
        None => {
            if end.is_set() {
                errs.push(FieldError::required(
                    p.path.clone(),
                    "must be specified when `endPort` is specified",
                ));
            }
        }
    }
}

fn np_peer(errs: &mut Errs, peer: &At) {
    let pod = peer.child("podSelector");
    let ns = peer.child("namespaceSelector");
    let block = peer.child("ipBlock");
    let mut n = 0;
    if pod.is_set() {
        n += 1;
        util::label_selector(errs, &pod, false);
    }
    if ns.is_set() {
        n += 1;
        util::label_selector(errs, &ns, false);
    }
    if block.is_set() {
        n += 1;
        let cidr = block.child("cidr");
        let c = cidr.string(errs);
        if c.is_empty() {
            errs.push(FieldError::required(cidr.path.clone(), ""));
            return;
        }
        let before = errs.len();
        util::cidr(errs, &cidr.path, c);
        if errs.len() != before {
            return;
        }
        let Some((base, bits)) = util::parse_cidr(c) else {
            return;
        };
        let except = block.child("except");
        for (i, e) in except.strings(errs).iter().enumerate() {
            let path = except.index_path(i);
            let before = errs.len();
            util::cidr(errs, &path, e);
            if errs.len() != before {
                continue;
            }
            let Some((ebase, ebits)) = util::parse_cidr(e) else {
                continue;
            };
            if !cidr_contains(base, bits, ebase) || ebits <= bits {
                errs.push(FieldError::invalid(
                    path,
                    *e,
                    "must be a strict subset of `cidr`",
                ));
            }
        }
    }
    if n == 0 {
        errs.push(FieldError::required(
            peer.path.clone(),
            "must specify a peer",
        ));
    } else if block.is_set() && n > 1 {
        errs.push(FieldError::forbidden(
            peer.path.clone(),
            "may not specify both ipBlock and another peer",
        ));
    }
}

fn cidr_contains(base: std::net::IpAddr, bits: u8, ip: std::net::IpAddr) -> bool {
    match (base, ip) {
        (std::net::IpAddr::V4(b), std::net::IpAddr::V4(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (u32::from(b) & mask) == (u32::from(i) & mask)
        }
        (std::net::IpAddr::V6(b), std::net::IpAddr::V6(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            (u128::from(b) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn ingress_rules() {
        let ok = json!({"spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        assert!(
            Ingress.validate(&ok).is_empty(),
            "{:?}",
            msgs(&Ingress.validate(&ok))
        );
        let bad = json!({"spec": {"rules": [{"host": "1.2.3.4", "http": {"paths": [
            {"path": "a//b", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {}}}},
            {"path": "/", "backend": {}}]}}]}});
        let errs = msgs(&Ingress.validate(&bad));
        for e in [
            "spec.rules[0].host: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address",
            "spec.rules[0].http.paths[0].path: Invalid value: \"a//b\": must be an absolute path",
            "spec.rules[0].http.paths[0].path: Invalid value: \"a//b\": must not contain '//'",
            "spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required",
            "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
            "spec.rules[0].http.paths[1].backend: Invalid value: \"\": resource or service backend is required",
        ] {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
        assert_eq!(
            msgs(&Ingress.validate(&json!({"spec": {}}))),
            vec![
                "spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"
                    .to_string()
            ]
        );
    }

    #[test]
    fn network_policy_defaults_and_rules() {
        let mut np = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        NetworkPolicy.defaults(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        assert!(NetworkPolicy.validate(&np).is_empty());
        let bad = json!({"spec": {"podSelector": {}, "ingress": [{"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}],
            "ports": [{"port": 80, "endPort": 70}]}]}});
        let errs = msgs(&NetworkPolicy.validate(&bad));
        for e in [
            "spec.ingress[0].from[0]: Required value: must specify a peer",
            "spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: \"11.0.0.0/16\": must be a strict subset of `cidr`",
            "spec.ingress[0].ports[0].endPort: Invalid value: 70: must be greater than or equal to `port`",
        ] {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
    }

    #[test]
    fn ingress_class_controller() {
        let ok = json!({"spec": {"controller": "example.com/ingress"}});
        assert!(IngressClass.validate(&ok).is_empty());
        let new = json!({"spec": {"controller": "example.com/other"}});
        assert_eq!(
            msgs(&IngressClass.validate_update(&new, &ok)),
            vec![
                "spec.controller: Invalid value: \"example.com/other\": field is immutable"
                    .to_string()
            ]
        );
    }
}
