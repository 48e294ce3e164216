//! The pod-template owners of `apps/v1` and core: Deployments, ReplicaSets, StatefulSets,
//! DaemonSets, ReplicationControllers, PodTemplates and ControllerRevisions.

use serde_json::{json, Map, Value};

use super::podspec::{self, Opts};
use super::util::{self, default_val, ensure_obj, At, Errs};
use super::{NameRule, Strategy};
use crate::status::FieldError;

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    util::ensure_obj(obj.as_object_mut()?, "spec")
}

fn default_spec_template(spec: &mut Map<String, Value>) {
    if let Some(t) = ensure_obj(spec, "template") {
        podspec::default_template(t);
    }
}

/// Status as a freshly created object of the kind serialises it: the non-`omitempty` counters.
fn reset_status(obj: &mut Value, zero_fields: &[&str]) {
    let mut status = Map::new();
    for f in zero_fields {
        status.insert((*f).to_string(), json!(0));
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), Value::Object(status));
    }
}

fn replicas_field_value(obj: &Value, field: &str) -> Option<String> {
    (field == "status.replicas").then(|| {
        crate::meta::path(obj, field)
            .and_then(util::as_integer)
            .unwrap_or(0)
            .to_string()
    })
}

/// The stored object with today's defaults, so objects written before a default existed
/// do not read as changed by every update.
fn defaulted(s: &dyn Strategy, old: &Value) -> Value {
    let mut o = old.clone();
    s.defaults(&mut o);
    o
}

// ---- shared validation ----

