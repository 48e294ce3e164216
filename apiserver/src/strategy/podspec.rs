//! The pod spec as every kind that embeds one sees it: upstream's `SetDefaults_PodSpec` and
//! friends, and `ValidatePodSpec` / `ValidatePodTemplateSpec` with their messages and paths.
//! Pods themselves add a few pod-only rules on top (see `pod.rs`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ferrokube_common::quantity::Quantity;
use serde_json::{json, Map, Value};

use super::util::{self, default_nonzero, default_str, default_val, ensure_obj, At, Errs};
use crate::status::FieldError;

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

/// `SetDefaults_PodSpec` and the defaults of everything inside a pod spec. `is_pod` adds what
/// upstream only defaults on Pods (not on templates): service links, requests from limits and
/// host-network ports.
pub(super) fn default_pod_spec(spec: &mut Map<String, Value>, is_pod: bool) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_val(spec, "securityContext", json!({}));
    default_val(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    sync_service_account(spec);
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        util::each_obj_mut(spec, list, default_container);
    }
    util::each_obj_mut(spec, "volumes", default_volume);
    util::canonical_resource_list(spec, "overhead");
    if let Some(res) = util::obj_mut(spec, "resources") {
        util::canonical_resource_list(res, "requests");
        util::canonical_resource_list(res, "limits");
    }
    if is_pod {
        default_val(spec, "enableServiceLinks", json!(true));
        for list in ["containers", "initContainers"] {
            util::each_obj_mut(spec, list, requests_from_limits);
        }
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            for list in ["containers", "initContainers"] {
                util::each_obj_mut(spec, list, |c| {
                    util::each_obj_mut(c, "ports", |p| {
                        let container = p.get("containerPort").cloned();
                        if p.get("hostPort").and_then(util::as_integer).unwrap_or(0) == 0 {
                            if let Some(cp) = container {
                                p.insert("hostPort".into(), cp);
                            }
                        }
                    })
                });
            }
        }
    }
}

/// The v1 conversion keeps the deprecated `serviceAccount` equal to `serviceAccountName`.
fn sync_service_account(spec: &mut Map<String, Value>) {
    let name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str))
        .map(str::to_string);
    match name.filter(|n| !n.is_empty()) {
        Some(n) => {
            spec.insert("serviceAccountName".into(), json!(n));
            spec.insert("serviceAccount".into(), json!(n));
        }
        None => {
            if spec
                .get("serviceAccount")
                .is_some_and(|v| v.is_string() || v.is_null())
            {
                spec.remove("serviceAccount");
            }
        }
    }
}

/// What `PullPolicy` an image gets when none is given: `Always` for `:latest` or no tag.
pub(super) fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference as upstream's `ParseImageName` sees it: `latest` when there
/// is neither tag nor digest, `None` when the reference does not parse.
fn image_tag(image: &str) -> Option<String> {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d.split_once(':')?;
        if algo.is_empty() || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !ok {
            return None;
        }
    }
    if !valid_repository(name) {
        return None;
    }
    Some(match (tag, digest) {
        (Some(t), _) => t.to_string(),
        (None, None) => "latest".to_string(),
        (None, Some(_)) => String::new(),
    })
}

fn valid_repository(name: &str) -> bool {
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        let is_domain = first.contains(['.', ':'])
            || first == "localhost"
            || first.bytes().any(|c| c.is_ascii_uppercase());
        if is_domain {
            let (host, port) = match first.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (first, None),
            };
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
                || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
            {
                return false;
            }
            parts.remove(0);
        }
    }
    !parts.is_empty()
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.as_bytes()[0].is_ascii_alphanumeric()
                && p.as_bytes()[p.len() - 1].is_ascii_alphanumeric()
                && p.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
                })
        })
}

fn default_container(c: &mut Map<String, Value>) {
    if c.get("imagePullPolicy")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
        && !c
            .get("imagePullPolicy")
            .is_some_and(|v| !v.is_string() && !v.is_null())
    {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = default_pull_policy(image);
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    if let Some(res) = ensure_obj(c, "resources") {
        util::canonical_resource_list(res, "requests");
        util::canonical_resource_list(res, "limits");
    }
    util::each_obj_mut(c, "ports", |p| default_str(p, "protocol", "TCP"));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = util::obj_mut(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lc) = util::obj_mut(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = util::obj_mut(lc, hook) {
                default_handler(h);
            }
        }
    }
    util::each_obj_mut(c, "env", |e| {
        if let Some(from) = util::obj_mut(e, "valueFrom") {
            default_field_refs(from);
        }
    });
}

fn default_probe(p: &mut Map<String, Value>) {
    default_nonzero(p, "timeoutSeconds", 1);
    default_nonzero(p, "periodSeconds", 10);
    default_nonzero(p, "successThreshold", 1);
    default_nonzero(p, "failureThreshold", 3);
    default_handler(p);
}

fn default_handler(h: &mut Map<String, Value>) {
    if let Some(get) = util::obj_mut(h, "httpGet") {
        default_str(get, "path", "/");
        default_str(get, "scheme", "HTTP");
    }
    if let Some(grpc) = util::obj_mut(h, "grpc") {
        default_val(grpc, "service", json!(""));
    }
}

/// `fieldRef.apiVersion` defaults to v1; `resourceFieldRef.divisor` is a non-pointer quantity
/// and so always serialises (as "0" when unset).
fn default_field_refs(m: &mut Map<String, Value>) {
    if let Some(f) = util::obj_mut(m, "fieldRef") {
        default_str(f, "apiVersion", "v1");
    }
    if let Some(r) = util::obj_mut(m, "resourceFieldRef") {
        default_val(r, "divisor", json!("0"));
        if let Some(d) = r.get_mut("divisor") {
            util::canonical_quantity(d);
        }
    }
}

/// Every volume source key of the v1 API, in upstream's validation order; the second of the
/// pair is the path segment upstream names when reporting a second source.
pub(super) const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

