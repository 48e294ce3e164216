//! Jobs and CronJobs: defaults, the generated selector and pod labels of a Job, and upstream's
//! validation of both (including CronJob schedules and time zones).

use serde_json::{json, Map, Value};

use super::cron;
use super::podspec::{self, Opts};
use super::util::{self, default_val, ensure_obj, At, Errs};
use super::Strategy;
use crate::status::FieldError;

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const LEGACY_JOB_NAME: &str = "job-name";

const MAX_PARALLELISM_INDEXED: i64 = 100_000;
const MAX_FAILED_INDEXES: i64 = 100_000;
const COMPLETIONS_SOFT_LIMIT: i64 = 100_000;
const HIGH_COMPLETIONS_LIMIT: i64 = 10_000;

pub(super) struct Job;

/// `SetDefaults_Job` on a job spec (`with_job_fields`: the Job kind, not a CronJob template,
/// whose spec upstream leaves alone bar the pod template).
fn default_job_spec(spec: &mut Map<String, Value>) {
    if util::is_unset(spec, "completions") && util::is_unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_val(spec, "parallelism", json!(1));
    if util::is_unset(spec, "backoffLimit") {
        let limit = if util::is_unset(spec, "backoffLimitPerIndex") {
            6
        } else {
            i32::MAX as i64
        };
        spec.insert("backoffLimit".into(), json!(limit));
    }
    default_val(spec, "completionMode", json!("NonIndexed"));
    default_val(spec, "suspend", json!(false));
    let has_failure_policy = !util::is_unset(spec, "podFailurePolicy");
    if let Some(pfp) = util::obj_mut(spec, "podFailurePolicy") {
        util::each_obj_mut(pfp, "rules", |rule| {
            util::each_obj_mut(rule, "onPodConditions", |p| {
                util::default_str(p, "status", "True")
            });
        });
    }
    if util::is_unset(spec, "podReplacementPolicy") {
        let policy = if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.insert("podReplacementPolicy".into(), json!(policy));
    }
    default_val(spec, "manualSelector", json!(false));
}

fn template_defaults(spec: &mut Map<String, Value>) {
    if let Some(t) = ensure_obj(spec, "template") {
        podspec::default_template(t);
    }
}

/// Upstream's `generateSelector`: the pods carry the job's uid and name (under both the
/// legacy and the prefixed keys) and the job selects them by uid.
fn generate_selector(obj: &mut Value) {
    let uid = crate::meta::uid(obj).to_string();
    let name = crate::meta::name(obj).to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(labels) = ensure_obj(spec, "template")
        .and_then(|t| ensure_obj(t, "metadata"))
        .and_then(|m| ensure_obj(m, "labels"))
    {
        for key in [LEGACY_JOB_NAME, JOB_NAME] {
            labels.entry(key).or_insert_with(|| json!(name));
        }
        for key in [LEGACY_CONTROLLER_UID, CONTROLLER_UID] {
            labels.entry(key).or_insert_with(|| json!(uid));
        }
    }
    if let Some(ml) = ensure_obj(spec, "selector").and_then(|s| ensure_obj(s, "matchLabels")) {
        ml.entry(CONTROLLER_UID).or_insert_with(|| json!(uid));
    }
}

impl Strategy for Job {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.successful").then(|| {
            crate::meta::path(obj, "status.succeeded")
                .and_then(util::as_integer)
                .unwrap_or(0)
                .to_string()
        })
    }

    fn defaults(&self, obj: &mut Value) {
        let template_labels = crate::meta::path(obj, "spec.template.metadata.labels")
            .filter(|l| l.is_object())
            .cloned();
        if let Some(labels) = template_labels {
            let has_labels = crate::meta::metadata(obj)
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .is_some_and(|l| !l.is_empty());
            if !has_labels {
                crate::meta::metadata_mut(obj).insert("labels".into(), labels);
            }
        }
        let Some(spec) = obj.as_object_mut().and_then(|m| ensure_obj(m, "spec")) else {
            return;
        };
        default_job_spec(spec);
        template_defaults(spec);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        // Upstream decodes (defaulting `manualSelector`) before generating the selector.
        self.defaults(obj);
        if crate::meta::path(obj, "spec.manualSelector").and_then(Value::as_bool) != Some(true) {
            generate_selector(obj);
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_job(obj, true)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut old = old.clone();
        self.defaults(&mut old);
        let old_labels = crate::meta::path(&old, "spec.template.metadata.labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let prefixed = old_labels.contains_key(JOB_NAME) && old_labels.contains_key(CONTROLLER_UID);
        let mut errs = validate_job(new, prefixed);
        job_spec_update(&mut errs, new, &old);
        errs
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        let msgs = ferrokube_common::labels::is_dns1123_label(crate::meta::name(obj));
        if msgs.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; a DNS label is recommended: [{}]",
            msgs.join(" ")
        )]
    }
}