/// Selector rules of the `apps/v1` kinds: required, valid, not empty, matching the template.
fn selector_and_template(
    errs: &mut Errs,
    spec: &At,
    kind: &str,
    validate_pod: bool,
    replica_set_rules: &str,
) {
    let sel = spec.child("selector");
    if !sel.is_set() {
        errs.push(FieldError::required(sel.path.clone(), ""));
    } else {
        util::label_selector(errs, &sel, false);
        if util::selector_is_empty(&sel) {
            errs.push(FieldError::invalid(
                sel.path.clone(),
                sel.value(),
                format!("empty selector is invalid for {kind}"),
            ));
        }
    }
    let tmpl = spec.child("template");
    match util::selector_of(&sel) {
        None if sel.is_set() => errs.push(FieldError::invalid(
            sel.path.clone(),
            sel.value(),
            "invalid label selector",
        )),
        sel_parsed => {
            let labels_at = tmpl.at("metadata.labels");
            if let Some(s) = sel_parsed.filter(|s| !s.is_empty()) {
                if !s.matches(&labels_at.str_map_quiet()) {
                    errs.push(FieldError::invalid(
                        labels_at.path.clone(),
                        labels_at.value(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            if validate_pod {
                podspec::validate_template(errs, &tmpl, Opts::default());
            } else {
                util::labels(errs, &labels_at);
                let ann = tmpl.at("metadata.annotations");
                util::annotations(errs, &ann);
                podspec::pod_annotations(errs, &ann, &tmpl.child("spec"));
            }
            let rp = tmpl.at("spec.restartPolicy");
            let restart = rp.s().unwrap_or("");
            if restart != "Always" {
                errs.push(FieldError::not_supported(
                    rp.path.clone(),
                    restart,
                    &["Always"],
                ));
            }
            let ads = tmpl.at("spec.activeDeadlineSeconds");
            if ads.is_set() {
                errs.push(FieldError::forbidden(
                    ads.path,
                    format!("activeDeadlineSeconds in {replica_set_rules} is not Supported"),
                ));
            }
        }
    }
}

fn int_or_percent_value(v: &Value) -> i64 {
    match v {
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| s.parse().unwrap_or(0)),
        other => util::as_integer(other).unwrap_or(0),
    }
}

/// `ValidatePositiveIntOrPercent`.
fn positive_int_or_percent(errs: &mut Errs, at: &At) {
    match at.v {
        None => {}
        Some(Value::String(s)) => {
            for m in util::percent_errors(s) {
                errs.push(FieldError::invalid(at.path.clone(), s.as_str(), m));
            }
        }
        Some(v) => match util::as_integer(v) {
            Some(n) if n < 0 => errs.push(FieldError::invalid(at.path.clone(), n, util::NEGATIVE)),
            Some(_) => {}
            None => errs.push(FieldError::invalid(
                at.path.clone(),
                v.clone(),
                "must be an integer or percentage (e.g '5%%')",
            )),
        },
    }
}

fn not_more_than_100_percent(errs: &mut Errs, at: &At) {
    if let Some(Value::String(s)) = at.v {
        if util::percent_errors(s).is_empty()
            && int_or_percent_value(at.v.unwrap_or(&Value::Null)) > 100
        {
            errs.push(FieldError::invalid(
                at.path.clone(),
                s.as_str(),
                "must not be greater than 100%",
            ));
        }
    }
}

fn selector_immutable(errs: &mut Errs, new: &Value, old: &Value) {
    let (n, o) = (
        At::new(new, "").at("spec.selector"),
        At::new(old, "").at("spec.selector"),
    );
    util::immutable(errs, &n, &o);
}

// ---- Deployment ----

pub(super) struct Deployment;

impl Strategy for Deployment {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        default_val(spec, "replicas", json!(1));
        if let Some(strategy) = ensure_obj(spec, "strategy") {
            util::default_str(strategy, "type", "RollingUpdate");
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(ru) = ensure_obj(strategy, "rollingUpdate") {
                    default_val(ru, "maxUnavailable", json!("25%"));
                    default_val(ru, "maxSurge", json!("25%"));
                }
            }
        }
        default_val(spec, "revisionHistoryLimit", json!(10));
        default_val(spec, "progressDeadlineSeconds", json!(600));
        default_spec_template(spec);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, &[]);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Annotations are copied to the ReplicaSets, so changing them is a new generation too.
        if crate::meta::annotations(new) != crate::meta::annotations(old) {
            let g = crate::meta::metadata(old)
                .and_then(|m| m.get("generation"))
                .and_then(util::as_integer)
                .unwrap_or(0);
            crate::meta::metadata_mut(new).insert("generation".into(), json!(g + 1));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        if spec.obj(&mut errs).is_none() {
            errs.push(FieldError::required(spec.child("selector").path, ""));
            return errs;
        }
        util::nonnegative(&mut errs, &spec.child("replicas"));
        selector_and_template(&mut errs, &spec, "deployment", true, "ReplicaSet");
        let strategy = spec.child("strategy");
        match strategy.child("type").string(&mut errs) {
            "Recreate" => {
                if strategy.child("rollingUpdate").is_set() {
                    errs.push(FieldError::forbidden(
                        strategy.child("rollingUpdate").path,
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => {
                let ru = strategy.child("rollingUpdate");
                if !ru.is_set() {
                    errs.push(FieldError::required(
                        ru.path,
                        "this should be defaulted and never be nil",
                    ));
                } else {
                    let (mu, ms) = (ru.child("maxUnavailable"), ru.child("maxSurge"));
                    positive_int_or_percent(&mut errs, &mu);
                    positive_int_or_percent(&mut errs, &ms);
                    let zero = |a: &At| int_or_percent_value(a.v.unwrap_or(&Value::Null)) == 0;
                    if zero(&mu) && zero(&ms) {
                        errs.push(FieldError::invalid(
                            mu.path.clone(),
                            mu.value(),
                            "may not be 0 when `maxSurge` is 0",
                        ));
                    }
                    not_more_than_100_percent(&mut errs, &mu);
                }
            }
            _ => errs.push(FieldError::not_supported(
                strategy.path.clone(),
                strategy.value(),
                &["Recreate", "RollingUpdate"],
            )),
        }
        let mrs = spec.child("minReadySeconds");
        util::nonnegative(&mut errs, &mrs);
        util::nonnegative(&mut errs, &spec.child("revisionHistoryLimit"));
        let pds = spec.child("progressDeadlineSeconds");
        util::nonnegative(&mut errs, &pds);
        if let Some(p) = pds.i() {
            if p <= mrs.i().unwrap_or(0) {
                errs.push(FieldError::invalid(
                    pds.path,
                    p,
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        selector_immutable(&mut errs, new, &defaulted(self, old));
        errs
    }
}

// ---- ReplicaSet ----

pub(super) struct ReplicaSet;

impl Strategy for ReplicaSet {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        replicas_field_value(obj, field)
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        default_val(spec, "replicas", json!(1));
        default_spec_template(spec);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, &["replicas"]);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        util::nonnegative(&mut errs, &spec.child("replicas"));
        util::nonnegative(&mut errs, &spec.child("minReadySeconds"));
        selector_and_template(&mut errs, &spec, "deployment", true, "ReplicaSet");
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        selector_immutable(&mut errs, new, &defaulted(self, old));
        errs
    }
}

// ---- StatefulSet ----

pub(super) struct StatefulSet;

impl Strategy for StatefulSet {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        util::default_str(spec, "podManagementPolicy", "OrderedReady");
        if let Some(us) = ensure_obj(spec, "updateStrategy") {
            if us
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
                && !us
                    .get("type")
                    .is_some_and(|t| !t.is_string() && !t.is_null())
            {
                us.insert("type".into(), json!("RollingUpdate"));
                default_val(us, "rollingUpdate", json!({}));
            }
            if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(ru) = util::obj_mut(us, "rollingUpdate") {
                    default_val(ru, "partition", json!(0));
                }
            }
        }
        if let Some(p) = ensure_obj(spec, "persistentVolumeClaimRetentionPolicy") {
            util::default_str(p, "whenDeleted", "Retain");
            util::default_str(p, "whenScaled", "Retain");
        }
        default_val(spec, "replicas", json!(1));
        default_val(spec, "revisionHistoryLimit", json!(10));
        default_spec_template(spec);
        util::each_obj_mut(spec, "volumeClaimTemplates", |t| {
            if let Some(m) = ensure_obj(t, "metadata") {
                m.entry("creationTimestamp").or_insert(Value::Null);
            }
            if let Some(s) = ensure_obj(t, "spec") {
                podspec::default_pvc_spec(s);
            }
            if let Some(st) = ensure_obj(t, "status") {
                util::default_str(st, "phase", "Pending");
            }
        });
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, &["replicas", "availableReplicas"]);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let pmp = spec.child("podManagementPolicy");
        match pmp.string(&mut errs) {
            "" => errs.push(FieldError::required(pmp.path.clone(), "")),
            "OrderedReady" | "Parallel" => {}
            other => errs.push(FieldError::invalid(
                pmp.path.clone(),
                other,
                "must be 'OrderedReady' or 'Parallel'",
            )),
        }
        let us = spec.child("updateStrategy");
        let ru = us.child("rollingUpdate");
        match us.child("type").string(&mut errs) {
            "" => errs.push(FieldError::required(us.path.clone(), "")),
            "OnDelete" => {
                if ru.is_set() {
                    errs.push(FieldError::invalid(
                        ru.path.clone(),
                        ru.value(),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if ru.is_set() {
                    util::nonnegative(&mut errs, &ru.child("partition"));
                    let mu = ru.child("maxUnavailable");
                    if mu.is_set() {
                        positive_int_or_percent(&mut errs, &mu);
                        if int_or_percent_value(mu.v.unwrap_or(&Value::Null)) == 0 {
                            errs.push(FieldError::invalid(
                                mu.path.clone(),
                                mu.value(),
                                "cannot be 0",
                            ));
                        }
                        not_more_than_100_percent(&mut errs, &mu);
                    }
                }
            }
            _ => errs.push(FieldError::invalid(
                us.path.clone(),
                us.value(),
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }
        let retention = spec.child("persistentVolumeClaimRetentionPolicy");
        if retention.is_set() {
            for f in ["whenDeleted", "whenScaled"] {
                let p = retention.child(f);
                let v = p.string(&mut errs);
                if v != "Retain" && v != "Delete" {
                    errs.push(FieldError::not_supported(p.path, v, &["Retain", "Delete"]));
                }
            }
        }
        util::nonnegative(&mut errs, &spec.child("replicas"));
        util::nonnegative(&mut errs, &spec.child("minReadySeconds"));
        let ordinals = spec.child("ordinals");
        if ordinals.is_set() {
            let start = ordinals.child("start");
            let renamed = At {
                v: start.v,
                path: format!("{}.ordinals.start", spec.path),
            };
            util::nonnegative(&mut errs, &renamed);
        }
        let sel = spec.child("selector");
        if !sel.is_set() {
            errs.push(FieldError::required(sel.path.clone(), ""));
        } else {
            util::label_selector(&mut errs, &sel, false);
            if util::selector_is_empty(&sel) {
                errs.push(FieldError::invalid(
                    sel.path.clone(),
                    sel.value(),
                    "empty selector is invalid for statefulset",
                ));
            }
        }
        let tmpl = spec.child("template");
        match util::selector_of(&sel) {
            None if sel.is_set() => {
                errs.push(FieldError::invalid(sel.path.clone(), sel.value(), ""))
            }
            parsed => {
                let labels_at = tmpl.at("metadata.labels");
                if let Some(s) = parsed.filter(|s| !s.is_empty()) {
                    if !s.matches(&labels_at.str_map_quiet()) {
                        errs.push(FieldError::invalid(
                            labels_at.path.clone(),
                            labels_at.value(),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
                util::labels(&mut errs, &labels_at);
                let ann = tmpl.at("metadata.annotations");
                util::annotations(&mut errs, &ann);
                podspec::pod_annotations(&mut errs, &ann, &tmpl.child("spec"));
            }
        }
        let rp = tmpl.at("spec.restartPolicy");
        let restart = rp.s().unwrap_or("");
        if restart != "Always" {
            errs.push(FieldError::not_supported(rp.path, restart, &["Always"]));
        }
        let ads = tmpl.at("spec.activeDeadlineSeconds");
        if ads.is_set() {
            errs.push(FieldError::forbidden(
                ads.path,
                "activeDeadlineSeconds in StatefulSet is not Supported",
            ));
        }
        for t in spec.child("volumeClaimTemplates").items(&mut errs) {
            util::labels(&mut errs, &t.at("metadata.labels"));
            util::annotations(&mut errs, &t.at("metadata.annotations"));
            podspec::validate_pvc_spec(&mut errs, &t.child("spec"));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let old = defaulted(self, old);
        let strip = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(m) = spec.as_object_mut() {
                for f in [
                    "replicas",
                    "template",
                    "updateStrategy",
                    "minReadySeconds",
                    "ordinals",
                    "persistentVolumeClaimRetentionPolicy",
                ] {
                    m.remove(f);
                }
            }
            spec
        };
        if strip(new) != strip(&old) {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        errs
    }
}

// ---- DaemonSet ----

pub(super) struct DaemonSet;

/// apps/v1 carries the internal template generation in this annotation.
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn set_template_generation(obj: &mut Value, g: i64) {
    let meta = crate::meta::metadata_mut(obj);
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    ann[TEMPLATE_GENERATION] = json!(g.to_string());
}

impl Strategy for DaemonSet {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        if let Some(us) = ensure_obj(spec, "updateStrategy") {
            util::default_str(us, "type", "RollingUpdate");
            if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(ru) = ensure_obj(us, "rollingUpdate") {
                    default_val(ru, "maxUnavailable", json!(1));
                    default_val(ru, "maxSurge", json!(0));
                }
            }
        }
        default_val(spec, "revisionHistoryLimit", json!(10));
        default_spec_template(spec);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(
            obj,
            &[
                "currentNumberScheduled",
                "numberMisscheduled",
                "desiredNumberScheduled",
                "numberReady",
            ],
        );
        set_template_generation(obj, 1);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let old_gen: i64 = crate::meta::annotations(old)
            .get(TEMPLATE_GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        let mut new_d = new.clone();
        self.defaults(&mut new_d);
        let old_d = defaulted(self, old);
        let changed = crate::meta::path(&new_d, "spec.template")
            != crate::meta::path(&old_d, "spec.template");
        set_template_generation(new, if changed { old_gen + 1 } else { old_gen });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        let sel = spec.child("selector");
        util::label_selector(&mut errs, &sel, false);
        let tmpl = spec.child("template");
        let labels_at = tmpl.at("metadata.labels");
        match util::selector_of(&sel) {
            Some(s) if !s.matches(&labels_at.str_map_quiet()) => errs.push(FieldError::invalid(
                labels_at.path.clone(),
                labels_at.value(),
                "`selector` does not match template `labels`",
            )),
            _ => {}
        }
        if sel.is_set() && util::selector_is_empty(&sel) {
            errs.push(FieldError::invalid(
                sel.path.clone(),
                sel.value(),
                "empty selector is invalid for daemonset",
            ));
        }
        podspec::validate_template(&mut errs, &tmpl, Opts::default());
        let rp = tmpl.at("spec.restartPolicy");
        let restart = rp.s().unwrap_or("");
        if restart != "Always" {
            errs.push(FieldError::not_supported(rp.path, restart, &["Always"]));
        }
        let ads = tmpl.at("spec.activeDeadlineSeconds");
        if ads.is_set() {
            errs.push(FieldError::forbidden(
                ads.path,
                "activeDeadlineSeconds in DaemonSet is not Supported",
            ));
        }
        util::nonnegative(&mut errs, &spec.child("minReadySeconds"));
        let us = spec.child("updateStrategy");
        match us.child("type").string(&mut errs) {
            "OnDelete" => {}
            "RollingUpdate" => {
                let ru = us.child("rollingUpdate");
                if !ru.is_set() {
                    errs.push(FieldError::required(ru.path, ""));
                } else {
                    let (mu, ms) = (ru.child("maxUnavailable"), ru.child("maxSurge"));
                    positive_int_or_percent(&mut errs, &mu);
                    positive_int_or_percent(&mut errs, &ms);
                    not_more_than_100_percent(&mut errs, &mu);
                    not_more_than_100_percent(&mut errs, &ms);
                    let has = |a: &At| int_or_percent_value(a.v.unwrap_or(&Value::Null)) != 0;
                    match (has(&mu), has(&ms)) {
                        (true, true) => errs.push(FieldError::invalid(
                            ms.path.clone(),
                            ms.value(),
                            "may not be set when maxUnavailable is non-zero",
                        )),
                        (false, false) => errs.push(FieldError::required(
                            mu.path.clone(),
                            "cannot be 0 when maxSurge is 0",
                        )),
                        _ => {}
                    }
                }
            }
            _ => errs.push(FieldError::not_supported(
                us.path.clone(),
                us.value(),
                &["RollingUpdate", "OnDelete"],
            )),
        }
        util::nonnegative(&mut errs, &spec.child("revisionHistoryLimit"));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        selector_immutable(&mut errs, new, &defaulted(self, old));
        errs
    }
}

// ---- ReplicationController ----

pub(super) struct ReplicationController;

impl Strategy for ReplicationController {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        replicas_field_value(obj, field)
    }

    fn defaults(&self, obj: &mut Value) {
        let template_labels = crate::meta::path(obj, "spec.template.metadata.labels")
            .filter(|l| l.is_object())
            .cloned();
        if let Some(labels) = template_labels {
            if let Some(spec) = spec_mut(obj) {
                let empty = spec
                    .get("selector")
                    .is_none_or(|s| s.as_object().is_some_and(Map::is_empty) || s.is_null());
                if empty {
                    spec.insert("selector".into(), labels.clone());
                }
            }
            let has_labels = crate::meta::metadata(obj)
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .is_some_and(|l| !l.is_empty());
            if !has_labels {
                crate::meta::metadata_mut(obj).insert("labels".into(), labels);
            }
        }
        let Some(spec) = spec_mut(obj) else { return };
        default_val(spec, "replicas", json!(1));
        if let Some(t) = util::obj_mut(spec, "template") {
            podspec::default_template(t);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, &["replicas"]);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = At::new(obj, "").child("spec");
        util::nonnegative(&mut errs, &spec.child("minReadySeconds"));
        let sel = spec.child("selector");
        let selector = sel.str_map(&mut errs);
        if selector.is_empty() {
            errs.push(FieldError::required(sel.path.clone(), ""));
        }
        util::nonnegative(&mut errs, &spec.child("replicas"));
        let tmpl = spec.child("template");
        if !tmpl.is_set() {
            errs.push(FieldError::required(tmpl.path, ""));
            return errs;
        }
        let labels_at = tmpl.at("metadata.labels");
        let labels = labels_at.str_map_quiet();
        if !selector.is_empty() && !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            errs.push(FieldError::invalid(
                labels_at.path.clone(),
                labels_at.value(),
                "`selector` does not match template `labels`",
            ));
        }
        podspec::validate_template(&mut errs, &tmpl, Opts::default());
        let rp = tmpl.at("spec.restartPolicy");
        let restart = rp.s().unwrap_or("");
        if restart != "Always" {
            errs.push(FieldError::not_supported(rp.path, restart, &["Always"]));
        }
        let ads = tmpl.at("spec.activeDeadlineSeconds");
        if ads.is_set() {
            errs.push(FieldError::forbidden(
                ads.path,
                "activeDeadlineSeconds in ReplicationController is not Supported",
            ));
        }
        errs
    }
}

// ---- PodTemplate ----

pub(super) struct PodTemplate;

impl Strategy for PodTemplate {
    fn defaults(&self, obj: &mut Value) {
        if let Some(t) = obj.as_object_mut().and_then(|m| ensure_obj(m, "template")) {
            podspec::default_template(t);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        podspec::validate_template(
            &mut errs,
            &At::new(obj, "").child("template"),
            Opts::default(),
        );
        errs
    }
}

// ---- ControllerRevision ----

pub(super) struct ControllerRevision;

impl Strategy for ControllerRevision {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        if !root.child("data").is_set() {
            errs.push(FieldError::required("data", "data is mandatory"));
        }
        util::nonnegative(&mut errs, &root.child("revision"));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        util::immutable(
            &mut errs,
            &At::new(new, "").child("data"),
            &At::new(old, "").child("data"),
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

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}})
    }

    #[test]
    fn deployment_defaults() {
        let mut d = deployment();
        Deployment.prepare_for_create(&mut d);
        Deployment.defaults(&mut d);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            spec["template"]["metadata"]["creationTimestamp"],
            Value::Null
        );
        assert_eq!(d["status"], json!({}));
        assert!(
            Deployment.validate(&d).is_empty(),
            "{:?}",
            msgs(&Deployment.validate(&d))
        );
    }

    #[test]
    fn deployment_selector_rules() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        d["spec"]["replicas"] = json!(-1);
        Deployment.defaults(&mut d);
        let errs = msgs(&Deployment.validate(&d));
        assert!(errs.contains(&"spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`".to_string()), "{errs:?}");
        assert!(errs.contains(
            &"spec.replicas: Invalid value: -1: must be greater than or equal to 0".to_string()
        ));

        let mut d = deployment();
        d["spec"].as_object_mut().unwrap().remove("selector");
        Deployment.defaults(&mut d);
        assert!(
            msgs(&Deployment.validate(&d)).contains(&"spec.selector: Required value".to_string())
        );

        let mut d = deployment();
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        Deployment.defaults(&mut d);
        assert!(msgs(&Deployment.validate(&d))
            .contains(&"spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".to_string()));
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let mut old = deployment();
        Deployment.defaults(&mut old);
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "x": "y"}});
        new["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let errs = msgs(&Deployment.validate_update(&new, &old));
        assert_eq!(errs, vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"x\":\"y\"}}: field is immutable".to_string()]);
    }

    #[test]
    fn annotation_changes_bump_generation() {
        let mut old = deployment();
        old["metadata"]["generation"] = json!(3);
        let mut new = old.clone();
        new["metadata"]["annotations"] = json!({"a": "b"});
        Deployment.prepare_for_update(&mut new, &old);
        assert_eq!(new["metadata"]["generation"], 4);
    }

    #[test]
    fn statefulset_defaults_and_update_rules() {
        let mut s = deployment();
        s["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
        StatefulSet.prepare_for_create(&mut s);
        StatefulSet.defaults(&mut s);
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            s["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            s["spec"]["volumeClaimTemplates"][0]["status"],
            json!({"phase": "Pending"})
        );
        assert_eq!(s["status"], json!({"replicas": 0, "availableReplicas": 0}));
        assert!(
            StatefulSet.validate(&s).is_empty(),
            "{:?}",
            msgs(&StatefulSet.validate(&s))
        );
        let mut new = s.clone();
        new["spec"]["replicas"] = json!(5);
        assert!(StatefulSet.validate_update(&new, &s).is_empty());
        new["spec"]["serviceName"] = json!("other");
        let errs = msgs(&StatefulSet.validate_update(&new, &s));
        assert_eq!(errs.len(), 1);
        assert!(errs[0]
            .starts_with("spec: Forbidden: updates to statefulset spec for fields other than"));
    }

    #[test]
    fn daemonset_defaults_and_template_generation() {
        let mut ds = deployment();
        DaemonSet.prepare_for_create(&mut ds);
        DaemonSet.defaults(&mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["metadata"]["annotations"][TEMPLATE_GENERATION], "1");
        assert!(
            DaemonSet.validate(&ds).is_empty(),
            "{:?}",
            msgs(&DaemonSet.validate(&ds))
        );
        let mut new = ds.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        DaemonSet.prepare_for_update(&mut new, &ds);
        assert_eq!(new["metadata"]["annotations"][TEMPLATE_GENERATION], "2");
        let mut same = ds.clone();
        same["metadata"]["annotations"][TEMPLATE_GENERATION] = json!("9");
        DaemonSet.prepare_for_update(&mut same, &ds);
        assert_eq!(same["metadata"]["annotations"][TEMPLATE_GENERATION], "1");
    }

    #[test]
    fn replication_controller_defaults_selector_from_template() {
        let mut rc = json!({"metadata": {"name": "rc"},
            "spec": {"template": {"metadata": {"labels": {"app": "a"}},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        ReplicationController.defaults(&mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert!(
            ReplicationController.validate(&rc).is_empty(),
            "{:?}",
            msgs(&ReplicationController.validate(&rc))
        );
    }

    #[test]
    fn odd_workloads_do_not_panic() {
        let strategies: [&dyn Strategy; 6] = [
            &Deployment,
            &ReplicaSet,
            &StatefulSet,
            &DaemonSet,
            &ReplicationController,
            &PodTemplate,
        ];
        for s in strategies {
            for body in [
                json!({}),
                json!({"spec": 1}),
                json!({"spec": {"template": 1, "selector": "x", "strategy": []}}),
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
