//! Pods: defaults (with the `ServiceAccount` and `DefaultTolerationSeconds` admission
//! defaults folded in), the status a new pod starts with, and upstream's create, update and
//! status rules.

use std::collections::BTreeMap;

use ferrokube_common::quantity::Quantity;
use serde_json::{json, Map, Value};

use super::podspec::{self, Opts};
use super::util::{self, At, Errs};
use super::Strategy;
use crate::status::FieldError;

pub(super) struct Pod;

const MIRROR: &str = "kubernetes.io/config.mirror";

impl Strategy for Pod {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let s = |p: &str| {
            crate::meta::path(obj, p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let first_ip = || {
            crate::meta::path(obj, "status.podIPs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|ip| ip.get("ip"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(match field {
            "spec.hostNetwork" => crate::meta::path(obj, field)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            // Upstream indexes the first of `podIPs`, which kubelets keep equal to `podIP`.
            "status.podIP" => first_ip().unwrap_or_else(|| s("status.podIP")),
            "status.podIPs" => first_ip().unwrap_or_default(),
            other => s(other),
        })
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if let Some(spec) = util::ensure_obj(map, "spec") {
            podspec::default_pod_spec(spec, true);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        // Upstream decodes (and so defaults) before preparing; the QoS class needs defaults.
        self.defaults(obj);
        let mirror = crate::meta::annotations(obj).contains_key(MIRROR);
        let labels = crate::meta::labels(obj);
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if !mirror
            && spec
                .get("serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            spec.insert("serviceAccountName".into(), json!("default"));
            spec.insert("serviceAccount".into(), json!("default"));
        }
        default_tolerations(spec);
        apply_match_label_keys(spec, &labels);
        let gated = spec
            .get("schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
        let qos = qos_class(&Value::Object(spec.clone()));
        let mut status = json!({ "phase": "Pending", "qosClass": qos });
        if gated {
            status["conditions"] = json!([{
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": null,
                "lastTransitionTime": null,
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
            }]);
        }
        obj["status"] = status;
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        self.defaults(new);
        let changed = new.get("spec") != old.get("spec");
        if changed {
            if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                default_tolerations(spec);
            }
        }
        // Old kubelets drop the QoS class from status writes; it is fixed at creation.
        let new_qos = crate::meta::path(new, "status.qosClass")
            .and_then(Value::as_str)
            .unwrap_or("");
        if new_qos.is_empty() {
            if let Some(q) = crate::meta::path(old, "status.qosClass").cloned() {
                if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
                    status.insert("qosClass".into(), q);
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_pod(obj);
        let spec = At::new(obj, "").child("spec");
        if spec.child("ephemeralContainers").len() > 0 {
            errs.push(FieldError::forbidden(
                spec.child("ephemeralContainers").path,
                "cannot be set on create",
            ));
        }
        if !spec.child("nodeName").s().unwrap_or("").is_empty()
            && spec.child("schedulingGates").len() > 0
        {
            errs.push(FieldError::forbidden(
                spec.child("nodeName").path,
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut old = old.clone();
        self.defaults(&mut old);
        let mut errs = validate_pod(new);
        annotation_updates(&mut errs, new, &old);
        spec_update(&mut errs, new, &old);
        if new.get("status") != old.get("status") {
            status_update(&mut errs, new, &old);
        }
        errs
    }
}

/// `validatePodMetadataAndSpec`: what create and update both check.
fn validate_pod(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    let root = At::new(obj, "");
    let meta = root.child("metadata");
    let spec = root.child("spec");
    podspec::pod_annotations(&mut errs, &meta.child("annotations"), &spec);
    podspec::validate_pod_spec(&mut errs, &spec, Some(&meta), Opts { is_pod: true });
    if spec
        .child("serviceAccountName")
        .s()
        .unwrap_or("")
        .is_empty()
    {
        for v in spec.child("volumes").items(&mut Vec::new()) {
            for s in v.at("projected.sources").items(&mut Vec::new()) {
                if s.child("serviceAccountToken").is_set() {
                    errs.push(FieldError::forbidden(
                        s.child("serviceAccountToken").path,
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for list in ["containers", "initContainers"] {
        for c in spec.child(list).items(&mut Vec::new()) {
            podspec::image_whitespace(&mut errs, &c);
        }
    }
    errs
}

/// `DefaultTolerationSeconds`: tolerate a node being not-ready or unreachable for five
/// minutes, unless the pod already says otherwise.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let list = match spec.get("tolerations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return,
    };
    let tolerates = |taint: &str| {
        list.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut added = list.clone();
    for taint in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(taint) {
            added.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
    if added.len() != list.len() {
        spec.insert("tolerations".into(), Value::Array(added));
    }
}

/// `matchLabelKeys` / `mismatchLabelKeys` of pod (anti-)affinity terms become selector
/// requirements on the pod's own label values, as upstream's `mutatePodAffinity` does.
fn apply_match_label_keys(spec: &mut Map<String, Value>, labels: &BTreeMap<String, String>) {
    let Some(aff) = util::obj_mut(spec, "affinity") else {
        return;
    };
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = util::obj_mut(aff, kind) else {
            continue;
        };
        util::each_obj_mut(pa, "requiredDuringSchedulingIgnoredDuringExecution", |t| {
            add_label_key_requirements(t, labels)
        });
        util::each_obj_mut(pa, "preferredDuringSchedulingIgnoredDuringExecution", |w| {
            if let Some(t) = util::obj_mut(w, "podAffinityTerm") {
                add_label_key_requirements(t, labels);
            }
        });
    }
}

fn add_label_key_requirements(term: &mut Map<String, Value>, labels: &BTreeMap<String, String>) {
    let keys = |field: &str| -> Vec<String> {
        term.get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (matching, mismatching) = (keys("matchLabelKeys"), keys("mismatchLabelKeys"));
    if matching.is_empty() && mismatching.is_empty() {
        return;
    }
    let Some(selector) = util::ensure_obj(term, "labelSelector") else {
        return;
    };
    let mut reqs = Vec::new();
    for (list, op) in [(&matching, "In"), (&mismatching, "NotIn")] {
        for k in list {
            if let Some(v) = labels.get(k) {
                reqs.push(json!({ "key": k, "operator": op, "values": [v] }));
            }
        }
    }
    if reqs.is_empty() {
        return;
    }
    match selector.get_mut("matchExpressions") {
        Some(Value::Array(exprs)) => exprs.extend(reqs),
        _ => {
            selector.insert("matchExpressions".into(), Value::Array(reqs));
        }
    }
}

/// Upstream's `ComputePodQOS` over a pod spec.
pub(super) fn qos_class(spec: &Value) -> &'static str {
    let mut requests: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec.get(l).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let res = c.get("resources");
        let positive = |list: &str| -> Vec<(String, Quantity)> {
            res.and_then(|r| r.get(list))
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| *k == "cpu" || *k == "memory")
                        .filter_map(|(k, v)| Some((k.clone(), util::quantity_quiet(Some(v))?)))
                        .filter(|(_, q)| q.sign() > 0)
                        .collect()
                })
                .unwrap_or_default()
        };
        for (k, q) in positive("requests") {
            requests
                .entry(k)
                .and_modify(|t| t.add_assign_ref(&q))
                .or_insert(q);
        }
        let lims = positive("limits");
        let found = |name: &str| lims.iter().any(|(k, _)| k == name);
        if !(found("cpu") && found("memory")) {
            guaranteed = false;
        }
        for (k, q) in lims {
            limits
                .entry(k)
                .and_modify(|t| t.add_assign_ref(&q))
                .or_insert(q);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.iter().any(|(k, r)| limits.get(k) != Some(r)) {
        guaranteed = false;
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn annotation_updates(errs: &mut Errs, new: &Value, old: &Value) {
    let (n, o) = (crate::meta::annotations(new), crate::meta::annotations(old));
    const APPARMOR: &str = "container.apparmor.security.beta.kubernetes.io/";
    for (k, v) in &o {
        if n.get(k) == Some(v) {
            continue;
        }
        let path = format!("metadata.annotations[{k}]");
        if k.starts_with(APPARMOR) {
            errs.push(FieldError::forbidden(
                path.clone(),
                "may not remove or update AppArmor annotations",
            ));
        }
        if k == MIRROR {
            errs.push(FieldError::forbidden(
                path,
                "may not remove or update mirror pod annotation",
            ));
        }
    }
    for k in n.keys().filter(|k| !o.contains_key(*k)) {
        let path = format!("metadata.annotations[{k}]");
        if k.starts_with(APPARMOR) {
            errs.push(FieldError::forbidden(
                path.clone(),
                "may not add AppArmor annotations",
            ));
        }
        if k == MIRROR {
            errs.push(FieldError::forbidden(
                path,
                "may not add mirror pod annotation",
            ));
        }
    }
}

const UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`'s spec rules. The resize and ephemeral-container subresources reach
/// this same check, so changes confined to container resources (or additions of ephemeral
/// containers) are checked by their own rules instead of being refused outright.
fn spec_update(errs: &mut Errs, new: &Value, old: &Value) {
    let empty = Value::Object(Map::new());
    let new_spec = new.get("spec").unwrap_or(&empty);
    let old_spec = old.get("spec").unwrap_or(&empty);
    let (n, o) = (At::new(new_spec, "spec"), At::new(old_spec, "spec"));
    for list in ["containers", "initContainers"] {
        let (nl, ol) = (n.child(list), o.child(list));
        if nl.len() != ol.len() {
            errs.push(FieldError::forbidden(
                nl.path,
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for c in nl.items(&mut Vec::new()) {
            let img = c.child("image");
            if img.s().unwrap_or("").is_empty() {
                errs.push(FieldError::required(img.path.clone(), ""));
            }
        }
    }
    let ads = n.child("activeDeadlineSeconds");
    let old_ads = o.child("activeDeadlineSeconds").i();
    match ads.i() {
        Some(v) => {
            if !(0..=i32::MAX as i64).contains(&v) {
                errs.push(FieldError::invalid(
                    ads.path,
                    v,
                    util::inclusive_range(0, i32::MAX as i64),
                ));
                return;
            }
            if old_ads.is_some_and(|o| o < v) {
                errs.push(FieldError::invalid(
                    ads.path,
                    v,
                    "must be less than or equal to previous value",
                ));
                return;
            }
        }
        None => {
            if old_ads.is_some() {
                errs.push(FieldError::invalid(
                    ads.path,
                    Value::Null,
                    "must not update from a positive integer to nil value",
                ));
            }
        }
    }
    only_added_tolerations(errs, &n.child("tolerations"), &o.child("tolerations"));
    only_deleted_gates(
        errs,
        &n.child("schedulingGates"),
        &o.child("schedulingGates"),
    );
    if new_spec == old_spec {
        return;
    }

    let mut munged = new_spec.clone();
    let Some(m) = munged.as_object_mut() else {
        return;
    };
    for list in ["containers", "initContainers"] {
        let olds = old_spec
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
            for (c, oc) in cs.iter_mut().zip(&olds) {
                if let (Some(c), Some(image)) = (c.as_object_mut(), oc.get("image")) {
                    c.insert("image".into(), image.clone());
                }
            }
        }
    }
    for f in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
        restore(m, old_spec, f);
    }
    let old_grace = old_spec
        .get("terminationGracePeriodSeconds")
        .and_then(util::as_integer);
    let new_grace = m
        .get("terminationGracePeriodSeconds")
        .and_then(util::as_integer);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        restore(m, old_spec, "terminationGracePeriodSeconds");
    }
    if old_spec
        .get("schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        gated_updates(errs, m, old_spec);
    }
    if resize_changes(m, old_spec) {
        resize(errs, new, old);
        for list in ["containers", "initContainers"] {
            let olds = old_spec
                .get(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                for (c, oc) in cs.iter_mut().zip(&olds) {
                    if let Some(c) = c.as_object_mut() {
                        for f in ["resources", "resizePolicy"] {
                            match oc.get(f) {
                                Some(v) => c.insert(f.into(), v.clone()),
                                None => c.remove(f),
                            };
                        }
                    }
                }
            }
        }
    }
    if m.get("ephemeralContainers") != old_spec.get("ephemeralContainers") {
        ephemeral_update(errs, new_spec, old_spec);
        restore(m, old_spec, "ephemeralContainers");
    }
    if munged != *old_spec {
        let diff = util_diff(old_spec, &munged);
        errs.push(FieldError::forbidden(
            "spec",
            format!("pod updates may not change fields other than {UPDATABLE}\n{diff}"),
        ));
    }
}

fn restore(m: &mut Map<String, Value>, old_spec: &Value, field: &str) {
    match old_spec.get(field) {
        Some(v) => {
            m.insert(field.into(), v.clone());
        }
        None => {
            m.remove(field);
        }
    }
}

/// A readable account of what differs, one changed path per line.
fn util_diff(old: &Value, new: &Value) -> String {
    let mut lines = Vec::new();
    diff_into(&mut lines, "spec", old, new);
    lines.join("\n")
}

fn diff_into(out: &mut Vec<String>, path: &str, old: &Value, new: &Value) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                if x != y {
                    diff_into(out, &format!("{path}.{k}"), x, y);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if x != y {
                    diff_into(out, &format!("{path}[{i}]"), x, y);
                }
            }
        }
        _ => {
            out.push(format!("- {path}: {old}"));
            out.push(format!("+ {path}: {new}"));
        }
    }
}

/// `validateOnlyAddedTolerations`: existing tolerations stay, bar their `tolerationSeconds`.
fn only_added_tolerations(errs: &mut Errs, new: &At, old: &At) {
    let news = new.items(&mut Vec::new());
    let without_seconds = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        v
    };
    for o in old.items(&mut Vec::new()) {
        let want = without_seconds(&o.value());
        if !news.iter().any(|n| without_seconds(&n.value()) == want) {
            errs.push(FieldError::forbidden(
                new.path.clone(),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
}

fn only_deleted_gates(errs: &mut Errs, new: &At, old: &At) {
    let olds: Vec<&str> = old
        .items(&mut Vec::new())
        .iter()
        .filter_map(|g| g.child("name").s())
        .collect();
    for (i, g) in new.items(&mut Vec::new()).iter().enumerate() {
        let name = g.child("name").s().unwrap_or("");
        if !olds.contains(&name) {
            errs.push(FieldError::forbidden(
                format!("{}.name", new.index_path(i)),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
}

/// Gated pods may gain node selector entries and node affinity requirements before they are
/// scheduled; anything else stays refused.
fn gated_updates(errs: &mut Errs, m: &mut Map<String, Value>, old_spec: &Value) {
    let new_sel = m.get("nodeSelector").cloned().unwrap_or(Value::Null);
    let old_sel = old_spec.get("nodeSelector").cloned().unwrap_or(Value::Null);
    if new_sel != old_sel {
        let kept = old_sel
            .as_object()
            .map(|o| o.iter().all(|(k, v)| new_sel.get(k) == Some(v)))
            .unwrap_or(true);
        if !kept {
            errs.push(FieldError::invalid(
                "spec.nodeSelector",
                new_sel,
                "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
            ));
        }
        restore(m, old_spec, "nodeSelector");
    }
    let old_terms = old_spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_na = m
        .get("affinity")
        .and_then(|a| a.get("nodeAffinity"))
        .cloned();
    let old_na = old_spec
        .get("affinity")
        .and_then(|a| a.get("nodeAffinity"))
        .cloned();
    if new_na == old_na {
        return;
    }
    let new_terms = new_na
        .as_ref()
        .and_then(|na| {
            na.pointer("/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        })
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
    if !old_terms.is_empty() && old_terms.len() != new_terms.len() {
        errs.push(FieldError::invalid(
            path,
            Value::Array(new_terms),
            "no additions/deletions to non-empty NodeSelectorTerms list are allowed",
        ));
    } else {
        for (i, (o, n)) in old_terms.iter().zip(&new_terms).enumerate() {
            if !only_additions(o, n) {
                errs.push(FieldError::invalid(
                    format!("{path}[{i}]"),
                    n.clone(),
                    "only additions are allowed (no mutations or deletions)",
                ));
            }
        }
    }
    if let Some(aff) = m.get_mut("affinity").and_then(Value::as_object_mut) {
        match old_na {
            Some(v) => {
                aff.insert("nodeAffinity".into(), v);
            }
            None => {
                aff.remove("nodeAffinity");
            }
        }
        if aff.is_empty() && old_spec.get("affinity").is_none() {
            m.remove("affinity");
        }
    } else if let Some(v) = old_spec.get("affinity") {
        m.insert("affinity".into(), v.clone());
    }
}

fn only_additions(old: &Value, new: &Value) -> bool {
    let list = |v: &Value, f: &str| {
        v.get(f)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (oe, of) = (list(old, "matchExpressions"), list(old, "matchFields"));
    let (ne, nf) = (list(new, "matchExpressions"), list(new, "matchFields"));
    if oe.is_empty() && of.is_empty() && (!ne.is_empty() || !nf.is_empty()) {
        return false;
    }
    ne.len() >= oe.len()
        && ne[..oe.len()] == oe[..]
        && nf.len() >= of.len()
        && nf[..of.len()] == of[..]
}

/// Whether, bar container resources and resize policies, the munged spec equals the old one.
fn resize_changes(m: &Map<String, Value>, old_spec: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        for list in ["containers", "initContainers"] {
            if let Some(cs) = v.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("resources");
                    c.remove("resizePolicy");
                }
            }
        }
        v
    };
    let new = Value::Object(m.clone());
    new != *old_spec && strip(&new) == strip(old_spec)
}

/// `ValidatePodResize`'s rules on a change to container resources.
fn resize(errs: &mut Errs, new: &Value, old: &Value) {
    let new_qos = qos_class(new.get("spec").unwrap_or(&Value::Null));
    let old_qos = crate::meta::path(old, "status.qosClass")
        .and_then(Value::as_str)
        .unwrap_or_else(|| qos_class(old.get("spec").unwrap_or(&Value::Null)));
    if new_qos != old_qos {
        errs.push(FieldError::invalid(
            "spec",
            new_qos,
            "Pod QOS Class may not change as a result of resizing",
        ));
    }
    if crate::meta::annotations(old).contains_key(MIRROR) {
        errs.push(FieldError::forbidden("", "static pods cannot be resized"));
    }
    let empty = Vec::new();
    for (list, only_sidecars) in [("containers", false), ("initContainers", true)] {
        let olds = crate::meta::path(old, &format!("spec.{list}"))
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let news = crate::meta::path(new, &format!("spec.{list}"))
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        for (i, (o, n)) in olds.iter().zip(news).enumerate() {
            let sidecar = o.get("restartPolicy").and_then(Value::as_str) == Some("Always");
            if only_sidecars && !sidecar {
                if o.get("resources") != n.get("resources") {
                    errs.push(FieldError::forbidden(
                        "spec",
                        "resources for non-sidecar init containers are immutable",
                    ));
                }
                continue;
            }
            let path = format!("spec.{list}[{i}].resources");
            let keys = |v: &Value, l: &str| -> Vec<String> {
                v.get("resources")
                    .and_then(|r| r.get(l))
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default()
            };
            for l in ["requests", "limits"] {
                let nk = keys(n, l);
                if keys(o, l).iter().any(|k| !nk.contains(k)) {
                    errs.push(FieldError::forbidden(
                        format!("{path}.{l}"),
                        format!("resource {l} cannot be removed"),
                    ));
                }
            }
            let mem_policy = n
                .get("resizePolicy")
                .and_then(Value::as_array)
                .and_then(|ps| {
                    ps.iter()
                        .find(|p| p.get("resourceName").and_then(Value::as_str) == Some("memory"))
                })
                .and_then(|p| p.get("restartPolicy"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if mem_policy != "RestartContainer" {
                let lim = |v: &Value| util::quantity_quiet(v.pointer("/resources/limits/memory"));
                match (lim(n), lim(o)) {
                    (Some(nl), Some(ol)) if nl < ol => errs.push(FieldError::forbidden(
                        format!("{path}.limits[memory]"),
                        "memory limits cannot be decreased unless resizePolicy is RestartContainer",
                    )),
                    (Some(_), None) => errs.push(FieldError::forbidden(
                        format!("{path}.limits[memory]"),
                        "memory limits cannot be added unless resizePolicy is RestartContainer",
                    )),
                    _ => {}
                }
            }
            let non_cpu_mem_changed = ["requests", "limits"].iter().any(|l| {
                let pick = |v: &Value| -> BTreeMap<String, Value> {
                    v.get("resources")
                        .and_then(|r| r.get(*l))
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .filter(|(k, _)| *k != "cpu" && *k != "memory")
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                pick(n) != pick(o)
            });
            if non_cpu_mem_changed {
                let what = if only_sidecars {
                    "only cpu and memory resources for sidecar containers are mutable"
                } else {
                    "only cpu and memory resources are mutable"
                };
                errs.push(FieldError::forbidden("spec", what));
            }
        }
    }
}

/// `ValidatePodEphemeralContainersUpdate`: ephemeral containers are only ever added.
fn ephemeral_update(errs: &mut Errs, new_spec: &Value, old_spec: &Value) {
    let empty = Vec::new();
    let news = new_spec
        .get("ephemeralContainers")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let olds = old_spec
        .get("ephemeralContainers")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for o in olds {
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        match news
            .iter()
            .find(|n| n.get("name").and_then(Value::as_str) == Some(name))
        {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(n) if n != o => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!(
                    "existing ephemeral containers {name:?} may not be changed\n{}",
                    util_diff(o, n)
                ),
            )),
            _ => {}
        }
    }
}

/// `ValidatePodStatusUpdate`, for writes that change the status.
fn status_update(errs: &mut Errs, new: &Value, old: &Value) {
    let root = At::new(new, "");
    let status = root.child("status");
    let old_root = At::new(old, "");
    let qos = status.child("qosClass");
    let old_qos = old_root.at("status.qosClass");
    // Only ever empty on pods stored before the class was recorded at creation.
    if old_qos.s().is_some_and(|q| !q.is_empty()) {
        util::immutable(errs, &qos, &old_qos);
    }
    let nn = status.child("nominatedNodeName");
    if let Some(n) = nn.s().filter(|n| !n.is_empty()) {
        if nn.v != old_root.at("status.nominatedNodeName").v {
            util::dns_subdomain(errs, &nn.path, n);
        }
    }
    for c in status.child("conditions").items(errs) {
        let t = c.child("type").string(errs);
        if !["PodScheduled", "Ready", "Initialized"].contains(&t) {
            let path = c.path.replacen("status.", "metadata.", 1);
            util::qualified_name(errs, &format!("{path}.Type"), t);
        }
    }
    for list in ["podIPs", "hostIPs"] {
        let ips = status.child(list);
        let items = ips.items(errs);
        for i in &items {
            let ip = i.child("ip");
            let v = ip.string(errs);
            util::ip(errs, &i.path, v);
        }
        if items.len() > 1 {
            let parsed: Vec<_> = items
                .iter()
                .filter_map(|i| util::parse_ip_sloppy(i.child("ip").s()?))
                .collect();
            let dual = parsed.len() == 2 && parsed[0].is_ipv4() != parsed[1].is_ipv4();
            if !dual || items.len() > 2 {
                errs.push(FieldError::invalid(
                    ips.path.clone(),
                    ips.value(),
                    "may specify no more than one IP for each IP family",
                ));
            }
        }
    }
    let host_ips = status.child("hostIPs").items(&mut Vec::new());
    if let Some(first) = host_ips.first() {
        let f = first.child("ip").s().unwrap_or("");
        if status.child("hostIP").s().unwrap_or("") != f {
            errs.push(FieldError::invalid(
                format!("{}.ip", first.path),
                f,
                "must be equal to `hostIP`",
            ));
        }
    }
    let restart = old_root.at("spec.restartPolicy").s().unwrap_or("");
    state_transitions(
        errs,
        &status.child("containerStatuses"),
        &old_root.at("status.containerStatuses"),
        restart,
        None,
    );
    state_transitions(
        errs,
        &status.child("initContainerStatuses"),
        &old_root.at("status.initContainerStatuses"),
        restart,
        Some(&old_root.at("spec.initContainers")),
    );
    state_transitions(
        errs,
        &status.child("ephemeralContainerStatuses"),
        &old_root.at("status.ephemeralContainerStatuses"),
        "Never",
        None,
    );
}

/// Containers that finished for good (by the pod's restart policy) stay terminated.
fn state_transitions(errs: &mut Errs, new: &At, old: &At, restart: &str, init: Option<&At>) {
    if restart == "Always" {
        return;
    }
    let news = new.items(&mut Vec::new());
    for (i, o) in old.items(&mut Vec::new()).iter().enumerate() {
        let term = o.at("state.terminated");
        if !term.is_set() {
            continue;
        }
        if term.child("exitCode").i().unwrap_or(0) != 0 && restart == "OnFailure" {
            continue;
        }
        let name = o.child("name").s().unwrap_or("");
        if let Some(init) = init {
            let restartable = init.items(&mut Vec::new()).iter().any(|c| {
                c.child("name").s() == Some(name) && c.child("restartPolicy").s() == Some("Always")
            });
            if restartable {
                continue;
            }
        }
        for n in &news {
            if n.child("name").s() == Some(name) && !n.at("state.terminated").is_set() {
                errs.push(FieldError::forbidden(
                    format!("{}.state", new.index_path(i)),
                    "may not be transitioned to non-terminated state",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(pod: Value) -> Value {
        let mut p = pod;
        Pod.prepare_for_create(&mut p);
        Pod.defaults(&mut p);
        p
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn basic() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"},
               "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    }

    #[test]
    fn create_defaults_and_status() {
        let p = created(basic());
        let spec = &p["spec"];
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        assert!(
            Pod.validate(&p).is_empty(),
            "{:?}",
            messages(&Pod.validate(&p))
        );
    }

    #[test]
    fn existing_tolerations_are_kept() {
        let mut pod = basic();
        pod["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        let p = created(pod);
        assert_eq!(p["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }

    #[test]
    fn qos_classes() {
        let spec = |res: Value| json!({"containers": [{"name": "c", "resources": res}]});
        assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})
            )),
            "Burstable"
        );
        let mut pod = basic();
        pod["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": "1", "memory": "1Gi"}});
        let p = created(pod);
        assert_eq!(p["status"]["qosClass"], "Guaranteed");
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
    }

    #[test]
    fn scheduling_gates_add_condition() {
        let mut pod = basic();
        pod["spec"]["schedulingGates"] = json!([{"name": "example.com/gate"}]);
        let p = created(pod);
        assert_eq!(p["status"]["conditions"][0]["reason"], "SchedulingGated");
    }

    #[test]
    fn update_allows_image_and_refuses_other_changes() {
        let old = created(basic());
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        Pod.prepare_for_update(&mut new, &old);
        assert!(
            Pod.validate_update(&new, &old).is_empty(),
            "{:?}",
            messages(&Pod.validate_update(&new, &old))
        );

        let mut new = old.clone();
        new["spec"]["restartPolicy"] = json!("Never");
        Pod.prepare_for_update(&mut new, &old);
        let errs = Pod.validate_update(&new, &old);
        assert_eq!(errs.len(), 1, "{:?}", messages(&errs));
        assert_eq!(errs[0].field, "spec");
        assert!(errs[0].detail.starts_with(
            "pod updates may not change fields other than `spec.containers[*].image`"
        ));
        assert!(errs[0].detail.contains("spec.restartPolicy"));
    }

    #[test]
    fn update_rules_for_tolerations_deadlines_and_containers() {
        let old = created(basic());
        let mut new = old.clone();
        new["spec"]["tolerations"] = json!([]);
        let errs = messages(&Pod.validate_update(&new, &old));
        assert!(errs.contains(&"spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds".to_string()), "{errs:?}");

        let mut new = old.clone();
        new["spec"]["containers"] = json!([]);
        let errs = messages(&Pod.validate_update(&new, &old));
        assert!(errs.contains(
            &"spec.containers: Forbidden: pod updates may not add or remove containers".to_string()
        ));

        let mut with_deadline = old.clone();
        with_deadline["spec"]["activeDeadlineSeconds"] = json!(10);
        let mut new = with_deadline.clone();
        new["spec"]["activeDeadlineSeconds"] = json!(20);
        let errs = messages(&Pod.validate_update(&new, &with_deadline));
        assert!(errs.contains(&"spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value".to_string()));
    }

    #[test]
    fn resize_only_changes_pass() {
        let mut pod = basic();
        pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "100m"}});
        let old = created(pod);
        let mut new = old.clone();
        new["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("200m");
        let errs = Pod.validate_update(&new, &old);
        assert!(errs.is_empty(), "{:?}", messages(&errs));
    }

    #[test]
    fn status_writes_keep_qos() {
        let old = created(basic());
        let mut new = old.clone();
        new["status"] = json!({"phase": "Running", "qosClass": "Guaranteed"});
        let errs = messages(&Pod.validate_update(&new, &old));
        assert!(
            errs.contains(
                &"status.qosClass: Invalid value: \"Guaranteed\": field is immutable".to_string()
            ),
            "{errs:?}"
        );
        let mut new = old.clone();
        new["status"] = json!({"phase": "Running"});
        Pod.prepare_for_update(&mut new, &old);
        assert_eq!(new["status"]["qosClass"], "BestEffort");
        assert!(Pod.validate_update(&new, &old).is_empty());
    }

    #[test]
    fn create_only_rules() {
        let mut pod = basic();
        pod["spec"]["ephemeralContainers"] = json!([{"name": "e", "image": "busybox"}]);
        let p = created(pod);
        let errs = messages(&Pod.validate(&p));
        assert!(
            errs.contains(
                &"spec.ephemeralContainers: Forbidden: cannot be set on create".to_string()
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn field_values() {
        let p = json!({"spec": {"nodeName": "n1"}, "status": {"podIPs": [{"ip": "10.0.0.1"}]}});
        assert_eq!(
            Pod.field_value(&p, "status.podIP").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            Pod.field_value(&p, "spec.hostNetwork").as_deref(),
            Some("false")
        );
        assert_eq!(Pod.field_value(&p, "spec.nodeName").as_deref(), Some("n1"));
    }

    #[test]
    fn odd_pods_do_not_panic() {
        for body in [
            json!({}),
            json!({"spec": 5}),
            json!({"spec": {"containers": [1]}, "status": "x"}),
            json!([1]),
        ] {
            let mut p = body.clone();
            Pod.prepare_for_create(&mut p);
            Pod.defaults(&mut p);
            let _ = Pod.validate(&p);
            let mut n = body.clone();
            Pod.prepare_for_update(&mut n, &p);
            let _ = Pod.validate_update(&n, &p);
        }
    }
}
