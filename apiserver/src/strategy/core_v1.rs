//! The remaining core/v1 kinds: Namespaces, Nodes, Events, LimitRanges, ResourceQuotas,
//! PersistentVolumes and PersistentVolumeClaims.

use std::collections::{BTreeMap, HashSet};

use ferrokube_common::quantity::Quantity;
use serde_json::{json, Map, Value};

use super::podspec;
use super::util::{self, default_val, At, Errs};
use super::{NameRule, Strategy};
use crate::status::FieldError;

fn set_status(obj: &mut Value, status: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

// ---- Namespace ----

pub(super) struct Namespace;

impl Strategy for Namespace {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_status(obj, json!({ "phase": "Active" }));
        // Every namespace carries the `kubernetes` finalizer until its content is gone.
        let spec = obj
            .as_object_mut()
            .map(|o| o.entry("spec").or_insert_with(|| json!({})));
        if let Some(spec) = spec {
            if !spec.is_object() {
                *spec = json!({});
            }
            let finalizers = spec
                .as_object_mut()
                .map(|s| s.entry("finalizers").or_insert_with(|| json!([])));
            if let Some(Value::Array(list)) = finalizers {
                if !list.iter().any(|f| f == "kubernetes") {
                    list.push(json!("kubernetes"));
                }
            }
        }
    }

    fn defaults(&self, obj: &mut Value) {
        if !obj.is_object() {
            return;
        }
        // The name label is set by the server and cannot be changed.
        let name = crate::meta::name(obj).to_string();
        let meta = crate::meta::metadata_mut(obj);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = json!(name);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let fin = At::new(obj, "").at("spec.finalizers");
        for f in fin.items(&mut errs) {
            let name = f.string(&mut errs);
            // Upstream names the list, not the entry, for these.
            for m in ferrokube_common::labels::validate_qualified_name(name) {
                errs.push(FieldError::invalid(fin.path.clone(), name, m));
            }
            if !name.contains('/')
                && !matches!(name, "kubernetes" | "orphan" | "foregroundDeletion")
            {
                errs.push(FieldError::invalid(
                    fin.path.clone(),
                    name,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        errs
    }
}

// ---- Node ----

pub(super) struct Node;

impl Strategy for Node {
    fn resets_status_on_create(&self) -> bool {
        false
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.unschedulable").then(|| {
            crate::meta::path(obj, field)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()
        })
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
            return;
        };
        util::canonical_resource_list(status, "capacity");
        util::canonical_resource_list(status, "allocatable");
        if util::is_unset(status, "allocatable") {
            if let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned() {
                status.insert("allocatable".into(), cap);
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        let spec = root.child("spec");
        taints(&mut errs, &spec.child("taints"));
        node_resources(&mut errs, &root);
        let cidrs = spec.child("podCIDRs");
        let list = cidrs.strings(&mut errs);
        for (i, c) in list.iter().enumerate() {
            util::cidr(&mut errs, &cidrs.index_path(i), c);
        }
        if list.len() > 1 {
            let parsed: Vec<_> = list.iter().filter_map(|c| util::parse_cidr(c)).collect();
            let dual = parsed.len() == 2 && parsed[0].0.is_ipv4() != parsed[1].0.is_ipv4();
            if !dual || list.len() > 2 {
                errs.push(FieldError::invalid(
                    cidrs.path.clone(),
                    cidrs.value(),
                    "may specify no more than one CIDR for each IP family",
                ));
            }
            let mut seen = HashSet::new();
            for (i, c) in list.iter().enumerate() {
                if !seen.insert(*c) {
                    errs.push(FieldError::duplicate(cidrs.index_path(i), *c));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let (n, o) = (At::new(new, ""), At::new(old, ""));
        node_resources(&mut errs, &n);
        let mut seen = HashSet::new();
        let addrs = n.at("status.addresses");
        for a in addrs.items(&mut errs) {
            let key = a.value().to_string();
            if !seen.insert(key) {
                errs.push(FieldError::duplicate(a.path.clone(), a.value()));
            }
        }
        let old_cidrs = o.at("spec.podCIDRs").strings(&mut Vec::new());
        let new_cidrs = n.at("spec.podCIDRs").strings(&mut Vec::new());
        if !old_cidrs.is_empty() {
            let msg = "node updates may not change podCIDR except from \"\" to valid";
            if old_cidrs.len() != new_cidrs.len() {
                errs.push(FieldError::forbidden("spec.podCIDRs", msg));
            } else {
                for (a, b) in old_cidrs.iter().zip(&new_cidrs) {
                    if a != b {
                        errs.push(FieldError::forbidden("spec.podCIDRs", msg));
                    }
                }
            }
        }
        let old_provider = o.at("spec.providerID").s().unwrap_or("");
        if !old_provider.is_empty() && Some(old_provider) != n.at("spec.providerID").s() {
            errs.push(FieldError::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        taints(&mut errs, &n.at("spec.taints"));
        if n.at("spec.externalID").v != o.at("spec.externalID").v {
            errs.push(FieldError::forbidden(
                "spec.externalID",
                "may not be updated",
            ));
        }
        errs
    }
}

/// `validateNodeTaints`; upstream reports these under `metadata.taints`.
fn taints(errs: &mut Errs, list: &At) {
    let renamed = At {
        v: list.v,
        path: "metadata.taints".into(),
    };
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for t in renamed.items(errs) {
        let key = t.child("key");
        let k = key.string(errs);
        util::qualified_name(errs, &key.path, k);
        let value = t.child("value");
        let v = value.string(errs);
        let msgs = ferrokube_common::labels::validate_label_value(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(value.path.clone(), v, msgs.join(";")));
        }
        let effect = t.child("effect");
        let e = effect.string(errs);
        if e.is_empty() {
            errs.push(FieldError::required(effect.path.clone(), ""));
        } else {
            podspec::taint_effect(errs, &effect.path, e);
        }
        if !seen.insert((k.to_string(), e.to_string())) {
            let mut d = FieldError::duplicate(t.path.clone(), t.value());
            d.detail = "taints must be unique by key and effect pair".into();
            errs.push(d);
        }
    }
}

fn node_resources(errs: &mut Errs, root: &At) {
    for list in ["capacity", "allocatable"] {
        for (k, v) in root.at(&format!("status.{list}")).entries(errs) {
            let path = format!("status.{list}.{k}");
            let at = At {
                v: v.v,
                path: path.clone(),
            };
            if let Some(q) = util::quantity(errs, &at) {
                podspec::quantity_value(errs, &path, k, &q);
            }
        }
    }
}

// ---- Event ----

pub(super) struct Event;

/// Reads an Event in either shape: core/v1 names, or the events.k8s.io/v1 names the same
/// fields have there.
struct EventView<'a> {
    obj: &'a Value,
    events_api: bool,
}

impl<'a> EventView<'a> {
    fn get(&self, core: &str, events: &str) -> Option<&'a Value> {
        let name = if self.events_api { events } else { core };
        crate::meta::path(self.obj, name).filter(|v| !v.is_null())
    }
    fn str(&self, core: &str, events: &str) -> &'a str {
        self.get(core, events).and_then(Value::as_str).unwrap_or("")
    }
}

impl Strategy for Event {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let s = |p: &str| {
            crate::meta::path(obj, p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Some(match field {
            "source" => s("source.component"),
            other => s(other),
        })
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let events_api = obj.get("apiVersion").and_then(Value::as_str) == Some("events.k8s.io/v1");
        let e = EventView { obj, events_api };
        let mut errs = Vec::new();
        let ns = crate::meta::namespace(obj);
        let involved_ns = e.str("involvedObject.namespace", "regarding.namespace");
        let event_time = e.get("eventTime", "eventTime").is_some();
        let mismatch = || {
            FieldError::invalid(
                "involvedObject.namespace",
                involved_ns,
                "does not match event.namespace",
            )
        };
        if !event_time {
            if involved_ns.is_empty() {
                if !ns.is_empty() && ns != "default" {
                    errs.push(mismatch());
                }
            } else if ns != involved_ns {
                errs.push(mismatch());
            }
        } else {
            if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
                errs.push(mismatch());
            }
            let rc_field = if events_api {
                "reportingController"
            } else {
                "reportingComponent"
            };
            let rc = e.str("reportingComponent", "reportingController");
            if rc.is_empty() {
                errs.push(FieldError::required(rc_field, ""));
            }
            util::qualified_name(&mut errs, rc_field, rc);
            for (field, events_name, limit) in [
                ("reportingInstance", "reportingInstance", 128),
                ("action", "action", 128),
                ("reason", "reason", 128),
            ] {
                let v = e.str(field, events_name);
                if v.is_empty() {
                    errs.push(FieldError::required(field, ""));
                }
                if v.len() > limit {
                    errs.push(FieldError::invalid(
                        field,
                        "",
                        format!("can have at most {limit} characters"),
                    ));
                }
            }
            if e.str("message", "note").len() > 1024 {
                errs.push(FieldError::invalid(
                    "message",
                    "",
                    "can have at most 1024 characters",
                ));
            }
        }
        for m in ferrokube_common::labels::is_dns1123_subdomain(ns) {
            errs.push(FieldError::invalid("namespace", ns, m));
        }
        if events_api {
            if !event_time {
                errs.push(FieldError::required("eventTime", ""));
            }
            let ty = e.str("type", "type");
            if ty != "Normal" && ty != "Warning" {
                errs.push(FieldError::invalid(
                    "type",
                    "",
                    format!("has invalid value: {ty}"),
                ));
            }
            for (f, name) in [
                ("firstTimestamp", "deprecatedFirstTimestamp"),
                ("lastTimestamp", "deprecatedLastTimestamp"),
            ] {
                if e.get(f, name).is_some() {
                    errs.push(FieldError::invalid(f, "", "needs to be unset"));
                }
            }
            if e.get("count", "deprecatedCount")
                .and_then(util::as_integer)
                .unwrap_or(0)
                != 0
            {
                errs.push(FieldError::invalid("count", "", "needs to be unset"));
            }
            let src = e.get("source", "deprecatedSource");
            let set = |k: &str| {
                src.and_then(|s| s.get(k))
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty())
            };
            if set("component") || set("host") {
                errs.push(FieldError::invalid("source", "", "needs to be unset"));
            }
            if let Some(series) = e.get("series", "series") {
                if series.get("count").and_then(util::as_integer).unwrap_or(0) < 2 {
                    errs.push(FieldError::invalid(
                        "series.count",
                        "",
                        "should be at least 2",
                    ));
                }
                if series.get("lastObservedTime").is_none_or(Value::is_null) {
                    errs.push(FieldError::required("series.lastObservedTime", ""));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }
}

// ---- LimitRange ----

pub(super) struct LimitRange;

impl Strategy for LimitRange {
    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        util::each_obj_mut(spec, "limits", |item| {
            for list in [
                "max",
                "min",
                "default",
                "defaultRequest",
                "maxLimitRequestRatio",
            ] {
                util::canonical_resource_list(item, list);
            }
            if item.get("type").and_then(Value::as_str) != Some("Container") {
                return;
            }
            let get = |item: &Map<String, Value>, k: &str| {
                item.get(k)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            };
            let (max, min) = (get(item, "max"), get(item, "min"));
            let mut default = get(item, "default");
            for (k, v) in max {
                default.entry(k).or_insert(v);
            }
            let mut request = get(item, "defaultRequest");
            for (k, v) in default.clone().into_iter().chain(min) {
                request.entry(k).or_insert(v);
            }
            item.insert("default".into(), Value::Object(default));
            item.insert("defaultRequest".into(), Value::Object(request));
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let limits = At::new(obj, "").at("spec.limits");
        let mut types = HashSet::new();
        for item in limits.items(&mut errs) {
            let t = item.child("type");
            let ty = t.string(&mut errs).to_string();
            let before = errs.len();
            util::qualified_name(&mut errs, &t.path, &ty);
            if errs.len() == before
                && !ty.contains('/')
                && !["Pod", "Container", "PersistentVolumeClaim"].contains(&ty.as_str())
            {
                errs.push(FieldError::invalid(
                    t.path.clone(),
                    ty.as_str(),
                    "must be a standard limit type or fully qualified",
                ));
            }
            if !types.insert(ty.clone()) {
                errs.push(FieldError::duplicate(t.path.clone(), ty.as_str()));
            }
            let container_like = ty == "Pod" || ty == "Container";
            let read = |errs: &mut Errs, name: &str| -> BTreeMap<String, Quantity> {
                let list = item.child(name);
                let mut out = BTreeMap::new();
                for (k, v) in list.entries(errs) {
                    if container_like {
                        container_resource_name(errs, &v.path, k);
                    } else {
                        podspec::resource_name(errs, &v.path, k);
                    }
                    if let Some(q) = util::quantity(errs, &v) {
                        out.insert(k.to_string(), q);
                    }
                }
                out
            };
            let max = read(&mut errs, "max");
            let min = read(&mut errs, "min");
            let (default, default_request) = if ty == "Pod" {
                for f in ["default", "defaultRequest"] {
                    if item.child(f).len() > 0 {
                        errs.push(FieldError::forbidden(
                            item.child(f).path,
                            "may not be specified when `type` is 'Pod'",
                        ));
                    }
                }
                (BTreeMap::new(), BTreeMap::new())
            } else {
                (
                    read(&mut errs, "default"),
                    read(&mut errs, "defaultRequest"),
                )
            };
            if ty == "PersistentVolumeClaim"
                && !min.contains_key("storage")
                && !max.contains_key("storage")
            {
                errs.push(FieldError::required(
                    format!("{}.limits", item.path),
                    "either minimum or maximum storage value is required, but neither was provided",
                ));
            }
            let ratio = read(&mut errs, "maxLimitRequestRatio");
            let keys: std::collections::BTreeSet<&String> = max
                .keys()
                .chain(min.keys())
                .chain(default.keys())
                .chain(default_request.keys())
                .chain(ratio.keys())
                .collect();
            let p = |f: &str, k: &str| format!("{}.{f}[{k}]", item.path);
            for k in keys {
                let (mn, mx, d, dr, r) = (
                    min.get(k),
                    max.get(k),
                    default.get(k),
                    default_request.get(k),
                    ratio.get(k),
                );
                if let (Some(a), Some(b)) = (mn, mx) {
                    if a > b {
                        errs.push(FieldError::invalid(
                            p("min", k),
                            a.to_string(),
                            format!("min value {a} is greater than max value {b}"),
                        ));
                    }
                }
                if let (Some(q), Some(a)) = (dr, mn) {
                    if a > q {
                        errs.push(FieldError::invalid(
                            p("defaultRequest", k),
                            q.to_string(),
                            format!("min value {a} is greater than default request value {q}"),
                        ));
                    }
                }
                if let (Some(q), Some(b)) = (dr, mx) {
                    if q > b {
                        errs.push(FieldError::invalid(
                            p("defaultRequest", k),
                            q.to_string(),
                            format!("default request value {q} is greater than max value {b}"),
                        ));
                    }
                }
                if let (Some(q), Some(dv)) = (dr, d) {
                    if q > dv {
                        errs.push(FieldError::invalid(p("defaultRequest", k), q.to_string(), format!("default request value {q} is greater than default limit value {dv}")));
                    }
                }
                if let (Some(dv), Some(a)) = (d, mn) {
                    if a > dv {
                        errs.push(FieldError::invalid(
                            p("default", k),
                            a.to_string(),
                            format!("min value {a} is greater than default value {dv}"),
                        ));
                    }
                }
                if let (Some(dv), Some(b)) = (d, mx) {
                    if dv > b {
                        errs.push(FieldError::invalid(
                            p("default", k),
                            b.to_string(),
                            format!("default value {dv} is greater than max value {b}"),
                        ));
                    }
                }
                if let Some(r) = r {
                    if r.cmp_i64(1) == std::cmp::Ordering::Less {
                        errs.push(FieldError::invalid(
                            p("maxLimitRequestRatio", k),
                            r.to_string(),
                            format!("ratio {r} is less than 1"),
                        ));
                    }
                    if let (Some(a), Some(b)) = (mn, mx) {
                        let limit = b.as_f64() / a.as_f64();
                        if r.as_f64() > limit {
                            errs.push(FieldError::invalid(
                                p("maxLimitRequestRatio", k),
                                r.to_string(),
                                format!("ratio {r} is greater than max/min = {limit:.6}"),
                            ));
                        }
                    }
                }
                if !podspec::overcommit_allowed(k) {
                    if let (Some(dv), Some(q)) = (d, dr) {
                        if dv != q {
                            errs.push(FieldError::invalid(
                                p("defaultRequest", k),
                                q.to_string(),
                                format!("default value {dv} must equal to defaultRequest value {q} in {k}"),
                            ));
                        }
                    }
                }
            }
        }
        errs
    }
}

fn container_resource_name(errs: &mut Errs, path: &str, name: &str) {
    if podspec::resource_name(errs, path, name) && !name.contains('/') {
        if !["cpu", "memory", "ephemeral-storage"].contains(&name) && !podspec::is_hugepages(name) {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if name.contains('/')
        && !podspec::is_native_resource(name)
        && !podspec::is_extended_resource(name)
    {
        errs.push(FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

// ---- ResourceQuota ----

pub(super) struct ResourceQuota;

const QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

const POD_COMPUTE: &[&str] = &[
    "pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

fn quota_list(errs: &mut Errs, list: &At) -> Vec<String> {
    let mut names = Vec::new();
    for (k, v) in list.entries(errs) {
        let before = errs.len();
        podspec::resource_name(errs, &v.path, k);
        if errs.len() == before
            && !k.contains('/')
            && !QUOTA_RESOURCES.contains(&k)
            && !k.starts_with("hugepages-")
            && !k.starts_with("requests.hugepages-")
        {
            errs.push(FieldError::invalid(
                v.path.clone(),
                k,
                "must be a standard resource for quota",
            ));
        }
        if let Some(q) = util::quantity(errs, &v) {
            podspec::quantity_value(errs, &v.path, k, &q);
        }
        names.push(k.to_string());
    }
    names
}

fn scope_allows(scope: &str, resource: &str) -> bool {
    match scope {
        "BestEffort" | "CrossNamespacePodAffinity" => resource == "pods",
        "Terminating" | "NotTerminating" | "NotBestEffort" | "PriorityClass" => {
            POD_COMPUTE.contains(&resource)
                || resource.starts_with("hugepages-")
                || resource.starts_with("requests.hugepages-")
        }
        _ => true,
    }
}

const SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

impl Strategy for ResourceQuota {
    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if let Some(spec) = util::obj_mut(map, "spec") {
            util::canonical_resource_list(spec, "hard");
        }
        if let Some(status) = util::obj_mut(map, "status") {
            util::canonical_resource_list(status, "hard");
            util::canonical_resource_list(status, "used");
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_status(obj, json!({}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        let spec = root.child("spec");
        let hard = quota_list(&mut errs, &spec.child("hard"));
        let standard: Vec<&String> = hard
            .iter()
            .filter(|k| QUOTA_RESOURCES.contains(&k.as_str()) || k.starts_with("hugepages-"))
            .collect();
        let scopes_at = spec.child("scopes");
        let scopes = scopes_at.strings(&mut errs);
        for s in &scopes {
            if !SCOPES.contains(s) {
                errs.push(FieldError::invalid(
                    scopes_at.path.clone(),
                    scopes_at.value(),
                    "unsupported scope",
                ));
            }
            for k in &standard {
                if !scope_allows(s, k) {
                    errs.push(FieldError::invalid(
                        scopes_at.path.clone(),
                        scopes_at.value(),
                        "unsupported scope applied to resource",
                    ));
                }
            }
        }
        let conflicting = |set: &[&str]| {
            (set.contains(&"BestEffort") && set.contains(&"NotBestEffort"))
                || (set.contains(&"Terminating") && set.contains(&"NotTerminating"))
        };
        if conflicting(&scopes) {
            errs.push(FieldError::invalid(
                scopes_at.path.clone(),
                scopes_at.value(),
                "conflicting scopes",
            ));
        }
        let sel = spec.child("scopeSelector");
        if sel.is_set() {
            let exprs = sel.child("matchExpressions");
            let mut names = Vec::new();
            for e in exprs.items(&mut errs) {
                let sn = e.child("scopeName");
                let name = sn.string(&mut errs);
                if !SCOPES.contains(&name) {
                    errs.push(FieldError::invalid(
                        format!("{}.scopeName", exprs.path),
                        name,
                        "unsupported scope",
                    ));
                }
                for k in &standard {
                    if !scope_allows(name, k) {
                        errs.push(FieldError::invalid(
                            exprs.path.clone(),
                            sel.value(),
                            "unsupported scope applied to resource",
                        ));
                    }
                }
                let op = e.child("operator").string(&mut errs);
                if [
                    "BestEffort",
                    "NotBestEffort",
                    "Terminating",
                    "NotTerminating",
                    "CrossNamespacePodAffinity",
                ]
                .contains(&name)
                    && op != "Exists"
                {
                    errs.push(FieldError::invalid(
                        format!("{}.operator", exprs.path),
                        op,
                        "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
                    ));
                }
                let values = e.child("values");
                match op {
                    "In" | "NotIn" => {
                        if values.len() == 0 {
                            errs.push(FieldError::required(
                                format!("{}.values", exprs.path),
                                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                            ));
                        }
                    }
                    "Exists" | "DoesNotExist" => {
                        if values.len() != 0 {
                            errs.push(FieldError::invalid(
                                format!("{}.values", exprs.path),
                                values.value(),
                                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                            ));
                        }
                    }
                    other => errs.push(FieldError::invalid(
                        format!("{}.operator", exprs.path),
                        other,
                        "not a valid selector operator",
                    )),
                }
                names.push(name);
            }
            if conflicting(&names) {
                errs.push(FieldError::invalid(
                    exprs.path.clone(),
                    scopes_at.value(),
                    "conflicting scopes",
                ));
            }
        }
        quota_list(&mut errs, &root.at("status.hard"));
        quota_list(&mut errs, &root.at("status.used"));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let set = |v: &Value| -> std::collections::BTreeSet<String> {
            At::new(v, "")
                .at("spec.scopes")
                .strings(&mut Vec::new())
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        if set(new) != set(old) {
            errs.push(FieldError::invalid(
                "spec.scopes",
                At::new(new, "").at("spec.scopes").value(),
                util::IMMUTABLE,
            ));
        }
        errs
    }
}

// ---- PersistentVolume ----

pub(super) struct PersistentVolume;

const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn pv_source(spec: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = spec.as_object() {
        for k in PV_SOURCES {
            if let Some(v) = m.get(*k) {
                out.insert((*k).to_string(), v.clone());
            }
        }
    }
    Value::Object(out)
}

impl Strategy for PersistentVolume {
    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if let Some(spec) = util::ensure_obj(map, "spec") {
            util::default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
            default_val(spec, "volumeMode", json!("Filesystem"));
            util::canonical_resource_list(spec, "capacity");
        }
        if let Some(status) = util::ensure_obj(map, "status") {
            util::default_str(status, "phase", "Pending");
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_status(
            obj,
            json!({"phase": "Pending", "lastPhaseTransitionTime": crate::meta::now_rfc3339()}),
        );
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let modes = spec.child("accessModes");
        if modes.len() == 0 {
            errs.push(FieldError::required(modes.path.clone(), ""));
        }
        podspec::access_modes(&mut errs, &modes);
        let cap = spec.child("capacity");
        let entries = cap.entries(&mut errs);
        if entries.is_empty() {
            errs.push(FieldError::required(cap.path.clone(), ""));
        }
        if !entries.iter().any(|(k, _)| *k == "storage") || entries.len() > 1 {
            errs.push(FieldError::not_supported(
                cap.path.clone(),
                cap.value(),
                &["storage"],
            ));
        }
        for (_, v) in &entries {
            if let Some(q) = util::quantity(&mut errs, v) {
                if q.sign() <= 0 {
                    errs.push(FieldError::invalid(
                        v.path.clone(),
                        q.to_string(),
                        "must be greater than zero",
                    ));
                }
            }
        }
        let rp = spec.child("persistentVolumeReclaimPolicy");
        if let Some(p) = rp.str(&mut errs).filter(|p| !p.is_empty()) {
            if !["Delete", "Recycle", "Retain"].contains(&p) {
                errs.push(FieldError::not_supported(
                    rp.path.clone(),
                    p,
                    &["Delete", "Recycle", "Retain"],
                ));
            }
        }
        let na = spec.child("nodeAffinity");
        if na.is_set() {
            let req = na.child("required");
            if req.is_set() {
                podspec::node_selector(&mut errs, &req, false);
            } else {
                errs.push(FieldError::required(
                    req.path,
                    "must specify required node constraints",
                ));
            }
        }
        let mut count = 0;
        for k in PV_SOURCES {
            let src = spec.child(k);
            if !src.is_set() {
                continue;
            }
            if count > 0 && *k != "flexVolume" {
                errs.push(FieldError::forbidden(
                    src.path.clone(),
                    "may not specify more than 1 volume type",
                ));
                continue;
            }
            count += 1;
            let required: &[&str] = match *k {
                "hostPath" | "local" => &["path"],
                "nfs" => &["server", "path"],
                "glusterfs" => &["endpoints", "path"],
                "iscsi" => &["targetPortal", "iqn"],
                "rbd" => &["image"],
                "cinder" | "portworxVolume" | "awsElasticBlockStore" => &["volumeID"],
                "gcePersistentDisk" => &["pdName"],
                "csi" => &["driver", "volumeHandle"],
                "flexVolume" => &["driver"],
                "azureFile" => &["secretName", "shareName"],
                "azureDisk" => &["diskName", "diskURI"],
                "vsphereVolume" => &["volumePath"],
                "photonPersistentDisk" => &["pdID"],
                "scaleIO" => &["gateway", "system", "volumeName"],
                "storageos" => &["volumeName"],
                _ => &[],
            };
            for f in required {
                let a = src.child(f);
                if a.string(&mut errs).is_empty() {
                    errs.push(FieldError::required(a.path, ""));
                }
            }
            if *k == "local" && !na.is_set() {
                errs.push(FieldError::required(
                    na.path.clone(),
                    "Local volume requires node affinity",
                ));
            }
            if *k == "nfs" {
                let p = src.child("path");
                let v = p.s().unwrap_or("");
                if !v.starts_with('/') {
                    errs.push(FieldError::invalid(p.path, v, "must be an absolute path"));
                }
            }
        }
        if count == 0 {
            errs.push(FieldError::required(
                spec.path.clone(),
                "must specify a volume type",
            ));
        }
        let sc = spec.child("storageClassName");
        if let Some(v) = sc.str(&mut errs).filter(|s| !s.is_empty()) {
            util::dns_subdomain(&mut errs, &sc.path, v);
        }
        let vm = spec.child("volumeMode");
        if let Some(v) = vm.str(&mut errs) {
            if v != "Block" && v != "Filesystem" {
                errs.push(FieldError::not_supported(
                    vm.path,
                    v,
                    &["Block", "Filesystem"],
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let mut old_d = old.clone();
        self.defaults(&mut old_d);
        let old = &old_d;
        let empty = Value::Null;
        let (ns, os) = (
            new.get("spec").unwrap_or(&empty),
            old.get("spec").unwrap_or(&empty),
        );
        let mut new_src = pv_source(ns);
        let old_src = pv_source(os);
        // A CSI volume may gain a controller-expand secret after the fact.
        if old_src.pointer("/csi/controllerExpandSecretRef").is_none() {
            if let Some(csi) = new_src.get_mut("csi").and_then(Value::as_object_mut) {
                csi.remove("controllerExpandSecretRef");
            }
        }
        if new_src != old_src {
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        util::immutable(&mut errs, &volume_mode(ns), &volume_mode(os));
        if os.get("nodeAffinity").is_some_and(|v| !v.is_null())
            && ns.get("nodeAffinity") != os.get("nodeAffinity")
        {
            errs.push(FieldError::invalid(
                "nodeAffinity",
                ns.get("nodeAffinity").cloned().unwrap_or(Value::Null),
                "field is immutable, except for updating from beta label to GA",
            ));
        }
        errs
    }
}

/// Upstream checks `volumeMode` under a path without its `spec.` prefix.
fn volume_mode(spec: &Value) -> At<'_> {
    At {
        v: spec.get("volumeMode").filter(|v| !v.is_null()),
        path: "volumeMode".into(),
    }
}

// ---- PersistentVolumeClaim ----

pub(super) struct PersistentVolumeClaim;

impl Strategy for PersistentVolumeClaim {
    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if let Some(spec) = util::ensure_obj(map, "spec") {
            podspec::default_pvc_spec(spec);
        }
        if let Some(status) = util::ensure_obj(map, "status") {
            util::default_str(status, "phase", "Pending");
            util::canonical_resource_list(status, "capacity");
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_status(obj, json!({"phase": "Pending"}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        podspec::validate_pvc_spec(&mut errs, &At::new(obj, "").child("spec"));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let mut old_d = old.clone();
        self.defaults(&mut old_d);
        let old = &old_d;
        let mut ns = new.get("spec").cloned().unwrap_or(Value::Null);
        let mut os = old.get("spec").cloned().unwrap_or(Value::Null);
        // The volume name may be set once, by the binder.
        if os
            .get("volumeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            if let (Some(o), Some(v)) = (os.as_object_mut(), ns.get("volumeName").cloned()) {
                o.insert("volumeName".into(), v);
            }
        }
        // A claim that had no class may be given one.
        if os.get("storageClassName").is_none_or(Value::is_null)
            && ns.get("storageClassName").is_some_and(|v| !v.is_null())
        {
            let ann = crate::meta::annotations(old)
                .get("volume.beta.kubernetes.io/storage-class")
                .cloned();
            let wanted = ns
                .get("storageClassName")
                .and_then(Value::as_str)
                .map(str::to_string);
            if ann.is_none() || ann == wanted {
                if let (Some(o), Some(v)) =
                    (os.as_object_mut(), ns.get("storageClassName").cloned())
                {
                    o.insert("storageClassName".into(), v);
                }
            }
        }
        let bound = crate::meta::path(new, "status.phase").and_then(Value::as_str) == Some("Bound");
        if bound {
            let old_storage = os.pointer("/resources/requests/storage").cloned();
            if let Some(req) = ns
                .pointer_mut("/resources/requests")
                .and_then(Value::as_object_mut)
            {
                match old_storage {
                    Some(s) => req.insert("storage".into(), s),
                    None => req.remove("storage"),
                };
            }
            if let (Some(n), Some(o)) = (ns.as_object_mut(), os.as_object()) {
                if !util::is_unset(n, "volumeAttributesClassName") {
                    match o.get("volumeAttributesClassName") {
                        Some(v) => n.insert("volumeAttributesClassName".into(), v.clone()),
                        None => n.remove("volumeAttributesClassName"),
                    };
                }
            }
        }
        if ns != os {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let size = |v: &Value| {
            util::quantity_quiet(crate::meta::path(v, "spec.resources.requests.storage"))
        };
        if let (Some(n), Some(o)) = (size(new), size(old)) {
            if n < o {
                let status =
                    util::quantity_quiet(crate::meta::path(old, "status.capacity.storage"))
                        .unwrap_or_default();
                if n <= status {
                    errs.push(FieldError::forbidden(
                        "spec.resources.requests.storage",
                        "field can not be less than status.capacity",
                    ));
                }
            }
        }
        let (n, o) = (
            At::new(new, "").at("spec.volumeMode"),
            At::new(old, "").at("spec.volumeMode"),
        );
        util::immutable(
            &mut errs,
            &At {
                v: n.v,
                path: "volumeMode".into(),
            },
            &At {
                v: o.v,
                path: "volumeMode".into(),
            },
        );
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
    fn namespace_keeps_its_behaviour() {
        let mut ns = json!({"metadata": {"name": "a"}});
        Namespace.prepare_for_create(&mut ns);
        Namespace.defaults(&mut ns);
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "a");
        assert!(Namespace.validate(&ns).is_empty());
        let bad = json!({"spec": {"finalizers": ["custom"]}});
        assert_eq!(
            msgs(&Namespace.validate(&bad)),
            vec!["spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified".to_string()]
        );
    }

    #[test]
    fn node_rules() {
        let n = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "Bad"}]}});
        let errs = msgs(&Node.validate(&n));
        assert!(errs.contains(&"metadata.taints[1]: Duplicate value: {\"effect\":\"NoSchedule\",\"key\":\"a\"}: taints must be unique by key and effect pair".to_string()) || errs.iter().any(|e| e.starts_with("metadata.taints[1]: Duplicate value:")), "{errs:?}");
        assert!(errs.contains(&"metadata.taints[2].effect: Unsupported value: \"Bad\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".to_string()));
        let old = json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}});
        let new = json!({"spec": {"podCIDRs": ["10.0.1.0/24"]}});
        assert_eq!(
            msgs(&Node.validate_update(&new, &old)),
            vec!["spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid".to_string()]
        );
        let mut n = json!({"status": {"capacity": {"cpu": "4", "memory": "8Gi"}}});
        Node.defaults(&mut n);
        assert_eq!(
            n["status"]["allocatable"],
            json!({"cpu": "4", "memory": "8Gi"})
        );
    }

    #[test]
    fn event_namespace_must_match() {
        let e = json!({"apiVersion": "v1", "metadata": {"namespace": "ns1"}, "involvedObject": {"namespace": "ns2"}});
        assert_eq!(
            msgs(&Event.validate(&e)),
            vec![
                "involvedObject.namespace: Invalid value: \"ns2\": does not match event.namespace"
                    .to_string()
            ]
        );
        let ok = json!({"apiVersion": "v1", "metadata": {"namespace": "ns1"}, "involvedObject": {"namespace": "ns1"}});
        assert!(Event.validate(&ok).is_empty());
        let new_api = json!({"apiVersion": "events.k8s.io/v1", "metadata": {"namespace": "ns1"},
            "regarding": {"namespace": "ns1"}, "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "x.io/c", "reportingInstance": "i", "action": "A", "reason": "R", "type": "Normal"});
        assert!(
            Event.validate(&new_api).is_empty(),
            "{:?}",
            msgs(&Event.validate(&new_api))
        );
    }

    #[test]
    fn limit_range_defaults_and_rules() {
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}});
        LimitRange.defaults(&mut lr);
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "1Mi"})
        );
        assert!(
            LimitRange.validate(&lr).is_empty(),
            "{:?}",
            msgs(&LimitRange.validate(&lr))
        );
        let bad = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}}]}});
        assert!(msgs(&LimitRange.validate(&bad)).contains(&"spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1".to_string()));
    }

    #[test]
    fn quota_rules() {
        let q = json!({"spec": {"hard": {"pods": "1.5", "foo": "1", "requests.cpu": "-1"}, "scopes": ["BestEffort", "NotBestEffort"]}});
        let errs = msgs(&ResourceQuota.validate(&q));
        for e in [
            "spec.hard[pods]: Invalid value: \"1500m\": must be an integer",
            "spec.hard[foo]: Invalid value: \"foo\": must be a standard resource type or fully qualified",
            "spec.hard[requests.cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
            "spec.scopes: Invalid value: [\"BestEffort\",\"NotBestEffort\"]: conflicting scopes",
        ] {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
    }

    #[test]
    fn pv_and_pvc() {
        let mut pv = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}}});
        PersistentVolume.prepare_for_create(&mut pv);
        PersistentVolume.defaults(&mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["status"]["phase"], "Pending");
        assert!(
            PersistentVolume.validate(&pv).is_empty(),
            "{:?}",
            msgs(&PersistentVolume.validate(&pv))
        );
        let mut new = pv.clone();
        new["spec"]["hostPath"]["path"] = json!("/other");
        assert!(msgs(&PersistentVolume.validate_update(&new, &pv))
            .contains(&"spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation".to_string()));

        let mut pvc = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        PersistentVolumeClaim.prepare_for_create(&mut pvc);
        PersistentVolumeClaim.defaults(&mut pvc);
        assert_eq!(pvc["status"], json!({"phase": "Pending"}));
        assert!(PersistentVolumeClaim.validate(&pvc).is_empty());
        let mut bound = pvc.clone();
        bound["status"]["phase"] = json!("Bound");
        let mut grown = bound.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(PersistentVolumeClaim
            .validate_update(&grown, &bound)
            .is_empty());
        let mut changed = bound.clone();
        changed["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert!(
            msgs(&PersistentVolumeClaim.validate_update(&changed, &bound))[0].starts_with(
                "spec: Forbidden: spec is immutable after creation except resources.requests"
            )
        );
        let missing = json!({"spec": {}});
        let errs = msgs(&PersistentVolumeClaim.validate(&missing));
        assert!(errs.contains(
            &"spec.accessModes: Required value: at least 1 access mode is required".to_string()
        ));
        assert!(errs.contains(&"spec.resources[storage]: Required value".to_string()));
    }

    #[test]
    fn odd_core_objects_do_not_panic() {
        let strategies: [&dyn Strategy; 7] = [
            &Namespace,
            &Node,
            &Event,
            &LimitRange,
            &ResourceQuota,
            &PersistentVolume,
            &PersistentVolumeClaim,
        ];
        for s in strategies {
            for body in [
                json!({}),
                json!({"spec": 1, "status": 2}),
                json!({"spec": {"limits": [1], "hard": [], "taints": {}}}),
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