/// `ValidateJob`.
fn validate_job(obj: &Value, prefixed_labels: bool) -> Errs {
    let mut errs = Vec::new();
    let root = At::new(obj, "");
    let spec = root.child("spec");
    generated_selector(&mut errs, obj, prefixed_labels);
    job_spec(&mut errs, &spec);
    let sel = spec.child("selector");
    if !sel.is_set() {
        errs.push(FieldError::required(sel.path.clone(), ""));
    } else {
        util::label_selector(&mut errs, &sel, false);
    }
    if let Some(s) = util::selector_of(&sel) {
        let labels = spec.at("template.metadata.labels");
        if !s.matches(&labels.str_map_quiet()) {
            errs.push(FieldError::invalid(
                labels.path.clone(),
                labels.value(),
                "`selector` does not match template `labels`",
            ));
        }
    }
    let indexed = spec.child("completionMode").s() == Some("Indexed");
    if let Some(c) = spec.child("completions").i().filter(|c| *c > 0 && indexed) {
        let name = crate::meta::name(obj);
        let host = format!("{name}-{}", c - 1);
        if !ferrokube_common::labels::is_dns1123_label(&host).is_empty() {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                format!("will not able to create pod with invalid DNS label: {host}"),
            ));
        }
    }
    errs
}

/// `validateGeneratedSelector`: generated selectors must still be what was generated.
fn generated_selector(errs: &mut Errs, obj: &Value, prefixed: bool) {
    let root = At::new(obj, "");
    let spec = root.child("spec");
    if spec.child("manualSelector").b() == Some(true) || !spec.child("selector").is_set() {
        return;
    }
    let uid = crate::meta::uid(obj);
    let name = crate::meta::name(obj);
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    let meta_path = "spec.template.metadata";
    let labels_at = spec.at("template.metadata.labels");
    let labels = labels_at.str_map_quiet();
    let mut expect = vec![(LEGACY_CONTROLLER_UID, uid), (LEGACY_JOB_NAME, name)];
    if prefixed {
        expect.extend([(CONTROLLER_UID, uid), (JOB_NAME, name)]);
    }
    for (key, want) in &expect {
        let path = format!("{meta_path}.labels[{key}]");
        match labels.get(*key) {
            None => errs.push(FieldError::required(path, format!("must be '{want}'"))),
            Some(v) if v != want => errs.push(FieldError::invalid(
                path,
                labels_at.value(),
                format!("must be '{want}'"),
            )),
            _ => {}
        }
    }
    let expected: std::collections::BTreeMap<String, String> = expect
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sel = spec.child("selector");
    if let Some(s) = util::selector_of(&sel) {
        if !s.matches(&expected) {
            errs.push(FieldError::invalid(
                sel.path.clone(),
                sel.value(),
                "`selector` not auto-generated",
            ));
        }
    }
}

