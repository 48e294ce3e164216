//! Small cluster kinds: Leases, PriorityClasses, RuntimeClasses, StorageClasses and
//! CertificateSigningRequests.

use std::collections::HashSet;

use base64::Engine;
use serde_json::{json, Value};
use x509_parser::prelude::FromDer;

use super::podspec;
use super::util::{self, default_val, At, Errs};
use super::Strategy;
use crate::status::FieldError;

// ---- Lease ----

pub(super) struct Lease;

impl Strategy for Lease {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let d = spec.child("leaseDurationSeconds");
        if let Some(n) = d.int(&mut errs).filter(|n| *n <= 0) {
            errs.push(FieldError::invalid(
                d.path.clone(),
                n,
                "must be greater than 0",
            ));
        }
        let t = spec.child("leaseTransitions");
        if let Some(n) = t.int(&mut errs).filter(|n| *n < 0) {
            errs.push(FieldError::invalid(t.path.clone(), n, util::NEGATIVE));
        }
        spec.child("holderIdentity").str(&mut errs);
        errs
    }
}

// ---- PriorityClass ----

pub(super) struct PriorityClass;

const SYSTEM_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

impl Strategy for PriorityClass {
    fn defaults(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            default_val(m, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        let name = crate::meta::name(obj);
        let value = root.child("value").int(&mut errs).unwrap_or(0);
        let global_default = root.child("globalDefault").bool(&mut errs).unwrap_or(false);
        if name.starts_with("system-") {
            let known = match SYSTEM_CLASSES.iter().find(|(n, _)| *n == name) {
                None => Err(format!("{name} is not a known system priority class")),
                Some((_, v)) if *v != value => {
                    Err(format!("value of {name} PriorityClass must be {v}"))
                }
                Some(_) if global_default => Err(format!(
                    "globalDefault of {name} PriorityClass must be false"
                )),
                Some(_) => Ok(()),
            };
            if let Err(e) = known {
                errs.push(FieldError::forbidden(
                    "metadata.name",
                    format!("priority class names with 'system-' prefix are reserved for system use only. error: {e}"),
                ));
            }
        } else if value > HIGHEST_USER_PRIORITY {
            errs.push(FieldError::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"
                ),
            ));
        }
        let pp = root.child("preemptionPolicy");
        if let Some(p) = pp.str(&mut errs) {
            if p != "PreemptLowerPriority" && p != "Never" {
                errs.push(FieldError::not_supported(
                    pp.path.clone(),
                    p,
                    &["PreemptLowerPriority", "Never"],
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let (n, o) = (At::new(new, ""), At::new(old, ""));
        if n.child("value").v != o.child("value").v {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        let mut old_d = old.clone();
        self.defaults(&mut old_d);
        util::immutable(
            &mut errs,
            &n.child("preemptionPolicy"),
            &At::new(&old_d, "").child("preemptionPolicy"),
        );
        errs
    }
}

// ---- RuntimeClass ----

pub(super) struct RuntimeClass;

impl Strategy for RuntimeClass {
    fn defaults(&self, obj: &mut Value) {
        if let Some(o) = obj.get_mut("overhead").and_then(Value::as_object_mut) {
            util::canonical_resource_list(o, "podFixed");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        let h = root.child("handler");
        let handler = h.string(&mut errs);
        util::dns_label(&mut errs, &h.path, handler);
        let fixed = root.at("overhead.podFixed");
        if fixed.is_set() {
            let wrapped = json!({ "limits": fixed.value() });
            podspec::resource_requirements(&mut errs, &At::new(&wrapped, "overhead.podFixed"));
        }
        let sched = root.child("scheduling");
        if sched.is_set() {
            util::labels(&mut errs, &sched.child("nodeSelector"));
            let tol = sched.child("tolerations");
            podspec::tolerations(&mut errs, &tol);
            let mut seen = HashSet::new();
            for t in tol.items(&mut Vec::new()) {
                let key = (
                    t.child("key").s().unwrap_or("").to_string(),
                    t.child("operator").s().unwrap_or("").to_string(),
                    t.child("value").s().unwrap_or("").to_string(),
                    t.child("effect").s().unwrap_or("").to_string(),
                );
                if !seen.insert(key) {
                    errs.push(FieldError::duplicate(t.path.clone(), t.value()));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        util::immutable(
            &mut errs,
            &At::new(new, "").child("handler"),
            &At::new(old, "").child("handler"),
        );
        errs
    }
}

// ---- StorageClass ----

pub(super) struct StorageClass;

impl Strategy for StorageClass {
    fn defaults(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            default_val(m, "reclaimPolicy", json!("Delete"));
            default_val(m, "volumeBindingMode", json!("Immediate"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        let p = root.child("provisioner");
        let prov = p.string(&mut errs);
        if prov.is_empty() {
            errs.push(FieldError::required(p.path.clone(), ""));
        } else {
            for m in ferrokube_common::labels::validate_qualified_name(&prov.to_lowercase()) {
                errs.push(FieldError::invalid(p.path.clone(), prov, m));
            }
        }
        let params = root.child("parameters");
        let entries = params.entries(&mut errs);
        if entries.len() > 512 {
            let mut e = FieldError::too_long(params.path.clone(), 512);
            e.value = Some(json!("Provisioner Parameters exceeded max allowed"));
            errs.push(e);
        } else {
            let mut total = 0;
            for (k, v) in &entries {
                if k.is_empty() {
                    errs.push(FieldError::invalid(
                        params.path.clone(),
                        *k,
                        "field can not be empty.",
                    ));
                }
                total += k.len() + v.str(&mut errs).map_or(0, str::len);
            }
            if total > 256 * 1024 {
                errs.push(FieldError::too_long(params.path.clone(), 256 * 1024));
            }
        }
        let rp = root.child("reclaimPolicy");
        if let Some(r) = rp.str(&mut errs) {
            if r != "Delete" && r != "Retain" {
                errs.push(FieldError::not_supported(
                    rp.path.clone(),
                    r,
                    &["Delete", "Retain"],
                ));
            }
        }
        let vbm = root.child("volumeBindingMode");
        match vbm.str(&mut errs) {
            None => errs.push(FieldError::required(vbm.path.clone(), "")),
            Some("Immediate" | "WaitForFirstConsumer") => {}
            Some(other) => errs.push(FieldError::not_supported(
                vbm.path.clone(),
                other,
                &["Immediate", "WaitForFirstConsumer"],
            )),
        }
        let topo = root.child("allowedTopologies");
        for term in topo.items(&mut errs) {
            let mut keys = HashSet::new();
            for expr in term.child("matchLabelExpressions").items(&mut errs) {
                let key = expr.child("key");
                let k = key.string(&mut errs);
                util::qualified_name(&mut errs, &key.path, k);
                if !keys.insert(k) {
                    errs.push(FieldError::duplicate(key.path.clone(), k));
                }
                let values = expr.child("values");
                if values.len() == 0 {
                    errs.push(FieldError::required(values.path.clone(), ""));
                }
                let mut seen = HashSet::new();
                for v in values.items(&mut errs) {
                    let s = v.string(&mut errs);
                    if !seen.insert(s) {
                        errs.push(FieldError::duplicate(v.path.clone(), s));
                    }
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let mut old_d = old.clone();
        self.defaults(&mut old_d);
        let (n, o) = (At::new(new, ""), At::new(&old_d, ""));
        if n.child("parameters").v != o.child("parameters").v {
            errs.push(FieldError::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if n.child("provisioner").v != o.child("provisioner").v {
            errs.push(FieldError::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if n.child("reclaimPolicy").v != o.child("reclaimPolicy").v {
            errs.push(FieldError::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        util::immutable(
            &mut errs,
            &n.child("volumeBindingMode"),
            &o.child("volumeBindingMode"),
        );
        errs
    }
}

// ---- CertificateSigningRequest ----

pub(super) struct Csr;

const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// `ValidateSignerName`.
pub(super) fn signer_name(errs: &mut Errs, path: &str, name: &str) {
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() != 2 {
        errs.push(FieldError::invalid(
            path,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    }
    let (domain, rest) = (segments[0], segments[1]);
    if domain.len() > 253 {
        errs.push(FieldError::too_long(path, 253));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for l in &labels {
        let msgs = ferrokube_common::labels::is_dns1123_label(l);
        if !msgs.is_empty() {
            for m in msgs {
                errs.push(FieldError::invalid(
                    path,
                    domain,
                    format!("validating label {l:?}: {m}"),
                ));
            }
            break;
        }
    }
    if labels.len() < 2 {
        errs.push(FieldError::invalid(
            path,
            domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    for l in rest.split('.') {
        let msgs = ferrokube_common::labels::is_dns1123_subdomain(l);
        if !msgs.is_empty() {
            for m in msgs {
                errs.push(FieldError::invalid(
                    path,
                    rest,
                    format!("validating label {l:?}: {m}"),
                ));
            }
            break;
        }
    }
    if name.len() > 253 + 253 + 1 {
        errs.push(FieldError::too_long(path, 253 + 253 + 1));
    }
}

/// The PEM block of a CSR's `request` must be a parseable certificate request.
fn csr_request_error(request: &str) -> Option<String> {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(request) else {
        return Some("PEM block type must be CERTIFICATE REQUEST".into());
    };
    let text = String::from_utf8_lossy(&bytes);
    let begin = "-----BEGIN CERTIFICATE REQUEST-----";
    let end = "-----END CERTIFICATE REQUEST-----";
    let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
        return Some("PEM block type must be CERTIFICATE REQUEST".into());
    };
    if e < b {
        return Some("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let body: String = text[b + begin.len()..e]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body) else {
        return Some("PEM block type must be CERTIFICATE REQUEST".into());
    };
    match x509_parser::certification_request::X509CertificationRequest::from_der(&der) {
        Ok(_) => None,
        Err(e) => Some(format!("asn1: structure error: {e}")),
    }
}

impl Strategy for Csr {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.signerName"]
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // The spec is what was asked for; updates only ever change metadata and status.
        if let (Some(n), Some(spec)) = (new.as_object_mut(), old.get("spec")) {
            n.insert("spec".into(), spec.clone());
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let req = spec.child("request");
        let request = req.string(&mut errs);
        if let Some(e) = csr_request_error(request) {
            errs.push(FieldError::invalid(req.path.clone(), request, e));
        }
        let usages = spec.child("usages");
        let list = usages.strings(&mut errs);
        if list.is_empty() {
            errs.push(FieldError::required(usages.path.clone(), ""));
        }
        let exp = spec.child("expirationSeconds");
        if let Some(n) = exp.int(&mut errs).filter(|n| *n < 600) {
            errs.push(FieldError::invalid(
                exp.path.clone(),
                n,
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        let sn = spec.child("signerName");
        let s = sn.string(&mut errs);
        signer_name(&mut errs, &sn.path, s);
        let mut seen = HashSet::new();
        for (i, u) in list.iter().enumerate() {
            if !USAGES.contains(u) {
                errs.push(FieldError::not_supported(usages.index_path(i), *u, USAGES));
            }
            if !seen.insert(*u) {
                errs.push(FieldError::duplicate(usages.index_path(i), *u));
            }
        }
        let conds = At::new(obj, "").at("status.conditions");
        let mut types = HashSet::new();
        for c in conds.items(&mut errs) {
            let t = c.child("type");
            let ty = t.string(&mut errs);
            if ty.is_empty() {
                errs.push(FieldError::required(t.path.clone(), ""));
            }
            if matches!(ty, "Approved" | "Denied" | "Failed") && !types.insert(ty) {
                errs.push(FieldError::duplicate(t.path.clone(), ty));
            }
            let st = c.child("status");
            match st.string(&mut errs) {
                "True" | "False" | "Unknown" => {}
                "" => errs.push(FieldError::required(st.path.clone(), "")),
                other => errs.push(FieldError::not_supported(
                    st.path.clone(),
                    other,
                    &["False", "True", "Unknown"],
                )),
            }
        }
        if types.contains("Approved") && types.contains("Denied") {
            errs.push(FieldError::invalid(
                conds.path.clone(),
                conds.value(),
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn priority_class_rules() {
        let ok = json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000});
        assert!(PriorityClass.validate(&ok).is_empty());
        let bad = json!({"metadata": {"name": "system-mine"}, "value": 5});
        assert_eq!(
            msgs(&PriorityClass.validate(&bad)),
            vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class".to_string()]
        );
        let high = json!({"metadata": {"name": "high"}, "value": 2000000000});
        assert_eq!(
            msgs(&PriorityClass.validate(&high)),
            vec![
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
                    .to_string()
            ]
        );
        let mut old = json!({"metadata": {"name": "p"}, "value": 1});
        PriorityClass.defaults(&mut old);
        assert_eq!(old["preemptionPolicy"], "PreemptLowerPriority");
        let mut new = old.clone();
        new["value"] = json!(2);
        assert_eq!(
            msgs(&PriorityClass.validate_update(&new, &old)),
            vec!["value: Forbidden: may not be changed in an update.".to_string()]
        );
    }

    #[test]
    fn runtime_class_and_storage_class() {
        let rc = json!({"handler": "Bad_Handler"});
        assert_eq!(msgs(&RuntimeClass.validate(&rc)).len(), 1);
        let new = json!({"handler": "b"});
        let old = json!({"handler": "a"});
        assert_eq!(
            msgs(&RuntimeClass.validate_update(&new, &old)),
            vec!["handler: Invalid value: \"b\": field is immutable".to_string()]
        );

        let mut sc = json!({"provisioner": "example.com/p", "parameters": {"a": "b"}});
        StorageClass.defaults(&mut sc);
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(StorageClass.validate(&sc).is_empty());
        let mut changed = sc.clone();
        changed["parameters"]["a"] = json!("c");
        assert_eq!(
            msgs(&StorageClass.validate_update(&changed, &sc)),
            vec!["parameters: Forbidden: updates to parameters are forbidden.".to_string()]
        );
        assert_eq!(
            msgs(&StorageClass.validate(&json!({"volumeBindingMode": "Immediate"}))),
            vec!["provisioner: Required value".to_string()]
        );
    }

    #[test]
    fn csr_rules() {
        let csr = json!({"spec": {"request": "bm9wZQ==", "signerName": "nodomain", "usages": ["client auth", "flying"]}});
        let errs = msgs(&Csr.validate(&csr));
        assert!(errs.contains(&"spec.request: Invalid value: \"bm9wZQ==\": PEM block type must be CERTIFICATE REQUEST".to_string()), "{errs:?}");
        assert!(errs.contains(&"spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'".to_string()));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.usages[1]: Unsupported value: \"flying\"")));
        let mut signer = Vec::new();
        signer_name(
            &mut signer,
            "spec.signerName",
            "kubernetes.io/kube-apiserver-client",
        );
        assert!(signer.is_empty());
    }

    #[test]
    fn a_real_csr_is_accepted() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["node1".to_string()]).unwrap();
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let request = base64::engine::general_purpose::STANDARD.encode(pem);
        let csr = json!({"spec": {"request": request, "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"]}});
        assert!(
            Csr.validate(&csr).is_empty(),
            "{:?}",
            msgs(&Csr.validate(&csr))
        );
    }

    #[test]
    fn lease_rules() {
        let l = json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        assert_eq!(
            msgs(&Lease.validate(&l)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0".to_string(),
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"
                    .to_string()
            ]
        );
    }
}