fn default_volume(v: &mut Map<String, Value>) {
    if VOLUME_SOURCES.iter().all(|(k, _)| util::is_unset(v, k)) {
        v.insert("emptyDir".into(), json!({}));
    }
    if let Some(e) = util::obj_mut(v, "emptyDir") {
        if let Some(s) = e.get_mut("sizeLimit") {
            util::canonical_quantity(s);
        }
    }
    if let Some(h) = util::obj_mut(v, "hostPath") {
        default_val(h, "type", json!(""));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = util::obj_mut(v, src) {
            default_val(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = util::obj_mut(v, "downwardAPI") {
        util::each_obj_mut(d, "items", default_field_refs);
    }
    if let Some(p) = util::obj_mut(v, "projected") {
        util::each_obj_mut(p, "sources", |s| {
            if let Some(t) = util::obj_mut(s, "serviceAccountToken") {
                default_val(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = util::obj_mut(s, "downwardAPI") {
                util::each_obj_mut(d, "items", default_field_refs);
            }
        });
    }
    if let Some(i) = util::obj_mut(v, "iscsi") {
        default_str(i, "iscsiInterface", "default");
    }
    if let Some(r) = util::obj_mut(v, "rbd") {
        default_str(r, "pool", "rbd");
        default_str(r, "user", "admin");
        default_str(r, "keyring", "/etc/ceph/keyring");
    }
    if let Some(a) = util::obj_mut(v, "azureDisk") {
        default_val(a, "cachingMode", json!("ReadWrite"));
        default_val(a, "fsType", json!("ext4"));
        default_val(a, "readOnly", json!(false));
        default_val(a, "kind", json!("Shared"));
    }
    if let Some(s) = util::obj_mut(v, "scaleIO") {
        default_str(s, "storageMode", "ThinProvisioned");
        default_str(s, "fsType", "xfs");
    }
    if let Some(img) = util::obj_mut(v, "image") {
        if img
            .get("pullPolicy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            let reference = img.get("reference").and_then(Value::as_str).unwrap_or("");
            let policy = default_pull_policy(reference);
            img.insert("pullPolicy".into(), json!(policy));
        }
    }
    if let Some(e) = util::obj_mut(v, "ephemeral") {
        if let Some(t) = util::obj_mut(e, "volumeClaimTemplate") {
            default_val(t, "metadata", json!({}));
            if let Some(m) = util::obj_mut(t, "metadata") {
                m.entry("creationTimestamp").or_insert(Value::Null);
            }
            if let Some(spec) = util::obj_mut(t, "spec") {
                default_pvc_spec(spec);
            }
        }
    }
}

/// `SetDefaults_PersistentVolumeClaimSpec` plus the serialisation of its quantities.
pub(super) fn default_pvc_spec(spec: &mut Map<String, Value>) {
    default_val(spec, "volumeMode", json!("Filesystem"));
    if let Some(res) = ensure_obj(spec, "resources") {
        util::canonical_resource_list(res, "requests");
        util::canonical_resource_list(res, "limits");
    }
}

/// `SetDefaults_Pod`: a container with limits but no requests for a resource requests that much.
fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(res) = util::obj_mut(c, "resources") else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let Some(requests) = ensure_obj(res, "requests") else {
        return;
    };
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// Defaults of a pod template: the spec's, plus `metadata` which always serialises (with its
/// zero creation timestamp, as upstream writes it).
pub(super) fn default_template(tmpl: &mut Map<String, Value>) {
    if let Some(meta) = ensure_obj(tmpl, "metadata") {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
    if let Some(spec) = ensure_obj(tmpl, "spec") {
        default_pod_spec(spec, false);
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Opts {
    /// The spec is a Pod's own, not a template's.
    pub is_pod: bool,
}

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const FILE_MODE: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// `ValidatePodTemplateSpec`.
pub(super) fn validate_template(errs: &mut Errs, tmpl: &At, opts: Opts) {
    let meta = tmpl.child("metadata");
    util::labels(errs, &meta.child("labels"));
    util::annotations(errs, &meta.child("annotations"));
    let spec = tmpl.child("spec");
    pod_annotations(errs, &meta.child("annotations"), &spec);
    validate_pod_spec(errs, &spec, None, opts);
    if spec.child("ephemeralContainers").len() > 0 {
        errs.push(FieldError::forbidden(
            spec.child("ephemeralContainers").path,
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// `ValidatePodSpecificAnnotations`: the annotations that mean something to pods.
pub(super) fn pod_annotations(errs: &mut Errs, ann: &At, spec: &At) {
    let map = ann.str_map_quiet();
    if let Some(v) = map.get("kubernetes.io/config.mirror") {
        if spec.child("nodeName").s().unwrap_or("").is_empty() {
            errs.push(FieldError::invalid(
                ann.key_path("kubernetes.io/config.mirror"),
                v.as_str(),
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
    }
    if let Some(v) = map.get("controller.kubernetes.io/pod-deletion-cost") {
        if v.trim() != v || v.parse::<i32>().is_err() {
            errs.push(FieldError::invalid(
                ann.key_path("controller.kubernetes.io/pod-deletion-cost"),
                v.as_str(),
                "must be a 32bit integer",
            ));
        }
    }
    for (k, v) in &map {
        if k == "seccomp.security.alpha.kubernetes.io/pod"
            || k.starts_with("container.seccomp.security.alpha.kubernetes.io/")
        {
            seccomp_annotation(errs, &ann.child(k).path, v);
        }
        if let Some(container) = k.strip_prefix("container.apparmor.security.beta.kubernetes.io/") {
            if !has_container(spec, container) {
                errs.push(FieldError::invalid(
                    ann.key_path(k),
                    container,
                    "container not found",
                ));
            }
            if !(v.is_empty()
                || v == "runtime/default"
                || v == "unconfined"
                || v.starts_with("localhost/"))
            {
                errs.push(FieldError::invalid(
                    ann.key_path(k),
                    v.as_str(),
                    format!("invalid AppArmor profile name: {v:?}"),
                ));
            }
        }
    }
}

fn seccomp_annotation(errs: &mut Errs, path: &str, p: &str) {
    match p {
        "runtime/default" | "docker/default" | "unconfined" => {}
        _ => match p.strip_prefix("localhost/") {
            Some(rest) => local_descending_path(errs, path, rest),
            None => errs.push(FieldError::invalid(
                path,
                p,
                "must be a valid seccomp profile",
            )),
        },
    }
}

fn has_container(spec: &At, name: &str) -> bool {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .any(|list| {
            spec.child(list)
                .items(&mut Vec::new())
                .iter()
                .any(|c| c.child("name").s() == Some(name))
        })
}

/// What a volume of the spec is, for mounts and devices to check against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VolKind {
    Claim,
    Image,
    Other,
}

/// `ValidatePodSpec`. `meta` is the pod's metadata when validating a Pod (for ephemeral
/// volume names).
pub(super) fn validate_pod_spec(errs: &mut Errs, spec: &At, meta: Option<&At>, opts: Opts) {
    if spec.obj(errs).is_none() && spec.is_set() {
        return;
    }
    let grace = spec.child("terminationGracePeriodSeconds");
    if !grace.is_set() {
        errs.push(FieldError::required(grace.path.clone(), ""));
    }
    let grace = grace.int(errs);
    let pod_name = meta.and_then(|m| m.child("name").s()).unwrap_or("");
    let volumes = validate_volumes(errs, &spec.child("volumes"), pod_name, opts);
    let claims = pod_claim_names(spec);
    validate_resource_claims(errs, &spec.child("resourceClaims"));
    let restart = spec.child("restartPolicy").s().unwrap_or("");
    let host_users = spec.at("securityContext.hostUsers").b().unwrap_or(true);
    let ctx = ContainerCtx {
        volumes: &volumes,
        claims: &claims,
        grace,
        restart_policy: restart,
        host_users,
    };
    validate_containers(errs, &spec.child("containers"), &ctx);
    validate_init_containers(
        errs,
        &spec.child("initContainers"),
        &spec.child("containers"),
        &ctx,
    );
    validate_ephemeral_containers(errs, spec, &ctx);
    host_network_deps(errs, spec, opts);
    let rp = spec.child("restartPolicy");
    match rp.string(errs) {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(rp.path.clone(), "")),
        other => errs.push(FieldError::not_supported(
            rp.path.clone(),
            other,
            RESTART_POLICIES,
        )),
    }
    let dns = spec.child("dnsPolicy");
    match dns.string(errs) {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(dns.path.clone(), "")),
        other => errs.push(FieldError::not_supported(
            dns.path.clone(),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    util::labels(errs, &spec.child("nodeSelector"));
    pod_security_context(errs, spec);
    for s in spec.child("imagePullSecrets").items(errs) {
        s.obj(errs);
        s.child("name").str(errs);
    }
    affinity(errs, &spec.child("affinity"));
    dns_config(errs, spec);
    for g in spec.child("readinessGates").items(errs) {
        let t = g.child("conditionType");
        {
            let s = t.string(errs);
            util::qualified_name(errs, &t.path, s)
        };
    }
    let mut seen = HashSet::new();
    for g in spec.child("schedulingGates").items(errs) {
        let name = g.child("name").string(errs);
        util::qualified_name(errs, &g.path, name);
        if !seen.insert(name) {
            errs.push(FieldError::duplicate(g.path.clone(), name));
        }
    }
    topology_spread(errs, &spec.child("topologySpreadConstraints"));
    host_users_deps(errs, spec);
    let sa = spec.child("serviceAccountName");
    if let Some(name) = sa.str(errs).filter(|s| !s.is_empty()) {
        util::dns_subdomain(errs, &sa.path, name);
    }
    let node = spec.child("nodeName");
    if let Some(name) = node.str(errs).filter(|s| !s.is_empty()) {
        util::dns_subdomain(errs, &node.path, name);
    }
    let ads = spec.child("activeDeadlineSeconds");
    if let Some(n) = ads.int(errs) {
        if !(1..=i32::MAX as i64).contains(&n) {
            errs.push(FieldError::invalid(
                ads.path.clone(),
                n,
                util::inclusive_range(1, i32::MAX as i64),
            ));
        }
    }
    for f in ["hostname", "subdomain"] {
        let a = spec.child(f);
        if let Some(v) = a.str(errs).filter(|s| !s.is_empty()) {
            util::dns_label(errs, &a.path, v);
        }
    }
    tolerations(errs, &spec.child("tolerations"));
    for alias in spec.child("hostAliases").items(errs) {
        let ip = alias.child("ip");
        {
            let s = ip.string(errs);
            util::ip(errs, &ip.path, s)
        };
        for h in alias.child("hostnames").items(errs) {
            {
                let s = h.string(errs);
                util::dns_subdomain(errs, &h.path, s)
            };
        }
    }
    let pc = spec.child("priorityClassName");
    if let Some(v) = pc.str(errs).filter(|s| !s.is_empty()) {
        util::dns_subdomain(errs, &pc.path, v);
    }
    let rc = spec.child("runtimeClassName");
    if let Some(v) = rc.str(errs) {
        util::dns_subdomain(errs, &rc.path, v);
    }
    let pp = spec.child("preemptionPolicy");
    if let Some(v) = pp.str(errs) {
        match v {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(FieldError::required(pp.path.clone(), "")),
            other => errs.push(FieldError::not_supported(
                pp.path.clone(),
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    let overhead = spec.child("overhead");
    if overhead.is_set() {
        let limits_path = format!("{}.limits", overhead.path);
        let renamed = At {
            v: overhead.v,
            path: limits_path,
        };
        resource_list(errs, &renamed);
    }
    let os = spec.child("os");
    if os.is_set() {
        let name = os.child("name");
        match name.string(errs) {
            "" => errs.push(FieldError::required(name.path.clone(), "cannot be empty")),
            "linux" => {
                for (c, path) in all_containers(spec) {
                    if c.at("securityContext.windowsOptions").is_set() {
                        errs.push(FieldError::forbidden(
                            format!("{path}.securityContext.windowsOptions"),
                            "windows options cannot be set for a linux pod",
                        ));
                    }
                }
                if spec.at("securityContext.windowsOptions").is_set() {
                    errs.push(FieldError::forbidden(
                        format!("{}.securityContext.windowsOptions", spec.path),
                        "windows options cannot be set for a linux pod",
                    ));
                }
            }
            "windows" => {}
            other => errs.push(FieldError::not_supported(
                os.path.clone(),
                other,
                &["linux", "windows"],
            )),
        }
    }
}

fn all_containers<'a>(spec: &At<'a>) -> Vec<(At<'a>, String)> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec.child(list).items(&mut Vec::new()) {
            let p = c.path.clone();
            out.push((c, p));
        }
    }
    out
}

struct ContainerCtx<'a> {
    volumes: &'a BTreeMap<String, VolKind>,
    claims: &'a BTreeSet<String>,
    grace: Option<i64>,
    restart_policy: &'a str,
    host_users: bool,
}

fn pod_claim_names(spec: &At) -> BTreeSet<String> {
    spec.child("resourceClaims")
        .items(&mut Vec::new())
        .iter()
        .filter_map(|c| c.child("name").s())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

fn validate_resource_claims(errs: &mut Errs, claims: &At) {
    let mut seen = HashSet::new();
    for c in claims.items(errs) {
        let name = c.child("name");
        let n = name.string(errs);
        if n.is_empty() {
            errs.push(FieldError::required(name.path.clone(), ""));
        } else if !seen.insert(n) {
            errs.push(FieldError::duplicate(name.path.clone(), n));
        } else {
            util::dns_label(errs, &name.path, n);
        }
        let rcn = c.child("resourceClaimName");
        let rctn = c.child("resourceClaimTemplateName");
        if rcn.is_set() && rctn.is_set() {
            errs.push(FieldError::invalid(
                c.path.clone(),
                c.value(),
                "at most one of `resourceClaimName` or `resourceClaimTemplateName` may be specified",
            ));
        }
        if !rcn.is_set() && !rctn.is_set() {
            errs.push(FieldError::invalid(
                c.path.clone(),
                c.value(),
                "must specify one of: `resourceClaimName`, `resourceClaimTemplateName`",
            ));
        }
        for f in [&rcn, &rctn] {
            if let Some(v) = f.str(errs) {
                util::dns_subdomain(errs, &f.path, v);
            }
        }
    }
}

// ---- volumes ----

fn validate_volumes(
    errs: &mut Errs,
    vols: &At,
    pod_name: &str,
    opts: Opts,
) -> BTreeMap<String, VolKind> {
    let mut out = BTreeMap::new();
    let items = vols.items(errs);
    let created_claims: HashSet<String> = if pod_name.is_empty() {
        HashSet::new()
    } else {
        items
            .iter()
            .filter(|v| v.child("ephemeral").is_set())
            .filter_map(|v| v.child("name").s())
            .map(|n| format!("{pod_name}-{n}"))
            .collect()
    };
    for vol in &items {
        if vol.obj(errs).is_none() {
            continue;
        }
        let mut el = Vec::new();
        let name_at = vol.child("name");
        let name = name_at.string(&mut el);
        let kind = volume_source(&mut el, vol, name, pod_name, opts);
        if name.is_empty() {
            el.push(FieldError::required(name_at.path.clone(), ""));
        } else {
            util::dns_label(&mut el, &name_at.path, name);
        }
        if out.contains_key(name) {
            el.push(FieldError::duplicate(name_at.path.clone(), name));
        }
        if el.is_empty() {
            out.insert(name.to_string(), kind);
        } else {
            errs.extend(el);
        }
        let claim = vol.at("persistentVolumeClaim.claimName");
        if let Some(c) = claim.s() {
            if created_claims.contains(c) {
                errs.push(FieldError::invalid(
                    claim.path,
                    c,
                    "must not reference a PVC that gets created for an ephemeral volume",
                ));
            }
        }
    }
    out
}

fn volume_source(errs: &mut Errs, vol: &At, vol_name: &str, pod_name: &str, opts: Opts) -> VolKind {
    let mut count = 0;
    let mut kind = VolKind::Other;
    for (key, reported) in VOLUME_SOURCES {
        let src = vol.child(key);
        if !src.is_set() {
            continue;
        }
        if count > 0 {
            errs.push(FieldError::forbidden(
                format!("{}.{reported}", vol.path),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        if src.obj(errs).is_none() {
            continue;
        }
        match *key {
            "emptyDir" => {
                let size = src.child("sizeLimit");
                if let Some(q) = util::quantity(errs, &size) {
                    if q.sign() < 0 {
                        errs.push(FieldError::forbidden(
                            size.path,
                            "SizeLimit field must be a valid resource quantity",
                        ));
                    }
                }
            }
            "hostPath" => host_path(errs, &src),
            "secret" => {
                required_str(errs, &src.child("secretName"));
                mode(errs, &src.child("defaultMode"));
                for item in src.child("items").items(errs) {
                    key_to_path(errs, &item);
                }
            }
            "configMap" => {
                required_str(errs, &src.child("name"));
                mode(errs, &src.child("defaultMode"));
                for item in src.child("items").items(errs) {
                    key_to_path(errs, &item);
                }
            }
            "persistentVolumeClaim" => {
                required_str(errs, &src.child("claimName"));
                kind = VolKind::Claim;
            }
            "nfs" => {
                required_str(errs, &src.child("server"));
                let p = src.child("path");
                let path = p.string(errs);
                if path.is_empty() {
                    errs.push(FieldError::required(p.path.clone(), ""));
                }
                if !path.starts_with('/') {
                    errs.push(FieldError::invalid(
                        p.path,
                        path,
                        "must be an absolute path",
                    ));
                }
            }
            "downwardAPI" => {
                mode(errs, &src.child("defaultMode"));
                for item in src.child("items").items(errs) {
                    downward_file(errs, &item, &src.path);
                }
            }
            "projected" => projected(errs, &src),
            "csi" => csi_driver(errs, &src.child("driver")),
            "gcePersistentDisk" => {
                let renamed = At {
                    v: src.v,
                    path: format!("{}.persistentDisk", vol.path),
                };
                required_str(errs, &renamed.child("pdName"));
                partition(errs, &renamed.child("partition"));
            }
            "awsElasticBlockStore" => {
                required_str(errs, &src.child("volumeID"));
                partition(errs, &src.child("partition"));
            }
            "gitRepo" => {
                required_str(errs, &src.child("repository"));
                let d = src.child("directory");
                {
                    let s = d.string(errs);
                    local_descending_path(errs, &d.path, s)
                };
            }
            "iscsi" => {
                required_str(errs, &src.child("targetPortal"));
                required_str(errs, &src.child("iqn"));
            }
            "glusterfs" => {
                required_str(errs, &src.child("endpoints"));
                required_str(errs, &src.child("path"));
            }
            "rbd" => {
                if src.child("monitors").len() == 0 {
                    errs.push(FieldError::required(src.child("monitors").path, ""));
                }
                required_str(errs, &src.child("image"));
            }
            "cinder" | "portworxVolume" => required_str(errs, &src.child("volumeID")),
            "cephfs" => {
                let renamed = At {
                    v: src.v,
                    path: format!("{}.cephfs", vol.path),
                };
                if renamed.child("monitors").len() == 0 {
                    errs.push(FieldError::required(renamed.child("monitors").path, ""));
                }
            }
            "flexVolume" => required_str(errs, &src.child("driver")),
            "azureFile" => {
                required_str(errs, &src.child("secretName"));
                required_str(errs, &src.child("shareName"));
            }
            "azureDisk" => {
                required_str(errs, &src.child("diskName"));
                required_str(errs, &src.child("diskURI"));
            }
            "vsphereVolume" => required_str(errs, &src.child("volumePath")),
            "photonPersistentDisk" => required_str(errs, &src.child("pdID")),
            "scaleIO" => {
                for f in ["gateway", "system", "volumeName"] {
                    required_str(errs, &src.child(f));
                }
            }
            "storageos" => {
                let v = src.child("volumeName");
                let name = v.string(errs);
                if name.is_empty() {
                    errs.push(FieldError::required(v.path, ""));
                } else {
                    util::dns_label(errs, &v.path, name);
                }
            }
            "ephemeral" => {
                kind = VolKind::Claim;
                let t = src.child("volumeClaimTemplate");
                if !t.is_set() {
                    errs.push(FieldError::required(t.path, ""));
                } else {
                    util::labels(errs, &t.at("metadata.labels"));
                    util::annotations(errs, &t.at("metadata.annotations"));
                    validate_pvc_spec(errs, &t.child("spec"));
                    if !pod_name.is_empty() && !vol_name.is_empty() {
                        let claim = format!("{pod_name}-{vol_name}");
                        for m in ferrokube_common::labels::is_dns1123_subdomain(&claim) {
                            errs.push(FieldError::invalid(
                                format!("{}.name", src.path),
                                vol_name,
                                format!("PVC name {claim:?}: {m}"),
                            ));
                        }
                    }
                }
            }
            "image" => {
                kind = VolKind::Image;
                if opts.is_pod && src.child("reference").s().unwrap_or("").is_empty() {
                    errs.push(FieldError::required(src.child("reference").path, ""));
                }
                pull_policy(errs, &src.child("pullPolicy"));
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(
            vol.path.clone(),
            "must specify a volume type",
        ));
    }
    kind
}

fn required_str(errs: &mut Errs, at: &At) {
    if at.string(errs).is_empty() {
        errs.push(FieldError::required(at.path.clone(), ""));
    }
}

fn mode(errs: &mut Errs, at: &At) {
    if let Some(m) = at.int(errs) {
        if !(0..=0o777).contains(&m) {
            errs.push(FieldError::invalid(at.path.clone(), m, FILE_MODE));
        }
    }
}

fn partition(errs: &mut Errs, at: &At) {
    if let Some(p) = at.int(errs) {
        if !(0..=255).contains(&p) {
            errs.push(FieldError::invalid(
                at.path.clone(),
                p,
                util::inclusive_range(1, 255),
            ));
        }
    }
}

fn host_path(errs: &mut Errs, src: &At) {
    let p = src.child("path");
    let path = p.string(errs);
    if path.is_empty() {
        errs.push(FieldError::required(p.path, ""));
        return;
    }
    no_backsteps(errs, &p.path, path);
    let t = src.child("type");
    if let Some(v) = t.str(errs) {
        const TYPES: &[&str] = &[
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if !TYPES.contains(&v) {
            errs.push(FieldError::not_supported(t.path, v, TYPES));
        }
    }
}

fn no_backsteps(errs: &mut Errs, path: &str, target: &str) {
    if target.replace('\\', "/").split('/').any(|p| p == "..") {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
}

fn local_descending_path(errs: &mut Errs, path: &str, target: &str) {
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    no_backsteps(errs, path, target);
}

/// `ValidateLocalNonReservedPath`.
fn local_non_reserved_path(errs: &mut Errs, path: &str, target: &str) {
    local_descending_path(errs, path, target);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(FieldError::invalid(
            path,
            target,
            "must not start with '..'",
        ));
    }
}

fn key_to_path(errs: &mut Errs, item: &At) {
    required_str(errs, &item.child("key"));
    let p = item.child("path");
    let path = p.string(errs);
    if path.is_empty() {
        errs.push(FieldError::required(p.path.clone(), ""));
    }
    local_non_reserved_path(errs, &p.path, path);
    mode(errs, &item.child("mode"));
}

const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn downward_file(errs: &mut Errs, item: &At, parent: &str) {
    let p = item.child("path");
    let path = p.string(errs);
    if path.is_empty() {
        errs.push(FieldError::required(p.path.clone(), ""));
    }
    local_non_reserved_path(errs, &p.path, path);
    let field_ref = item.child("fieldRef");
    let res_ref = item.child("resourceFieldRef");
    if field_ref.is_set() {
        object_field_selector(errs, &field_ref, VOLUME_FIELD_PATHS);
        if res_ref.is_set() {
            errs.push(FieldError::invalid(
                parent,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if res_ref.is_set() {
        resource_field_selector(errs, &res_ref, true);
    } else {
        errs.push(FieldError::required(
            parent,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    mode(errs, &item.child("mode"));
}

fn object_field_selector(errs: &mut Errs, fs: &At, allowed: &[&str]) {
    let version = fs.child("apiVersion");
    if version.string(errs).is_empty() {
        errs.push(FieldError::required(version.path, ""));
        return;
    }
    let fp = fs.child("fieldPath");
    let path = fp.string(errs);
    if path.is_empty() {
        errs.push(FieldError::required(fp.path, ""));
        return;
    }
    if let Some((base, rest)) = path.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .map(|s| s.trim_matches(|c| c == '\'' || c == '"'))
            .unwrap_or(rest);
        match base {
            "metadata.annotations" => {
                util::qualified_name(errs, &fs.path, &subscript.to_lowercase())
            }
            "metadata.labels" => util::qualified_name(errs, &fs.path, subscript),
            _ => errs.push(FieldError::invalid(
                fs.path.clone(),
                base,
                "does not support subscript",
            )),
        }
    } else if !allowed.contains(&path) {
        errs.push(FieldError::not_supported(fp.path, path, allowed));
    }
}

fn resource_field_selector(errs: &mut Errs, fs: &At, volume: bool) {
    let cn = fs.child("containerName");
    let res = fs.child("resource");
    let resource = res.string(errs);
    if volume && cn.string(errs).is_empty() {
        errs.push(FieldError::required(cn.path, ""));
    } else if resource.is_empty() {
        errs.push(FieldError::required(res.path.clone(), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(FieldError::not_supported(
            res.path,
            resource,
            RESOURCE_FIELD_PATHS,
        ));
    }
    let div = fs.child("divisor");
    let Some(q) = util::quantity(errs, &div) else {
        return;
    };
    if q.is_zero() {
        return;
    }
    let text = q.to_string();
    const SIZES: &[&str] = &[
        "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
    ];
    let (ok, what) = match resource {
        "limits.cpu" | "requests.cpu" => (["1m", "1"].contains(&text.as_str()), "only divisor's values 1m and 1 are supported with the cpu resource"),
        "limits.memory" | "requests.memory" => (SIZES.contains(&text.as_str()), "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource"),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => (SIZES.contains(&text.as_str()), "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource"),
        r if r.starts_with("requests.hugepages-") || r.starts_with("limits.hugepages-") => (SIZES.contains(&text.as_str()), "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the hugepages resource"),
        _ => (true, ""),
    };
    if !ok {
        errs.push(FieldError::invalid(div.path, resource, what));
    }
}

fn projected(errs: &mut Errs, src: &At) {
    mode(errs, &src.child("defaultMode"));
    let mut paths: HashSet<String> = HashSet::new();
    for s in src.child("sources").items(errs) {
        let mut n = 0;
        for kind in ["secret", "configMap"] {
            let p = s.child(kind);
            if !p.is_set() {
                continue;
            }
            n += 1;
            let name = p.child("name").string(errs);
            if name.is_empty() {
                errs.push(FieldError::required(p.child("name").path, ""));
            }
            for item in p.child("items").items(errs) {
                key_to_path(errs, &item);
                if let Some(path) = item.child("path").s().filter(|p| !p.is_empty()) {
                    if !paths.insert(path.to_string()) {
                        errs.push(FieldError::invalid(
                            src.path.clone(),
                            name,
                            "conflicting duplicate paths",
                        ));
                    }
                }
            }
        }
        let d = s.child("downwardAPI");
        if d.is_set() {
            n += 1;
            for item in d.child("items").items(errs) {
                downward_file(errs, &item, &d.path);
                if let Some(path) = item.child("path").s().filter(|p| !p.is_empty()) {
                    if !paths.insert(path.to_string()) {
                        errs.push(FieldError::invalid(
                            src.path.clone(),
                            path,
                            "conflicting duplicate paths",
                        ));
                    }
                }
            }
        }
        let t = s.child("serviceAccountToken");
        if t.is_set() {
            n += 1;
            let exp = t.child("expirationSeconds");
            if let Some(e) = exp.int(errs) {
                if e < 600 {
                    errs.push(FieldError::invalid(
                        exp.path.clone(),
                        e,
                        "may not specify a duration less than 10 minutes",
                    ));
                }
                if e > 1 << 32 {
                    errs.push(FieldError::invalid(
                        exp.path.clone(),
                        e,
                        "may not specify a duration larger than 2^32 seconds",
                    ));
                }
            }
            let path = t.child("path").string(errs);
            if path.is_empty() {
                errs.push(FieldError::required(format!("{}.path", src.path), ""));
            } else {
                local_non_reserved_path(errs, &format!("{}.path", src.path), path);
            }
        }
        let b = s.child("clusterTrustBundle");
        if b.is_set() {
            n += 1;
            let has_name = b.child("name").is_set();
            let has_signer = b.child("signerName").is_set();
            match (has_name, has_signer) {
                (true, true) => errs.push(FieldError::invalid(
                    b.path.clone(),
                    b.value(),
                    "only one of name and signerName may be used",
                )),
                (false, false) => errs.push(FieldError::required(
                    b.path.clone(),
                    "either name or signerName must be specified",
                )),
                _ => {}
            }
            let path = b.child("path").string(errs);
            if path.is_empty() {
                errs.push(FieldError::required(b.child("path").path, ""));
            }
            local_non_reserved_path(errs, &b.child("path").path, path);
            if !paths.insert(path.to_string()) {
                errs.push(FieldError::invalid(
                    src.path.clone(),
                    path,
                    "conflicting duplicate paths",
                ));
            }
        }
        if n > 1 {
            errs.push(FieldError::forbidden(
                s.path.clone(),
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

fn csi_driver(errs: &mut Errs, at: &At) {
    let d = at.string(errs);
    if d.is_empty() {
        errs.push(FieldError::required(at.path.clone(), ""));
    }
    if d.len() > 63 {
        errs.push(FieldError::too_long(at.path.clone(), 63));
    }
    for m in ferrokube_common::labels::is_dns1123_subdomain(&d.to_lowercase()) {
        errs.push(FieldError::invalid(at.path.clone(), d, m));
    }
}

/// `ValidatePersistentVolumeClaimSpec`.
pub(super) fn validate_pvc_spec(errs: &mut Errs, spec: &At) {
    let modes = spec.child("accessModes");
    if modes.len() == 0 {
        errs.push(FieldError::required(
            modes.path.clone(),
            "at least 1 access mode is required",
        ));
    }
    let sel = spec.child("selector");
    if sel.is_set() {
        util::label_selector(errs, &sel, false);
    }
    access_modes(errs, &modes);
    let storage_path = format!("{}.resources[storage]", spec.path);
    let storage = spec.at("resources.requests.storage");
    if !storage.is_set() {
        errs.push(FieldError::required(storage_path, ""));
    } else {
        let storage = At {
            v: storage.v,
            path: storage_path,
        };
        if let Some(q) = util::quantity(errs, &storage) {
            if q.sign() <= 0 {
                errs.push(FieldError::invalid(
                    storage.path.clone(),
                    q.to_string(),
                    "must be greater than zero",
                ));
            }
        }
    }
    let sc = spec.child("storageClassName");
    if let Some(v) = sc.str(errs).filter(|s| !s.is_empty()) {
        util::dns_subdomain(errs, &sc.path, v);
    }
    let vm = spec.child("volumeMode");
    if let Some(v) = vm.str(errs) {
        if !["Block", "Filesystem"].contains(&v) {
            errs.push(FieldError::not_supported(
                vm.path,
                v,
                &["Block", "Filesystem"],
            ));
        }
    }
    for f in ["dataSource", "dataSourceRef"] {
        let ds = spec.child(f);
        if !ds.is_set() {
            continue;
        }
        required_str(errs, &ds.child("name"));
        let kind = ds.child("kind").string(errs);
        if kind.is_empty() {
            errs.push(FieldError::required(ds.child("kind").path, ""));
        }
        let group = ds.child("apiGroup").string(errs);
        if group.is_empty() && kind != "PersistentVolumeClaim" {
            errs.push(FieldError::invalid(
                ds.path.clone(),
                kind,
                "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
            ));
        }
        if !group.is_empty() {
            util::dns_subdomain(errs, &ds.child("apiGroup").path, group);
        }
    }
    let vac = spec.child("volumeAttributesClassName");
    if let Some(v) = vac.str(errs).filter(|s| !s.is_empty()) {
        util::dns_subdomain(errs, &vac.path, v);
    }
}

pub(super) fn access_modes(errs: &mut Errs, modes: &At) {
    const MODES: &[&str] = &[
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    let (mut once_pod, mut other) = (false, false);
    for m in modes.strings(errs) {
        if !MODES.contains(&m) {
            errs.push(FieldError::not_supported(modes.path.clone(), m, MODES));
        } else if m == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            other = true;
        }
    }
    if once_pod && other {
        errs.push(FieldError::forbidden(
            modes.path.clone(),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

// ---- containers ----

fn validate_containers(errs: &mut Errs, list: &At, ctx: &ContainerCtx) {
    let items = list.items(errs);
    if items.is_empty() {
        errs.push(FieldError::required(list.path.clone(), ""));
        return;
    }
    let mut names = HashSet::new();
    for c in &items {
        if c.obj(errs).is_none() {
            continue;
        }
        container_common(errs, c, ctx);
        let name = c.child("name").s().unwrap_or("");
        if !names.insert(name) {
            errs.push(FieldError::duplicate(c.child("name").path, name));
        }
        let lc = c.child("lifecycle");
        if lc.is_set() {
            lifecycle(errs, &lc, ctx.grace);
        }
        probe(
            errs,
            &c.child("livenessProbe"),
            ctx.grace,
            ProbeKind::Liveness,
        );
        probe(
            errs,
            &c.child("readinessProbe"),
            ctx.grace,
            ProbeKind::Readiness,
        );
        probe(
            errs,
            &c.child("startupProbe"),
            ctx.grace,
            ProbeKind::Startup,
        );
        if c.child("restartPolicy").is_set() {
            errs.push(FieldError::forbidden(
                c.child("restartPolicy").path,
                "may not be set for non-init containers",
            ));
        }
    }
    host_port_conflicts(errs, &items);
}

fn validate_init_containers(errs: &mut Errs, list: &At, regular: &At, ctx: &ContainerCtx) {
    let mut names: HashSet<String> = regular
        .items(&mut Vec::new())
        .iter()
        .filter_map(|c| c.child("name").s())
        .map(str::to_string)
        .collect();
    for c in list.items(errs) {
        if c.obj(errs).is_none() {
            continue;
        }
        container_common(errs, &c, ctx);
        let rp = c.child("restartPolicy");
        let mut always = false;
        if let Some(p) = rp.str(errs) {
            if p == "Always" {
                always = true;
            } else {
                errs.push(FieldError::not_supported(rp.path.clone(), p, &["Always"]));
            }
        }
        let name = c.child("name").s().unwrap_or("");
        if names.contains(name) {
            errs.push(FieldError::duplicate(c.child("name").path, name));
        } else if !name.is_empty() {
            names.insert(name.to_string());
        }
        host_port_conflicts(errs, std::slice::from_ref(&c));
        if always {
            let lc = c.child("lifecycle");
            if lc.is_set() {
                lifecycle(errs, &lc, ctx.grace);
            }
            probe(
                errs,
                &c.child("livenessProbe"),
                ctx.grace,
                ProbeKind::Liveness,
            );
            probe(
                errs,
                &c.child("readinessProbe"),
                ctx.grace,
                ProbeKind::Readiness,
            );
            probe(
                errs,
                &c.child("startupProbe"),
                ctx.grace,
                ProbeKind::Startup,
            );
        } else {
            for f in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if c.child(f).is_set() {
                    errs.push(FieldError::forbidden(
                        c.child(f).path,
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

/// Fields an ephemeral container may set; everything else is forbidden on one.
const EPHEMERAL_ALLOWED: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "envFrom",
    "env",
    "volumeMounts",
    "volumeDevices",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
    "targetContainerName",
];

fn validate_ephemeral_containers(errs: &mut Errs, spec: &At, ctx: &ContainerCtx) {
    let list = spec.child("ephemeralContainers");
    let items = list.items(errs);
    if items.is_empty() {
        return;
    }
    let mut others = HashSet::new();
    for l in ["containers", "initContainers"] {
        for c in spec.child(l).items(&mut Vec::new()) {
            if let Some(n) = c.child("name").s() {
                others.insert(n.to_string());
            }
        }
    }
    let mut all = others.clone();
    for c in &items {
        let Some(map) = c.obj(errs) else { continue };
        container_common(errs, c, ctx);
        image_whitespace(errs, c);
        let name = c.child("name").s().unwrap_or("");
        if !all.insert(name.to_string()) {
            errs.push(FieldError::duplicate(c.child("name").path, name));
        }
        let target = c.child("targetContainerName");
        if let Some(t) = target.str(errs).filter(|t| !t.is_empty()) {
            if !others.contains(t) {
                errs.push(util::not_found(target.path.clone(), t));
            }
        }
        for (k, v) in map {
            if EPHEMERAL_ALLOWED.contains(&k.as_str()) || is_zero(v) {
                continue;
            }
            errs.push(FieldError::forbidden(
                format!("{}.{k}", c.path),
                "cannot be set for an Ephemeral Container",
            ));
        }
        for m in c.child("volumeMounts").items(errs) {
            for f in ["subPath", "subPathExpr"] {
                if !m.child(f).s().unwrap_or("").is_empty() {
                    errs.push(FieldError::forbidden(
                        m.child(f).path,
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

/// Whether a value is what Go would hold for an unset field (so it counts as not set).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(is_zero),
    }
}

pub(super) fn image_whitespace(errs: &mut Errs, c: &At) {
    let img = c.child("image");
    if let Some(i) = img.s() {
        if i.trim() != i {
            errs.push(FieldError::invalid(
                img.path,
                i,
                "must not have leading or trailing whitespace",
            ));
        }
    }
}

fn container_common(errs: &mut Errs, c: &At, ctx: &ContainerCtx) {
    let name = c.child("name");
    let n = name.string(errs);
    if n.is_empty() {
        errs.push(FieldError::required(name.path.clone(), ""));
    } else {
        util::dns_label(errs, &name.path, n);
    }
    let image = c.child("image");
    if image.string(errs).is_empty() {
        errs.push(FieldError::required(image.path.clone(), ""));
    }
    let tmp = c.child("terminationMessagePolicy");
    match tmp.string(errs) {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(tmp.path.clone(), "")),
        other => errs.push(FieldError::not_supported(
            tmp.path.clone(),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    for f in ["command", "args"] {
        c.child(f).strings(errs);
    }
    c.child("workingDir").str(errs);
    for f in ["stdin", "stdinOnce", "tty"] {
        c.child(f).bool(errs);
    }
    container_ports(errs, &c.child("ports"));
    env(errs, &c.child("env"));
    env_from(errs, &c.child("envFrom"));
    let mounts = c.child("volumeMounts");
    let devices = c.child("volumeDevices");
    let mount_map: BTreeMap<String, String> = mounts
        .items(&mut Vec::new())
        .iter()
        .map(|m| {
            (
                m.child("name").s().unwrap_or("").to_string(),
                m.child("mountPath").s().unwrap_or("").to_string(),
            )
        })
        .collect();
    let device_map: BTreeMap<String, String> = devices
        .items(&mut Vec::new())
        .iter()
        .map(|d| {
            (
                d.child("name").s().unwrap_or("").to_string(),
                d.child("devicePath").s().unwrap_or("").to_string(),
            )
        })
        .collect();
    volume_mounts(errs, &mounts, &device_map, ctx.volumes, c);
    volume_devices(errs, &devices, &mount_map, ctx.volumes);
    pull_policy(errs, &c.child("imagePullPolicy"));
    resources(errs, &c.child("resources"), ctx.claims);
    resize_policy(errs, &c.child("resizePolicy"), ctx.restart_policy);
    container_security_context(errs, &c.child("securityContext"), ctx.host_users);
}

fn pull_policy(errs: &mut Errs, at: &At) {
    match at.string(errs) {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(at.path.clone(), "")),
        other => errs.push(FieldError::not_supported(
            at.path.clone(),
            other,
            PULL_POLICIES,
        )),
    }
}

fn container_ports(errs: &mut Errs, ports: &At) {
    let mut names = HashSet::new();
    for p in ports.items(errs) {
        if p.obj(errs).is_none() {
            continue;
        }
        let name = p.child("name");
        if let Some(n) = name.str(errs).filter(|n| !n.is_empty()) {
            let msgs = util::port_name_errors(n);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(name.path.clone(), n, m));
                }
            } else if !names.insert(n) {
                errs.push(FieldError::duplicate(name.path.clone(), n));
            }
        }
        let cp = p.child("containerPort");
        match cp.int(errs) {
            None | Some(0) => errs.push(FieldError::required(cp.path.clone(), "")),
            Some(n) => {
                for m in util::port_num_errors(n) {
                    errs.push(FieldError::invalid(cp.path.clone(), n, m));
                }
            }
        }
        let hp = p.child("hostPort");
        if let Some(n) = hp.int(errs).filter(|n| *n != 0) {
            for m in util::port_num_errors(n) {
                errs.push(FieldError::invalid(hp.path.clone(), n, m));
            }
        }
        let proto = p.child("protocol");
        match proto.string(errs) {
            "" => errs.push(FieldError::required(proto.path.clone(), "")),
            "TCP" | "UDP" | "SCTP" => {}
            other => errs.push(FieldError::not_supported(
                proto.path.clone(),
                other,
                PROTOCOLS,
            )),
        }
        p.child("hostIP").str(errs);
    }
}

fn host_port_conflicts(errs: &mut Errs, containers: &[At]) {
    let mut seen = HashSet::new();
    for c in containers {
        for p in c.child("ports").items(&mut Vec::new()) {
            let port = p.child("hostPort").i().unwrap_or(0);
            if port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{port}",
                p.child("protocol").s().unwrap_or(""),
                p.child("hostIP").s().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(p.child("hostPort").path, key));
            }
        }
    }
}

/// Environment variable names as 1.33 checks them (`RelaxedEnvironmentVariableValidation` is on).
fn env_name_errors(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name.is_empty() {
        out.push("environment variable name must be non-empty".to_string());
    }
    if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        out.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_string(),
        );
    }
    out
}

fn env(errs: &mut Errs, list: &At) {
    for e in list.items(errs) {
        if e.obj(errs).is_none() {
            continue;
        }
        let name = e.child("name");
        let n = name.string(errs);
        if n.is_empty() {
            errs.push(FieldError::required(name.path.clone(), ""));
        } else {
            for m in env_name_errors(n) {
                errs.push(FieldError::invalid(name.path.clone(), n, m));
            }
        }
        let value = e.child("value").string(errs);
        let from = e.child("valueFrom");
        if !from.is_set() {
            continue;
        }
        let mut sources = 0;
        let fr = from.child("fieldRef");
        if fr.is_set() {
            sources += 1;
            object_field_selector(errs, &fr, ENV_FIELD_PATHS);
        }
        let rr = from.child("resourceFieldRef");
        if rr.is_set() {
            sources += 1;
            resource_field_selector(errs, &rr, false);
        }
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            let r = from.child(kind);
            if !r.is_set() {
                continue;
            }
            sources += 1;
            let name = r.child("name");
            let n = name.string(errs);
            for m in ferrokube_common::labels::is_dns1123_subdomain(n) {
                errs.push(FieldError::invalid(name.path.clone(), n, m));
            }
            let key = r.child("key");
            let k = key.string(errs);
            if k.is_empty() {
                errs.push(FieldError::required(key.path.clone(), ""));
            } else {
                for m in util::config_key_errors(k) {
                    errs.push(FieldError::invalid(key.path.clone(), k, m));
                }
            }
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                from.path.clone(),
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !value.is_empty() {
            errs.push(FieldError::invalid(
                from.path.clone(),
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                from.path.clone(),
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn env_from(errs: &mut Errs, list: &At) {
    for e in list.items(errs) {
        let prefix = e.child("prefix");
        if let Some(p) = prefix.str(errs).filter(|p| !p.is_empty()) {
            for m in env_name_errors(p) {
                errs.push(FieldError::invalid(prefix.path.clone(), p, m));
            }
        }
        let mut n = 0;
        for kind in ["configMapRef", "secretRef"] {
            let r = e.child(kind);
            if !r.is_set() {
                continue;
            }
            n += 1;
            let name = r.child("name");
            let v = name.string(errs);
            if v.is_empty() {
                errs.push(FieldError::required(name.path.clone(), ""));
            } else {
                // Upstream checks these names as prefixes, which allows a trailing dash.
                let trimmed = v.strip_suffix('-').filter(|s| !s.is_empty()).unwrap_or(v);
                for m in ferrokube_common::labels::is_dns1123_subdomain(trimmed) {
                    errs.push(FieldError::invalid(name.path.clone(), v, m));
                }
            }
        }
        if n == 0 {
            errs.push(FieldError::invalid(
                list.path.clone(),
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                list.path.clone(),
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn volume_mounts(
    errs: &mut Errs,
    mounts: &At,
    devices: &BTreeMap<String, String>,
    volumes: &BTreeMap<String, VolKind>,
    container: &At,
) {
    let mut points = HashSet::new();
    let privileged = container.at("securityContext.privileged").b() == Some(true);
    for m in mounts.items(errs) {
        if m.obj(errs).is_none() {
            continue;
        }
        let name_at = m.child("name");
        let name = name_at.string(errs);
        if name.is_empty() {
            errs.push(FieldError::required(name_at.path.clone(), ""));
        }
        if !volumes.contains_key(name) {
            errs.push(util::not_found(name_at.path.clone(), name));
        }
        let mp = m.child("mountPath");
        let path = mp.string(errs);
        if path.is_empty() {
            errs.push(FieldError::required(mp.path.clone(), ""));
        }
        if !points.insert(path) {
            errs.push(FieldError::invalid(mp.path.clone(), path, "must be unique"));
        }
        if devices.contains_key(name) {
            errs.push(FieldError::invalid(
                name_at.path.clone(),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices.values().any(|d| d == path) {
            errs.push(FieldError::invalid(
                mp.path.clone(),
                path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub = m.child("subPath").string(errs);
        let sub_expr = m.child("subPathExpr").string(errs);
        if volumes.get(name) == Some(&VolKind::Image) {
            if !sub.is_empty() {
                errs.push(FieldError::invalid(
                    m.child("subPath").path,
                    sub,
                    "not allowed in image volume sources",
                ));
            }
            if !sub_expr.is_empty() {
                errs.push(FieldError::invalid(
                    m.child("subPathExpr").path,
                    sub_expr,
                    "not allowed in image volume sources",
                ));
            }
        }
        // Upstream reports these two against the list's path, not the mount's.
        if !sub.is_empty() {
            local_descending_path(errs, &format!("{}.subPath", mounts.path), sub);
        }
        if !sub_expr.is_empty() {
            if !sub.is_empty() {
                errs.push(FieldError::invalid(
                    m.child("subPathExpr").path,
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(errs, &format!("{}.subPathExpr", mounts.path), sub_expr);
        }
        let prop = m.child("mountPropagation");
        let readonly = m.child("readOnly").bool(errs).unwrap_or(false);
        if let Some(p) = prop.str(errs) {
            let path = format!("{}.mountPropagation", mounts.path);
            const SUPPORTED: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !SUPPORTED.contains(&p) {
                errs.push(FieldError::not_supported(path.clone(), p, SUPPORTED));
            }
            if p == "Bidirectional" && !privileged {
                errs.push(FieldError::forbidden(
                    path,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        let rro = m.child("recursiveReadOnly");
        if let Some(r) = rro.str(errs) {
            let path = format!("{}.recursiveReadOnly", mounts.path);
            match r {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if !readonly {
                        errs.push(FieldError::forbidden(
                            path.clone(),
                            "may only be specified when readOnly is true",
                        ));
                    }
                    if prop.s().is_some_and(|p| p != "None") {
                        errs.push(FieldError::forbidden(
                            path,
                            "may only be specified when mountPropagation is None or not specified",
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    path,
                    other,
                    &["Disabled", "Enabled", "IfPossible"],
                )),
            }
        }
    }
}

fn volume_devices(
    errs: &mut Errs,
    devices: &At,
    mounts: &BTreeMap<String, String>,
    volumes: &BTreeMap<String, VolKind>,
) {
    let mut paths = HashSet::new();
    let mut names = HashSet::new();
    for d in devices.items(errs) {
        let name_at = d.child("name");
        let name = name_at.string(errs);
        let dp = d.child("devicePath");
        let path = dp.string(errs);
        if name.is_empty() {
            errs.push(FieldError::required(name_at.path.clone(), ""));
        }
        if names.contains(name) {
            errs.push(FieldError::invalid(
                name_at.path.clone(),
                name,
                "must be unique",
            ));
        }
        match volumes.get(name) {
            Some(VolKind::Claim) => {}
            Some(_) => errs.push(FieldError::invalid(
                name_at.path.clone(),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            None => errs.push(util::not_found(name_at.path.clone(), name)),
        }
        if path.is_empty() {
            errs.push(FieldError::required(dp.path.clone(), ""));
        }
        if paths.contains(path) {
            errs.push(FieldError::invalid(dp.path.clone(), path, "must be unique"));
        }
        if !path.is_empty() && path.replace('\\', "/").split('/').any(|p| p == "..") {
            errs.push(FieldError::invalid(
                dp.path.clone(),
                path,
                "can not contain backsteps ('..')",
            ));
        } else {
            paths.insert(path);
        }
        if mounts.contains_key(name) {
            errs.push(FieldError::invalid(
                name_at.path.clone(),
                name,
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.values().any(|m| m == path) {
            errs.push(FieldError::invalid(
                dp.path.clone(),
                path,
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !name.is_empty() {
            names.insert(name);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn probe(errs: &mut Errs, p: &At, grace: Option<i64>, kind: ProbeKind) {
    if !p.is_set() || p.obj(errs).is_none() {
        return;
    }
    handler(errs, p, grace, false);
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        util::nonnegative(errs, &p.child(f));
    }
    let tgp = p.child("terminationGracePeriodSeconds");
    if let Some(n) = tgp.int(errs) {
        if n <= 0 {
            errs.push(FieldError::invalid(
                tgp.path.clone(),
                n,
                "must be greater than 0",
            ));
        }
    }
    match kind {
        ProbeKind::Liveness | ProbeKind::Startup => {
            let st = p.child("successThreshold");
            let v = st.i().unwrap_or(0);
            if v != 1 {
                errs.push(FieldError::invalid(st.path, v, "must be 1"));
            }
        }
        ProbeKind::Readiness => {
            if tgp.is_set() {
                errs.push(FieldError::invalid(
                    tgp.path.clone(),
                    tgp.value(),
                    "must not be set for readinessProbes",
                ));
            }
        }
    }
}

fn lifecycle(errs: &mut Errs, lc: &At, grace: Option<i64>) {
    for hook in ["postStart", "preStop"] {
        let h = lc.child(hook);
        if h.is_set() {
            handler(errs, &h, grace, true);
        }
    }
}

fn handler(errs: &mut Errs, h: &At, grace: Option<i64>, lifecycle: bool) {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut n = 0;
    for k in kinds {
        let a = h.child(k);
        if !a.is_set() {
            continue;
        }
        if n > 0 {
            errs.push(FieldError::forbidden(
                a.path,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        n += 1;
        match *k {
            "exec" if a.child("command").len() == 0 => {
                errs.push(FieldError::required(a.child("command").path, ""));
            }
            "httpGet" => {
                let path = a.child("path");
                if path.string(errs).is_empty() {
                    errs.push(FieldError::required(path.path, ""));
                }
                util::port_num_or_name(errs, &a.child("port"));
                let scheme = a.child("scheme");
                let s = scheme.string(errs);
                if s != "HTTP" && s != "HTTPS" {
                    errs.push(FieldError::not_supported(
                        scheme.path,
                        s,
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in a.child("httpHeaders").items(errs) {
                    let name = header.child("name").string(errs);
                    let ok = !name.is_empty()
                        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
                    if !ok {
                        errs.push(FieldError::invalid(
                            a.child("httpHeaders").path,
                            name,
                            ferrokube_common::labels::regex_error(
                                "a valid HTTP header must consist of alphanumeric characters or '-'",
                                "[-A-Za-z0-9]+",
                                &["X-Header-Name"],
                            ),
                        ));
                    }
                }
            }
            "tcpSocket" => util::port_num_or_name(errs, &a.child("port")),
            "grpc" => {
                let port = a.child("port");
                let n = port.int(errs).unwrap_or(0);
                for m in util::port_num_errors(n) {
                    errs.push(FieldError::invalid(port.path.clone(), n, m));
                }
            }
            "sleep" => {
                let secs = a.child("seconds").int(errs).unwrap_or(0);
                if let Some(g) = grace {
                    if secs < 0 || secs > g {
                        errs.push(FieldError::invalid(
                            a.path,
                            secs,
                            format!("must be non-negative and less than terminationGracePeriodSeconds ({g})"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        errs.push(FieldError::required(
            h.path.clone(),
            "must specify a handler type",
        ));
    }
}

fn resize_policy(errs: &mut Errs, list: &At, restart: &str) {
    let mut seen = HashSet::new();
    for p in list.items(errs) {
        let res = p.child("resourceName").string(errs);
        if !seen.insert(res) {
            errs.push(FieldError::duplicate(p.path.clone(), res));
        }
        match res {
            "cpu" | "memory" => {}
            "" => errs.push(FieldError::required(list.path.clone(), "")),
            other => errs.push(FieldError::not_supported(
                list.path.clone(),
                other,
                &["cpu", "memory"],
            )),
        }
        let rp = p.child("restartPolicy").string(errs);
        match rp {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(FieldError::required(list.path.clone(), "")),
            other => errs.push(FieldError::not_supported(
                list.path.clone(),
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if restart == "Never" && rp != "NotRequired" {
            errs.push(FieldError::invalid(
                list.path.clone(),
                rp,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
}

// ---- resources ----

const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

pub(super) fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

pub(super) fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

pub(super) fn is_extended_resource(name: &str) -> bool {
    if is_native_resource(name) || name.starts_with("requests.") {
        return false;
    }
    ferrokube_common::labels::validate_qualified_name(&format!("requests.{name}")).is_empty()
}

pub(super) fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

pub(super) fn is_standard_resource(name: &str) -> bool {
    STANDARD_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// `validateResourceName`: qualified, and standard when not prefixed.
pub(super) fn resource_name(errs: &mut Errs, path: &str, name: &str) -> bool {
    let before = errs.len();
    util::qualified_name(errs, path, name);
    if errs.len() != before {
        return false;
    }
    if !name.contains('/') && !is_standard_resource(name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
        return false;
    }
    true
}

fn container_resource_name(errs: &mut Errs, path: &str, name: &str) {
    resource_name(errs, path, name);
    if !name.contains('/') {
        if !["cpu", "memory", "ephemeral-storage"].contains(&name) && !is_hugepages(name) {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

/// `ValidateResourceQuantityValue`: not negative, whole for countable resources.
pub(super) fn quantity_value(errs: &mut Errs, path: &str, name: &str, q: &Quantity) {
    if q.sign() < 0 {
        errs.push(FieldError::invalid(path, q.to_string(), util::NEGATIVE));
    }
    if (INTEGER_RESOURCES.contains(&name) || is_extended_resource(name))
        && q.milli_value() % 1000 != 0
    {
        errs.push(FieldError::invalid(
            path,
            q.to_string(),
            "must be an integer",
        ));
    }
}

/// Validates the entries of one resource list; returns the parsed quantities by name.
fn resource_list(errs: &mut Errs, list: &At) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    for (name, v) in list.entries(errs) {
        container_resource_name(errs, &v.path, name);
        if let Some(q) = util::quantity(errs, &v) {
            quantity_value(errs, &v.path, name, &q);
            if is_hugepages(name) {
                if let Some(size) = Quantity::parse(&name["hugepages-".len()..])
                    .ok()
                    .filter(|s| s.sign() > 0)
                {
                    let (v, s) = (q.value(), size.value());
                    if s == 0 || v % s != 0 || q.sign() <= 0 {
                        errs.push(FieldError::invalid(
                            list.key_path(name),
                            q.to_string(),
                            format!("{q} is not positive integer multiple of {name}"),
                        ));
                    }
                }
            }
            out.insert(name.to_string(), q);
        }
    }
    out
}

/// `ValidateContainerResourceRequirements`.
fn resources(errs: &mut Errs, res: &At, claims: &BTreeSet<String>) {
    let limits_at = res.child("limits");
    let requests_at = res.child("requests");
    let limits = resource_list(errs, &limits_at);
    let requests = resource_list(errs, &requests_at);
    for (name, req) in &requests {
        match limits.get(name) {
            Some(lim) => {
                if req != lim && !overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        requests_at.path.clone(),
                        req.to_string(),
                        format!("must be equal to {name} limit of {lim}"),
                    ));
                } else if req > lim {
                    errs.push(FieldError::invalid(
                        requests_at.path.clone(),
                        req.to_string(),
                        format!("must be less than or equal to {name} limit of {lim}"),
                    ));
                }
            }
            None => {
                if !overcommit_allowed(name) {
                    errs.push(FieldError::required(
                        limits_at.path.clone(),
                        "Limit must be set for non overcommitable resources",
                    ));
                }
            }
        }
    }
    let has = |m: &BTreeMap<String, Quantity>, f: &dyn Fn(&str) -> bool| m.keys().any(|k| f(k));
    let cpu_mem = |k: &str| k == "cpu" || k == "memory";
    if !has(&limits, &cpu_mem)
        && !has(&requests, &cpu_mem)
        && (has(&limits, &is_hugepages) || has(&requests, &is_hugepages))
    {
        errs.push(FieldError::forbidden(
            res.path.clone(),
            "HugePages require cpu or memory",
        ));
    }
    let claims_at = res.child("claims");
    let mut seen = HashSet::new();
    for c in claims_at.items(errs) {
        let name = c.child("name").string(errs);
        if name.is_empty() {
            errs.push(FieldError::required(c.path.clone(), ""));
            continue;
        }
        let request = c.child("request").string(errs);
        let key = if request.is_empty() {
            name.to_string()
        } else {
            util::dns_label(errs, &c.child("request").path, request);
            format!("{name}/{request}")
        };
        if !seen.insert(key.clone()) {
            errs.push(FieldError::duplicate(c.path.clone(), key));
        }
        if !claims.contains(name) {
            let mut e = util::not_found(c.path.clone(), name);
            e.detail = if claims.is_empty() {
                "must be one of the names in pod.spec.resourceClaims which is empty".into()
            } else {
                format!(
                    "must be one of the names in pod.spec.resourceClaims: {}",
                    claims.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            errs.push(e);
        }
    }
}

/// `ValidateResourceRequirements` for kinds outside pods (PVCs use their own rules).
pub(super) fn resource_requirements(errs: &mut Errs, res: &At) {
    resources(errs, res, &BTreeSet::new());
}

// ---- security ----

fn id_range(errs: &mut Errs, at: &At) {
    if let Some(n) = at.int(errs) {
        if !(0..=i32::MAX as i64).contains(&n) {
            errs.push(FieldError::invalid(
                at.path.clone(),
                n,
                util::inclusive_range(0, i32::MAX as i64),
            ));
        }
    }
}

fn seccomp_profile(errs: &mut Errs, sp: &At) {
    if !sp.is_set() {
        return;
    }
    let t = sp.child("type");
    let ty = t.string(errs);
    match ty {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(FieldError::required(
            t.path.clone(),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(FieldError::not_supported(
            t.path.clone(),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    let lp = sp.child("localhostProfile");
    if ty == "Localhost" {
        match lp.str(errs) {
            None => errs.push(FieldError::required(
                lp.path,
                "must be set when seccomp type is Localhost",
            )),
            Some(p) => local_descending_path(errs, &lp.path, p),
        }
    } else if lp.is_set() {
        errs.push(FieldError::invalid(
            lp.path,
            sp.value(),
            "can only be set when seccomp type is Localhost",
        ));
    }
}

fn apparmor_profile(errs: &mut Errs, ap: &At) {
    if !ap.is_set() {
        return;
    }
    let t = ap.child("type");
    let lp = ap.child("localhostProfile");
    match t.string(errs) {
        "Localhost" => match lp.str(errs) {
            None => errs.push(FieldError::required(
                lp.path,
                "must be set when AppArmor type is Localhost",
            )),
            Some(p) => {
                if p.trim() != p {
                    errs.push(FieldError::invalid(
                        lp.path.clone(),
                        p,
                        "must not be padded with whitespace",
                    ));
                } else if p.is_empty() {
                    errs.push(FieldError::required(
                        lp.path.clone(),
                        "must be set when AppArmor type is Localhost",
                    ));
                }
                if p.len() > 4095 {
                    errs.push(FieldError::too_long(lp.path, 4095));
                }
            }
        },
        "RuntimeDefault" | "Unconfined" => {
            if lp.is_set() {
                errs.push(FieldError::invalid(
                    lp.path.clone(),
                    lp.value(),
                    "can only be set when AppArmor type is Localhost",
                ));
            }
        }
        "" => errs.push(FieldError::required(
            t.path,
            "type is required when appArmorProfile is set",
        )),
        other => errs.push(FieldError::not_supported(
            t.path,
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
}

fn container_security_context(errs: &mut Errs, sc: &At, host_users: bool) {
    if !sc.is_set() || sc.obj(errs).is_none() {
        return;
    }
    let privileged = sc.child("privileged").bool(errs);
    id_range(errs, &sc.child("runAsUser"));
    id_range(errs, &sc.child("runAsGroup"));
    let pm = sc.child("procMount");
    if let Some(p) = pm.str(errs) {
        if p != "Default" && p != "Unmasked" {
            errs.push(FieldError::not_supported(
                pm.path.clone(),
                p,
                &["Default", "Unmasked"],
            ));
        }
        if host_users && p == "Unmasked" {
            errs.push(FieldError::invalid(
                pm.path.clone(),
                p,
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    seccomp_profile(errs, &sc.child("seccompProfile"));
    if sc.child("allowPrivilegeEscalation").bool(errs) == Some(false) {
        if privileged == Some(true) {
            errs.push(FieldError::invalid(
                sc.path.clone(),
                sc.value(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if sc
            .at("capabilities.add")
            .strings(errs)
            .contains(&"CAP_SYS_ADMIN")
        {
            errs.push(FieldError::invalid(
                sc.path.clone(),
                sc.value(),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
    apparmor_profile(errs, &sc.child("appArmorProfile"));
}

fn pod_security_context(errs: &mut Errs, spec: &At) {
    let sc = spec.child("securityContext");
    if !sc.is_set() || sc.obj(errs).is_none() {
        return;
    }
    id_range(errs, &sc.child("fsGroup"));
    id_range(errs, &sc.child("runAsUser"));
    id_range(errs, &sc.child("runAsGroup"));
    for g in sc.child("supplementalGroups").items(errs) {
        id_range(errs, &g);
    }
    let spn = spec.child("shareProcessNamespace");
    if spn.b() == Some(true) && spec.child("hostPID").b() == Some(true) {
        errs.push(FieldError::invalid(
            format!("{}.shareProcessNamespace", sc.path),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut names = HashSet::new();
    for s in sc.child("sysctls").items(errs) {
        let name = s.child("name");
        let n = name.string(errs);
        if n.is_empty() {
            errs.push(FieldError::required(name.path.clone(), ""));
        } else if !valid_sysctl(n) {
            errs.push(FieldError::invalid(
                name.path.clone(),
                n,
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if !names.insert(n) {
            errs.push(FieldError::duplicate(name.path.clone(), n));
        }
        let host_net = spec.child("hostNetwork").b() == Some(true);
        let host_ipc = spec.child("hostIPC").b() == Some(true);
        if host_net && (n.starts_with("net.") || n.starts_with("net/")) {
            errs.push(FieldError::invalid(
                name.path.clone(),
                n,
                "may not be specified when 'hostNetwork' is true",
            ));
        }
        if host_ipc
            && (n.starts_with("kernel.shm")
                || n.starts_with("kernel.msg")
                || n.starts_with("kernel.sem")
                || n.starts_with("fs.mqueue."))
        {
            errs.push(FieldError::invalid(
                name.path.clone(),
                n,
                "may not be specified when 'hostIPC' is true",
            ));
        }
    }
    let fscp = sc.child("fsGroupChangePolicy");
    if let Some(p) = fscp.str(errs) {
        if p != "OnRootMismatch" && p != "Always" {
            errs.push(FieldError::not_supported(
                fscp.path,
                p,
                &["Always", "OnRootMismatch"],
            ));
        }
    }
    seccomp_profile(errs, &sc.child("seccompProfile"));
    apparmor_profile(errs, &sc.child("appArmorProfile"));
    let sgp = sc.child("supplementalGroupsPolicy");
    if let Some(p) = sgp.str(errs) {
        if p != "Merge" && p != "Strict" {
            errs.push(FieldError::not_supported(sgp.path, p, &["Merge", "Strict"]));
        }
    }
    let selp = sc.child("seLinuxChangePolicy");
    if let Some(p) = selp.str(errs) {
        if p != "Recursive" && p != "MountOption" {
            errs.push(FieldError::not_supported(
                selp.path,
                p,
                &["MountOption", "Recursive"],
            ));
        }
    }
}

fn valid_sysctl(name: &str) -> bool {
    if name.len() > 253 {
        return false;
    }
    name.split(['.', '/']).all(|seg| {
        let b = seg.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
    })
}

fn host_users_deps(errs: &mut Errs, spec: &At) {
    if spec.at("securityContext.hostUsers").b() != Some(false) {
        return;
    }
    for (f, reported) in [
        ("hostNetwork", "hostNetwork"),
        ("hostPID", "HostPID"),
        ("hostIPC", "HostIPC"),
    ] {
        if spec.child(f).b() == Some(true) {
            errs.push(FieldError::forbidden(
                format!("{}.{reported}", spec.path),
                "when `pod.Spec.HostUsers` is false",
            ));
        }
    }
}

fn host_network_deps(errs: &mut Errs, spec: &At, opts: Opts) {
    if spec.child("hostNetwork").bool(errs) != Some(true) {
        return;
    }
    for c in spec.child("containers").items(&mut Vec::new()) {
        for p in c.child("ports").items(&mut Vec::new()) {
            let hp = p.child("hostPort").i().unwrap_or(0);
            let cp = p.child("containerPort").i().unwrap_or(0);
            if (opts.is_pod || hp != 0) && hp != cp {
                errs.push(FieldError::invalid(
                    p.child("hostPort").path,
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

// ---- scheduling ----

/// `ValidateTolerations`.
pub(super) fn tolerations(errs: &mut Errs, list: &At) {
    for t in list.items(errs) {
        if t.obj(errs).is_none() {
            continue;
        }
        let key = t.child("key").string(errs);
        if !key.is_empty() {
            util::qualified_name(errs, &t.child("key").path, key);
        }
        let op_at = t.child("operator");
        let op = op_at.string(errs);
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                op_at.path.clone(),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let effect = t.child("effect").string(errs);
        if t.child("tolerationSeconds").int(errs).is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                t.child("effect").path,
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = t.child("value").string(errs);
        match op {
            "Equal" | "" => {
                let msgs = ferrokube_common::labels::validate_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        op_at.path.clone(),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        op_at.path.clone(),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                op_at.path.clone(),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            taint_effect(errs, &t.child("effect").path, effect);
        }
    }
}

pub(super) fn taint_effect(errs: &mut Errs, path: &str, effect: &str) {
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        errs.push(FieldError::not_supported(
            path,
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ));
    }
}

fn affinity(errs: &mut Errs, aff: &At) {
    if !aff.is_set() || aff.obj(errs).is_none() {
        return;
    }
    let na = aff.child("nodeAffinity");
    if na.is_set() {
        let req = na.child("requiredDuringSchedulingIgnoredDuringExecution");
        if req.is_set() {
            node_selector(errs, &req, false);
        }
        for t in na
            .child("preferredDuringSchedulingIgnoredDuringExecution")
            .items(errs)
        {
            weight(errs, &t.child("weight"));
            node_selector_term(errs, &t.child("preference"), true);
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let pa = aff.child(kind);
        if !pa.is_set() {
            continue;
        }
        for t in pa
            .child("requiredDuringSchedulingIgnoredDuringExecution")
            .items(errs)
        {
            pod_affinity_term(errs, &t);
        }
        for t in pa
            .child("preferredDuringSchedulingIgnoredDuringExecution")
            .items(errs)
        {
            weight(errs, &t.child("weight"));
            pod_affinity_term(errs, &t.child("podAffinityTerm"));
        }
    }
}

fn weight(errs: &mut Errs, w: &At) {
    let n = w.int(errs).unwrap_or(0);
    if !(1..=100).contains(&n) {
        errs.push(FieldError::invalid(
            w.path.clone(),
            n,
            "must be in the range 1-100",
        ));
    }
}

/// `ValidateNodeSelector`.
pub(super) fn node_selector(errs: &mut Errs, sel: &At, allow_invalid_values: bool) {
    let terms = sel.child("nodeSelectorTerms");
    if terms.len() == 0 {
        errs.push(FieldError::required(
            terms.path,
            "must have at least one node selector term",
        ));
        return;
    }
    for t in terms.items(errs) {
        node_selector_term(errs, &t, allow_invalid_values);
    }
}

fn node_selector_term(errs: &mut Errs, term: &At, allow_invalid_values: bool) {
    for r in term.child("matchExpressions").items(errs) {
        let values = r.child("values");
        let n = values.len();
        let op = r.child("operator");
        match op.string(errs) {
            "In" | "NotIn" => {
                if n == 0 {
                    errs.push(FieldError::required(
                        values.path.clone(),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if n > 0 {
                    errs.push(FieldError::forbidden(
                        values.path.clone(),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            "Gt" | "Lt" => {
                if n != 1 {
                    errs.push(FieldError::required(
                        values.path.clone(),
                        "must be specified single value when `operator` is 'Lt' or 'Gt'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                op.path.clone(),
                other,
                "not a valid selector operator",
            )),
        }
        let key = r.child("key");
        {
            let s = key.string(errs);
            util::qualified_name(errs, &key.path, s)
        };
        for v in values.items(errs) {
            if let Some(s) = v.str(errs) {
                if !allow_invalid_values {
                    util::label_value(errs, &v.path, s);
                }
            }
        }
    }
    for r in term.child("matchFields").items(errs) {
        let values = r.child("values");
        let op = r.child("operator");
        match op.string(errs) {
            "In" | "NotIn" => {
                if values.len() != 1 {
                    errs.push(FieldError::required(
                        values.path.clone(),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                op.path.clone(),
                other,
                "not a valid selector operator",
            )),
        }
        let key = r.child("key");
        let k = key.string(errs);
        if k != "metadata.name" {
            errs.push(FieldError::invalid(
                key.path.clone(),
                k,
                "not a valid field selector key",
            ));
        } else {
            for v in values.items(errs) {
                {
                    let s = v.string(errs);
                    util::dns_subdomain(errs, &v.path, s)
                };
            }
        }
    }
}

fn pod_affinity_term(errs: &mut Errs, t: &At) {
    let sel = t.child("labelSelector");
    util::label_selector(errs, &sel, false);
    util::label_selector(errs, &t.child("namespaceSelector"), false);
    for ns in t.child("namespaces").items(errs) {
        for m in ferrokube_common::labels::is_dns1123_label(ns.string(errs)) {
            errs.push(FieldError::invalid(
                format!("{}.namespace", t.path),
                ns.value(),
                m,
            ));
        }
    }
    let match_keys = t.child("matchLabelKeys").strings(errs);
    let mismatch_keys = t.child("mismatchLabelKeys").strings(errs);
    for (field, keys) in [
        ("matchLabelKeys", &match_keys),
        ("mismatchLabelKeys", &mismatch_keys),
    ] {
        if keys.is_empty() {
            continue;
        }
        let path = format!("{}.{field}", t.path);
        if !sel.is_set() {
            errs.push(FieldError::forbidden(
                path,
                "must not be specified when labelSelector is not set",
            ));
            continue;
        }
        for (i, k) in keys.iter().enumerate() {
            util::qualified_name(errs, &format!("{path}[{i}]"), k);
        }
    }
    for (i, k) in match_keys.iter().enumerate() {
        if mismatch_keys.contains(k) {
            errs.push(FieldError::invalid(
                format!("{}.matchLabelKeys[{i}]", t.path),
                *k,
                "exists in both matchLabelKeys and mismatchLabelKeys",
            ));
        }
    }
    let tk = t.child("topologyKey");
    let key = tk.string(errs);
    if key.is_empty() {
        errs.push(FieldError::required(tk.path.clone(), "can not be empty"));
    }
    util::qualified_name(errs, &tk.path, key);
}

fn topology_spread(errs: &mut Errs, list: &At) {
    let items = list.items(errs);
    for (i, c) in items.iter().enumerate() {
        let skew = c.child("maxSkew");
        let s = skew.int(errs).unwrap_or(0);
        if s <= 0 {
            errs.push(FieldError::invalid(
                skew.path.clone(),
                s,
                "must be greater than zero",
            ));
        }
        let tk = c.child("topologyKey");
        let key = tk.string(errs);
        if key.is_empty() {
            errs.push(FieldError::required(tk.path.clone(), "can not be empty"));
        }
        let wu = c.child("whenUnsatisfiable");
        let when = wu.string(errs);
        if when != "DoNotSchedule" && when != "ScheduleAnyway" {
            errs.push(FieldError::not_supported(
                wu.path.clone(),
                when,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        let dup = items[i + 1..].iter().any(|o| {
            o.child("topologyKey").s().unwrap_or("") == key
                && o.child("whenUnsatisfiable").s().unwrap_or("") == when
        });
        if dup {
            errs.push(FieldError::duplicate(
                format!("{}.{{topologyKey, whenUnsatisfiable}}", c.path),
                format!("{{{key}, {when}}}"),
            ));
        }
        let md = c.child("minDomains");
        if let Some(n) = md.int(errs) {
            if n <= 0 {
                errs.push(FieldError::invalid(
                    md.path.clone(),
                    n,
                    "must be greater than zero",
                ));
            }
            if when != "DoNotSchedule" {
                errs.push(FieldError::invalid(
                    md.path.clone(),
                    n,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {when}"
                    ),
                ));
            }
        }
        for f in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            let p = c.child(f);
            if let Some(v) = p.str(errs) {
                if v != "Honor" && v != "Ignore" {
                    errs.push(FieldError::not_supported(p.path, v, &["Honor", "Ignore"]));
                }
            }
        }
        let sel = c.child("labelSelector");
        let mlk = c.child("matchLabelKeys");
        let keys = mlk.strings(errs);
        if !keys.is_empty() {
            if !sel.is_set() {
                errs.push(FieldError::forbidden(
                    mlk.path.clone(),
                    "must not be specified when labelSelector is not set",
                ));
            }
            let in_selector: HashSet<String> = sel
                .child("matchLabels")
                .str_map_quiet()
                .into_keys()
                .chain(
                    sel.child("matchExpressions")
                        .items(&mut Vec::new())
                        .iter()
                        .filter_map(|e| e.child("key").s().map(str::to_string)),
                )
                .collect();
            for (j, k) in keys.iter().enumerate() {
                let path = mlk.index_path(j);
                util::qualified_name(errs, &path, k);
                if in_selector.contains(*k) {
                    errs.push(FieldError::invalid(
                        path,
                        *k,
                        "exists in both matchLabelKeys and labelSelector",
                    ));
                }
            }
        }
        util::label_selector(errs, &sel, false);
    }
}

fn dns_config(errs: &mut Errs, spec: &At) {
    let cfg = spec.child("dnsConfig");
    let policy = spec.child("dnsPolicy").s().unwrap_or("");
    if policy == "None" {
        if !cfg.is_set() {
            errs.push(FieldError::required(
                cfg.path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        }
        if cfg.child("nameservers").len() == 0 {
            errs.push(FieldError::required(
                cfg.child("nameservers").path,
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    if !cfg.is_set() {
        return;
    }
    let ns = cfg.child("nameservers");
    let servers = ns.items(errs);
    if servers.len() > 3 {
        errs.push(FieldError::invalid(
            ns.path.clone(),
            ns.value(),
            "must not have more than 3 nameservers",
        ));
    }
    for s in &servers {
        {
            let v = s.string(errs);
            util::ip(errs, &s.path, v)
        };
    }
    let searches = cfg.child("searches");
    let list = searches.strings(errs);
    if list.len() > 32 {
        errs.push(FieldError::invalid(
            searches.path.clone(),
            searches.value(),
            "must not have more than 32 search paths",
        ));
    }
    if list.join(" ").len() > 2048 {
        errs.push(FieldError::invalid(
            searches.path.clone(),
            searches.value(),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in list.iter().enumerate() {
        if *s == "." {
            continue;
        }
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        if !valid_subdomain_with_underscore(trimmed) {
            let path = searches.index_path(i);
            if trimmed.len() > 253 {
                errs.push(FieldError::invalid(
                    path.clone(),
                    trimmed,
                    ferrokube_common::labels::max_len_error(253),
                ));
            }
            errs.push(FieldError::invalid(
                path,
                trimmed,
                ferrokube_common::labels::regex_error(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
                    "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*",
                    &["example.com"],
                ),
            ));
        }
    }
    for o in cfg.child("options").items(errs) {
        if o.child("name").string(errs).is_empty() {
            errs.push(FieldError::required(o.path.clone(), "must not be empty"));
        }
    }
}

fn valid_subdomain_with_underscore(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let l = label.strip_prefix('_').unwrap_or(label).as_bytes();
            !l.is_empty()
                && (l[0].is_ascii_lowercase() || l[0].is_ascii_digit())
                && (l[l.len() - 1].is_ascii_lowercase() || l[l.len() - 1].is_ascii_digit())
                && l.iter().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_'
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(spec: Value, is_pod: bool) -> Vec<String> {
        let mut s = spec;
        default_pod_spec(s.as_object_mut().unwrap(), is_pod);
        let mut errs = Vec::new();
        validate_pod_spec(&mut errs, &At::new(&s, "spec"), None, Opts { is_pod });
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/app:v1"), "IfNotPresent");
        assert_eq!(
            default_pull_policy(
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("Bad/Name"), "IfNotPresent");
        assert_eq!(default_pull_policy(""), "IfNotPresent");
    }

    #[test]
    fn template_defaults() {
        let mut t = json!({"spec": {"containers": [{
            "name": "c", "image": "img:1",
            "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"port": 80}},
            "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
        }], "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}});
        default_template(t.as_object_mut().unwrap());
        assert_eq!(t["metadata"], json!({"creationTimestamp": null}));
        let spec = &t["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert!(spec.get("enableServiceLinks").is_none());
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
    }

    #[test]
    fn valid_spec_has_no_errors() {
        let errs = errors_of(
            json!({"containers": [{"name": "c", "image": "img",
                "volumeMounts": [{"name": "v", "mountPath": "/data"}],
                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}],
                "volumes": [{"name": "v"}]}),
            true,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn container_errors_name_upstream_paths() {
        let errs = errors_of(
            json!({"containers": [
                {"name": "Bad_Name", "image": ""},
                {"name": "c", "image": "i", "ports": [{"containerPort": 70000, "protocol": "HTTP"}],
                 "volumeMounts": [{"name": "missing", "mountPath": "/x"}],
                 "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
                {"name": "c", "image": "i"}
            ], "restartPolicy": "Sometimes"}),
            true,
        );
        let expect = [
            "spec.containers[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            "spec.containers[0].image: Required value",
            "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[1].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[1].volumeMounts[0].name: Not found: \"missing\"",
            "spec.containers[1].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[2].name: Duplicate value: \"c\"",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ];
        for e in expect {
            assert!(errs.iter().any(|m| m == e), "missing {e}\nin {errs:#?}");
        }
    }

    #[test]
    fn no_containers_and_bad_volumes() {
        let errs = errors_of(
            json!({"containers": [], "volumes": [
                {"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}},
                {"name": "a", "configMap": {"name": "c", "defaultMode": 1000}}
            ]}),
            true,
        );
        assert!(
            errs.contains(&"spec.containers: Required value".to_string()),
            "{errs:?}"
        );
        assert!(errs.contains(
            &"spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"
                .to_string()
        ));
        assert!(errs.contains(&"spec.volumes[1].configMap.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive".to_string()));
    }

    #[test]
    fn odd_types_do_not_panic() {
        for spec in [
            json!({"containers": "x"}),
            json!({"containers": [5, null, {"name": 3, "image": []}]}),
            json!({"containers": [{"name": "c", "image": "i", "ports": {"a": 1}, "env": [1],
                   "resources": {"limits": {"cpu": "abc"}}, "livenessProbe": 4}],
                   "volumes": [{"name": "v", "secret": "s"}], "tolerations": [{"key": 1}],
                   "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []}}}),
        ] {
            let _ = errors_of(spec, true);
        }
    }
}