/// `validateJobSpec`: what Jobs and CronJob job templates share.
fn job_spec(errs: &mut Errs, spec: &At) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        util::nonnegative(errs, &spec.child(f));
    }
    let blpi = spec.child("backoffLimitPerIndex");
    let mfi = spec.child("maxFailedIndexes");
    if mfi.is_set() && !blpi.is_set() {
        errs.push(FieldError::required(
            blpi.path.clone(),
            "when maxFailedIndexes is specified",
        ));
    }
    let mb = spec.child("managedBy");
    if let Some(m) = mb.str(errs) {
        domain_prefixed_path(errs, &mb.path, m);
        if m.len() > 63 {
            errs.push(FieldError::too_long(mb.path.clone(), 63));
        }
    }
    let completions = spec.child("completions").i();
    let parallelism = spec.child("parallelism").i();
    let cm = spec.child("completionMode");
    let mode = cm.str(errs);
    if let Some(m) = mode {
        if m != "NonIndexed" && m != "Indexed" {
            errs.push(FieldError::not_supported(
                cm.path.clone(),
                m,
                &["NonIndexed", "Indexed"],
            ));
        }
        if m == "Indexed" {
            if completions.is_none() {
                errs.push(FieldError::required(
                    spec.child("completions").path,
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = parallelism.filter(|p| *p > MAX_PARALLELISM_INDEXED) {
                errs.push(FieldError::invalid(
                    spec.child("parallelism").path,
                    p,
                    format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                ));
            }
            if let (Some(c), Some(f)) = (completions, mfi.i()) {
                if f > c {
                    errs.push(FieldError::invalid(
                        mfi.path.clone(),
                        f,
                        "must be less than or equal to completions",
                    ));
                }
            }
            if let Some(f) = mfi.i().filter(|f| *f > MAX_FAILED_INDEXES) {
                errs.push(FieldError::invalid(
                    mfi.path.clone(),
                    f,
                    format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
                ));
            }
            if completions.is_some_and(|c| c > COMPLETIONS_SOFT_LIMIT) && blpi.is_set() {
                if !mfi.is_set() {
                    errs.push(FieldError::required(
                        mfi.path.clone(),
                        format!(
                            "must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"
                        ),
                    ));
                }
                if let Some(p) = parallelism.filter(|p| *p > HIGH_COMPLETIONS_LIMIT) {
                    errs.push(FieldError::invalid(
                        spec.child("parallelism").path,
                        p,
                        format!("must be less than or equal to {HIGH_COMPLETIONS_LIMIT} when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"),
                    ));
                }
                if let Some(f) = mfi.i().filter(|f| *f > HIGH_COMPLETIONS_LIMIT) {
                    errs.push(FieldError::invalid(
                        mfi.path.clone(),
                        f,
                        format!("must be less than or equal to {HIGH_COMPLETIONS_LIMIT} when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"),
                    ));
                }
            }
        }
    }
    let indexed = mode == Some("Indexed");
    if !indexed {
        if let Some(b) = blpi.i() {
            errs.push(FieldError::invalid(
                blpi.path.clone(),
                b,
                "requires indexed completion mode",
            ));
        }
        if let Some(f) = mfi.i() {
            errs.push(FieldError::invalid(
                mfi.path.clone(),
                f,
                "requires indexed completion mode",
            ));
        }
    }
    let pfp = spec.child("podFailurePolicy");
    if pfp.is_set() {
        pod_failure_policy(errs, spec, &pfp);
    }
    let sp = spec.child("successPolicy");
    if sp.is_set() {
        if !indexed {
            errs.push(FieldError::invalid(
                sp.path.clone(),
                sp.value(),
                "requires indexed completion mode",
            ));
        } else {
            success_policy(errs, &sp, completions.unwrap_or(0));
        }
    }
    let prp = spec.child("podReplacementPolicy");
    if let Some(p) = prp.str(errs) {
        if pfp.is_set() {
            if p != "Failed" {
                errs.push(FieldError::not_supported(prp.path.clone(), p, &["Failed"]));
            }
        } else if p != "Failed" && p != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(
                prp.path.clone(),
                p,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let tmpl = spec.child("template");
    podspec::validate_template(errs, &tmpl, Opts::default());
    let rp = tmpl.at("spec.restartPolicy");
    match rp.s().unwrap_or("") {
        "Always" | "" => errs.push(FieldError::required(
            rp.path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" if pfp.is_set() => errs.push(FieldError::invalid(
            rp.path,
            "OnFailure",
            "only \"Never\" is supported when podFailurePolicy is specified",
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            rp.path,
            other,
            &["OnFailure", "Never"],
        )),
    }
}

fn domain_prefixed_path(errs: &mut Errs, path: &str, v: &str) {
    if v.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let Some((host, rest)) = v
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        errs.push(FieldError::invalid(
            path,
            v,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    util::dns_subdomain(errs, path, host);
    let ok = rest
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&c));
    if !ok {
        errs.push(FieldError::invalid(
            path,
            rest,
            "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
        ));
    }
}

fn pod_failure_policy(errs: &mut Errs, spec: &At, pfp: &At) {
    let rules = pfp.child("rules");
    let items = rules.items(errs);
    if items.len() > 20 {
        errs.push(FieldError::too_many(rules.path.clone(), items.len(), 20));
    }
    let mut names = Vec::new();
    for l in ["containers", "initContainers"] {
        for c in spec
            .at(&format!("template.spec.{l}"))
            .items(&mut Vec::new())
        {
            if let Some(n) = c.child("name").s() {
                names.push(n.to_string());
            }
        }
    }
    const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
    for rule in items {
        let action = rule.child("action");
        match action.string(errs) {
            "" => errs.push(FieldError::required(
                action.path.clone(),
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            )),
            "FailIndex" if !spec.child("backoffLimitPerIndex").is_set() => {
                errs.push(FieldError::invalid(
                    action.path.clone(),
                    "FailIndex",
                    "requires the backoffLimitPerIndex to be set",
                ))
            }
            a if !ACTIONS.contains(&a) => {
                errs.push(FieldError::not_supported(action.path.clone(), a, ACTIONS))
            }
            _ => {}
        }
        let exit = rule.child("onExitCodes");
        let conds = rule.child("onPodConditions");
        if exit.is_set() {
            let op = exit.child("operator");
            match op.string(errs) {
                "" => errs.push(FieldError::required(
                    op.path.clone(),
                    "valid values: [\"In\" \"NotIn\"]",
                )),
                "In" | "NotIn" => {}
                other => errs.push(FieldError::not_supported(
                    op.path.clone(),
                    other,
                    &["In", "NotIn"],
                )),
            }
            let cn = exit.child("containerName");
            if let Some(n) = cn.str(errs) {
                if !names.iter().any(|x| x == n) {
                    errs.push(FieldError::invalid(
                        cn.path,
                        n,
                        "must be one of the container or initContainer names in the pod template",
                    ));
                }
            }
            let values = exit.child("values");
            let vals: Vec<i64> = values
                .items(errs)
                .iter()
                .filter_map(|v| v.int(&mut Vec::new()))
                .collect();
            if vals.is_empty() {
                errs.push(FieldError::invalid(
                    values.path.clone(),
                    values.value(),
                    "at least one value is required",
                ));
            } else if vals.len() > 255 {
                errs.push(FieldError::too_many(values.path.clone(), vals.len(), 255));
            }
            let mut seen = std::collections::HashSet::new();
            for (j, v) in vals.iter().enumerate() {
                if op.s() == Some("In") && *v == 0 {
                    errs.push(FieldError::invalid(
                        values.index_path(j),
                        *v,
                        "must not be 0 for the In operator",
                    ));
                }
                if !seen.insert(*v) {
                    errs.push(FieldError::duplicate(values.index_path(j), *v));
                }
            }
            if vals.windows(2).any(|w| w[0] > w[1]) {
                errs.push(FieldError::invalid(
                    values.path.clone(),
                    values.value(),
                    "must be ordered",
                ));
            }
        }
        let patterns = conds.items(errs);
        if patterns.len() > 20 {
            errs.push(FieldError::too_many(conds.path.clone(), patterns.len(), 20));
        }
        for p in &patterns {
            let t = p.child("type");
            let ty = t.string(errs);
            util::qualified_name(errs, &t.path, ty);
            let st = p.child("status");
            match st.string(errs) {
                "" => errs.push(FieldError::required(
                    st.path.clone(),
                    "valid values: [\"False\" \"True\" \"Unknown\"]",
                )),
                "True" | "False" | "Unknown" => {}
                other => errs.push(FieldError::not_supported(
                    st.path.clone(),
                    other,
                    &["False", "True", "Unknown"],
                )),
            }
        }
        if exit.is_set() && !patterns.is_empty() {
            errs.push(util::invalid_omit(
                rule.path.clone(),
                "specifying both OnExitCodes and OnPodConditions is not supported",
            ));
        }
        if !exit.is_set() && patterns.is_empty() {
            errs.push(util::invalid_omit(
                rule.path.clone(),
                "specifying one of OnExitCodes and OnPodConditions is required",
            ));
        }
    }
}

fn success_policy(errs: &mut Errs, sp: &At, completions: i64) {
    let rules = sp.child("rules");
    let items = rules.items(errs);
    if items.is_empty() {
        errs.push(FieldError::required(
            rules.path.clone(),
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if items.len() > 20 {
        errs.push(FieldError::too_many(rules.path.clone(), items.len(), 20));
    }
    for rule in items {
        let count = rule.child("succeededCount");
        let indexes = rule.child("succeededIndexes");
        if !count.is_set() && !indexes.is_set() {
            errs.push(FieldError::required(
                rule.path.clone(),
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        let mut total = 0;
        if let Some(s) = indexes.str(errs) {
            if s.len() > 64 * 1024 {
                errs.push(FieldError::too_long(indexes.path.clone(), 64 * 1024));
            }
            match indexes_total(s, completions) {
                Ok(t) => total = t,
                Err(e) => errs.push(FieldError::invalid(
                    indexes.path.clone(),
                    s,
                    format!("error parsing succeededIndexes: {e}"),
                )),
            }
        }
        if let Some(c) = count.int(errs) {
            if c < 0 {
                errs.push(FieldError::invalid(count.path.clone(), c, util::NEGATIVE));
            }
            if c > completions {
                errs.push(FieldError::invalid(
                    count.path.clone(),
                    c,
                    format!("must be less than or equal to {completions} (the number of specified completions)"),
                ));
            }
            if indexes.is_set() && c > total {
                errs.push(FieldError::invalid(
                    count.path.clone(),
                    c,
                    format!("must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"),
                ));
            }
        }
    }
}

/// Upstream's `validateIndexesFormat`: `1,3-5,7` style lists below `completions`.
fn indexes_total(s: &str, completions: i64) -> Result<i64, String> {
    if s.is_empty() {
        return Ok(0);
    }
    let mut last: Option<i64> = None;
    let mut total = 0;
    for interval in s.split(',') {
        let parts: Vec<&str> = interval.split('-').collect();
        if parts.len() > 2 {
            return Err(format!(
                "the fragment {interval:?} violates the requirement that an index interval can have at most two parts separated by '-'"
            ));
        }
        let parse = |p: &str| -> Result<i64, String> {
            let x: i64 = p
                .parse()
                .map_err(|_| format!("cannot convert string to integer for index: {p:?}"))?;
            if x >= completions {
                return Err(format!("too large index: {p:?}"));
            }
            Ok(x)
        };
        let x = parse(parts[0])?;
        let y = if parts.len() == 2 {
            let y = parse(parts[1])?;
            if x >= y {
                return Err(format!("non-increasing order, previous: {x}, current: {y}"));
            }
            y
        } else {
            x
        };
        if let Some(l) = last {
            if l >= x {
                return Err(format!("non-increasing order, previous: {l}, current: {x}"));
            }
        }
        total += y - x + 1;
        last = Some(y);
    }
    Ok(total)
}

/// `ValidateJobSpecUpdate`.
fn job_spec_update(errs: &mut Errs, new: &Value, old: &Value) {
    let (n, o) = (
        At::new(new, "").child("spec"),
        At::new(old, "").child("spec"),
    );
    let (nc, oc) = (n.child("completions"), o.child("completions"));
    let indexed = n.child("completionMode").s() == Some("Indexed");
    if !indexed {
        util::immutable(errs, &nc, &oc);
    } else if nc.v != oc.v {
        if let Some(c) = nc.i() {
            if Some(c) != n.child("parallelism").i() {
                errs.push(FieldError::invalid(
                    nc.path.clone(),
                    c,
                    "can only be modified in tandem with spec.parallelism",
                ));
            }
        }
    }
    util::immutable(errs, &n.child("selector"), &o.child("selector"));
    let suspended = o.child("suspend").b() == Some(true);
    let not_started = crate::meta::path(old, "status.startTime").is_none_or(Value::is_null);
    let mut old_template = o.child("template").value();
    let new_template = n.child("template").value();
    if suspended && not_started {
        // A suspended job that never ran may still have its scheduling directives changed.
        if let Some(ot) = old_template.as_object_mut() {
            let meta = ot.entry("metadata").or_insert_with(|| json!({}));
            for f in ["labels", "annotations"] {
                if let Some(m) = meta.as_object_mut() {
                    match new_template.pointer(&format!("/metadata/{f}")) {
                        Some(v) => m.insert(f.into(), v.clone()),
                        None => m.remove(f),
                    };
                }
            }
            if let Some(os) = ot.get_mut("spec").and_then(Value::as_object_mut) {
                for f in ["nodeSelector", "tolerations", "schedulingGates"] {
                    match new_template.pointer(&format!("/spec/{f}")) {
                        Some(v) => os.insert(f.into(), v.clone()),
                        None => os.remove(f),
                    };
                }
                let new_na = new_template.pointer("/spec/affinity/nodeAffinity").cloned();
                let new_aff = new_template.pointer("/spec/affinity").cloned();
                match (
                    new_aff,
                    os.get_mut("affinity").and_then(Value::as_object_mut),
                ) {
                    (None, Some(oa)) => {
                        oa.remove("nodeAffinity");
                        if oa.is_empty() {
                            os.remove("affinity");
                        }
                    }
                    (Some(_), None) => {
                        let mut a = Map::new();
                        if let Some(na) = new_na {
                            a.insert("nodeAffinity".into(), na);
                        }
                        os.insert("affinity".into(), Value::Object(a));
                    }
                    (Some(_), Some(oa)) => {
                        match new_na {
                            Some(na) => oa.insert("nodeAffinity".into(), na),
                            None => oa.remove("nodeAffinity"),
                        };
                    }
                    (None, None) => {}
                }
            }
        }
    }
    if new_template != old_template {
        errs.push(FieldError::invalid(
            n.child("template").path,
            new_template,
            util::IMMUTABLE,
        ));
    }
    for f in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        util::immutable(errs, &n.child(f), &o.child(f));
    }
}

// ---- CronJob ----

pub(super) struct CronJob;

impl Strategy for CronJob {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = obj.as_object_mut().and_then(|m| ensure_obj(m, "spec")) else {
            return;
        };
        util::default_str(spec, "concurrencyPolicy", "Allow");
        default_val(spec, "suspend", json!(false));
        default_val(spec, "successfulJobsHistoryLimit", json!(3));
        default_val(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(jt) = ensure_obj(spec, "jobTemplate") {
            if let Some(m) = ensure_obj(jt, "metadata") {
                m.entry("creationTimestamp").or_insert(Value::Null);
            }
            if let Some(js) = ensure_obj(jt, "spec") {
                template_defaults(js);
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        cron_job_spec(&mut errs, &At::new(obj, "").child("spec"), None);
        let name = crate::meta::name(obj);
        if name.len() > 52 {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be no more than 52 characters",
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        cron_job_spec(
            &mut errs,
            &At::new(new, "").child("spec"),
            Some(&At::new(old, "").child("spec")),
        );
        errs
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        let schedule = crate::meta::path(obj, "spec.schedule")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut out = Vec::new();
        if schedule.contains("TZ") {
            out.push(
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string(),
            );
        }
        if schedule
            .split_whitespace()
            .nth(3)
            .is_some_and(|f| f.contains('?'))
            || schedule
                .split_whitespace()
                .nth(4)
                .is_some_and(|f| f.contains('?'))
        {
            out.push(format!(
                "spec.schedule: {schedule:?}: non-standard scheduling, the '?' character is a wildcard in Kubernetes but has special meaning in other cron implementations"
            ));
        }
        out
    }
}

fn cron_job_spec(errs: &mut Errs, spec: &At, old: Option<&At>) {
    let sched = spec.child("schedule");
    let schedule = sched.string(errs);
    let tz = spec.child("timeZone");
    if schedule.is_empty() {
        errs.push(FieldError::required(sched.path.clone(), ""));
    } else {
        if let Err(e) = cron::parse_standard(schedule) {
            errs.push(FieldError::invalid(sched.path.clone(), schedule, e));
        }
        let allow_tz = old.is_some_and(|o| o.child("schedule").s().unwrap_or("").contains("TZ"));
        if schedule.contains("TZ") {
            if allow_tz && tz.is_set() {
                errs.push(FieldError::invalid(
                    sched.path.clone(),
                    schedule,
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            } else if !allow_tz {
                errs.push(FieldError::invalid(
                    sched.path.clone(),
                    schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            }
        }
    }
    util::nonnegative(errs, &spec.child("startingDeadlineSeconds"));
    if old.is_none_or(|o| o.child("timeZone").v != tz.v) {
        time_zone(errs, &tz);
    }
    let cp = spec.child("concurrencyPolicy");
    match cp.string(errs) {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(cp.path.clone(), "")),
        other => errs.push(FieldError::not_supported(
            cp.path.clone(),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jt = spec.child("jobTemplate");
    let js = jt.child("spec");
    job_spec(errs, &js);
    let sel = js.child("selector");
    if sel.is_set() {
        errs.push(FieldError::invalid(
            sel.path.clone(),
            sel.value(),
            "`selector` will be auto-generated",
        ));
    }
    let ms = js.child("manualSelector");
    if ms.b() == Some(true) {
        errs.push(FieldError::not_supported(ms.path, true, &["nil", "false"]));
    }
    util::nonnegative(errs, &spec.child("successfulJobsHistoryLimit"));
    util::nonnegative(errs, &spec.child("failedJobsHistoryLimit"));
}

fn time_zone(errs: &mut Errs, tz: &At) {
    let Some(zone) = tz.str(errs) else { return };
    if zone.is_empty() {
        errs.push(FieldError::invalid(
            tz.path.clone(),
            zone,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-_+".contains(&c))
    };
    if !zone.split('/').all(part_ok) {
        errs.push(FieldError::invalid(
            tz.path.clone(),
            zone,
            format!("unknown time zone {zone}"),
        ));
        return;
    }
    if zone.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            tz.path.clone(),
            zone,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if let Err(e) = cron::load_location(zone) {
        errs.push(FieldError::invalid(tz.path.clone(), zone, e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn job() -> Value {
        json!({"metadata": {"name": "pi", "namespace": "ns", "uid": "u-1"},
               "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "perl"}], "restartPolicy": "Never"}}}})
    }

    fn created(mut j: Value) -> Value {
        Job.prepare_for_create(&mut j);
        Job.defaults(&mut j);
        j
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let j = created(job());
        let spec = &j["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {CONTROLLER_UID: "u-1"}})
        );
        let labels = json!({"job-name": "pi", JOB_NAME: "pi", "controller-uid": "u-1", CONTROLLER_UID: "u-1"});
        assert_eq!(spec["template"]["metadata"]["labels"], labels);
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(j["status"], json!({}));
        assert!(Job.validate(&j).is_empty(), "{:?}", msgs(&Job.validate(&j)));
    }

    #[test]
    fn job_restart_policy_rules() {
        let mut j = job();
        j["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        let j = created(j);
        assert!(msgs(&Job.validate(&j)).contains(
            &"spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"".to_string()
        ));
    }

    #[test]
    fn job_template_is_immutable() {
        let old = created(job());
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
        let errs = Job.validate_update(&new, &old);
        assert_eq!(errs.len(), 1, "{:?}", msgs(&errs));
        assert_eq!(errs[0].field, "spec.template");
        assert_eq!(errs[0].detail, "field is immutable");
        let mut new = old.clone();
        new["spec"]["parallelism"] = json!(3);
        assert!(Job.validate_update(&new, &old).is_empty());
    }

    #[test]
    fn manual_selector_is_left_alone() {
        let mut j = job();
        j["spec"]["manualSelector"] = json!(true);
        j["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        j["spec"]["template"]["metadata"] = json!({"labels": {"a": "b"}});
        let j = created(j);
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {"a": "b"}}));
        assert!(Job.validate(&j).is_empty(), "{:?}", msgs(&Job.validate(&j)));
    }

    #[test]
    fn cronjob_defaults_and_schedule() {
        let mut cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "OnFailure"}}}}}});
        CronJob.prepare_for_create(&mut cj);
        CronJob.defaults(&mut cj);
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["suspend"], false);
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert!(cj["spec"]["jobTemplate"]["spec"]
            .get("backoffLimit")
            .is_none());
        assert!(
            CronJob.validate(&cj).is_empty(),
            "{:?}",
            msgs(&CronJob.validate(&cj))
        );

        cj["spec"]["schedule"] = json!("61 * * * *");
        cj["spec"]["timeZone"] = json!("Mars/Olympus");
        let errs = msgs(&CronJob.validate(&cj));
        assert!(errs.contains(&"spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61".to_string()), "{errs:?}");
        assert!(
            errs.contains(
                &"spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"
                    .to_string()
            ),
            "{errs:?}"
        );

        cj["spec"]["schedule"] = json!("TZ=UTC 0 * * * *");
        cj["spec"]["timeZone"] = json!("Europe/Paris");
        let errs = msgs(&CronJob.validate(&cj));
        assert!(errs.contains(&"spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string()), "{errs:?}");
    }

    #[test]
    fn indexes() {
        assert_eq!(indexes_total("0,2-4", 5), Ok(4));
        assert!(indexes_total("3,1", 5).is_err());
        assert!(indexes_total("9", 5).is_err());
    }

    #[test]
    fn odd_batch_objects_do_not_panic() {
        let strategies: [&dyn Strategy; 2] = [&Job, &CronJob];
        for s in strategies {
            for body in [
                json!({}),
                json!({"spec": 1}),
                json!({"spec": {"template": 1, "selector": 2, "jobTemplate": []}}),
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
