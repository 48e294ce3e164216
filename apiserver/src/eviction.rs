//! The `pods/eviction` subresource: a pod deletion that first asks the pod's
//! PodDisruptionBudget for permission, as upstream's EvictionREST does.
//!
//! The budget's status (written by the disruption controller) is the source of truth: an
//! eviction spends one of its `disruptionsAllowed` by recording the pod in `disruptedPods`
//! with a resourceVersion-guarded status write, so two concurrent evictions cannot both spend
//! the last one. Pods that are not running (Pending, Succeeded, Failed) or already being
//! deleted are deleted without consulting any budget, because evicting them cannot disrupt
//! the application further.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::encoding::Format;
use crate::http::{respond, Body};
use crate::meta;
use crate::registry::list::ListQuery;
use crate::registry::WriteOptions;
use crate::resources::Resource;
use crate::server::App;
use crate::status::{ApiError, ApiResult, Subject};

/// How often a conflicting write is retried before giving up, as upstream's EvictionsRetry.
const RETRIES: usize = 5;

/// Upstream's MaxDisruptedPodSize: beyond this many unconfirmed evictions the budget refuses.
const MAX_DISRUPTED_PODS: usize = 2000;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// Serves `POST .../pods/<name>/eviction`.
pub async fn create(
    app: &Arc<App>,
    namespace: Option<&str>,
    pod_name: &str,
    body: Value,
    query: &[(String, String)],
) -> ApiResult<Response<Body>> {
    check_kind(&body)?;
    let body_name = meta::name(&body);
    if !body_name.is_empty() && body_name != pod_name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let mut opts = crate::http::write_options(query)?;
    let mut delete_options = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    if !delete_options.is_object() {
        delete_options = json!({});
    }
    merge_dry_run(&mut opts, &mut delete_options)?;
    let ev = Eviction {
        app,
        pods: lookup(app, "", "v1", "pods")?,
        pdbs: lookup(app, "policy", "v1", "poddisruptionbudgets")?,
        namespace,
        name: pod_name,
        opts,
        caller_set_rv: precondition_rv(&delete_options).is_some(),
        delete_options,
    };
    ev.run().await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(respond(StatusCode::CREATED, &status, Format::Json))
}

fn check_kind(body: &Value) -> ApiResult<()> {
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    // Both policy/v1 and the older policy/v1beta1 body are accepted, as upstream does.
    let known = matches!(api_version, "" | "policy/v1" | "policy/v1beta1");
    if !known || !(kind.is_empty() || kind == "Eviction") {
        return Err(ApiError::bad_request(format!(
            "the body of an eviction must be a policy/v1 Eviction, not {api_version} {kind}"
        )));
    }
    Ok(())
}

/// A dry run may be asked for on the query or in the deleteOptions; both must agree.
fn merge_dry_run(opts: &mut WriteOptions, delete_options: &mut Value) -> ApiResult<()> {
    let in_body = delete_options
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|v| !v.is_empty());
    if in_body && !opts.dry_run {
        opts.dry_run = true;
    } else if opts.dry_run && !in_body {
        if delete_options.get("dryRun").is_some() {
            return Err(ApiError::bad_request(
                "the dryRun of the eviction's deleteOptions does not match the request's",
            ));
        }
        delete_options["dryRun"] = json!(["All"]);
    }
    Ok(())
}

fn lookup(app: &App, group: &str, version: &str, plural: &str) -> ApiResult<Arc<Resource>> {
    app.table
        .lookup(group, version, plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

fn precondition_rv(options: &Value) -> Option<String> {
    options
        .get("preconditions")
        .and_then(|p| p.get("resourceVersion"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn with_precondition_rv(options: &Value, rv: &str) -> Value {
    let mut o = options.clone();
    if !o.get("preconditions").is_some_and(Value::is_object) {
        o["preconditions"] = json!({});
    }
    o["preconditions"]["resourceVersion"] = json!(rv);
    o
}

fn phase(pod: &Value) -> &str {
    meta::path(pod, "status.phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Pods whose eviction disrupts nothing more than is already disrupted.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
        || meta::deletion_timestamp(pod).is_some()
}

/// Terminal pods never turn healthy again, so their deletion needs no version guard.
fn enforce_rv(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed")
}

pub(crate) fn is_ready(pod: &Value) -> bool {
    meta::path(pod, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn is_conflict(e: &ApiError) -> bool {
    e.code == 409 && e.reason == "Conflict"
}

fn too_many_requests(retry_after: i64, cause: String) -> ApiError {
    let mut e = ApiError::too_many_requests(VIOLATION);
    e.details = Some(Box::new(json!({
        "retryAfterSeconds": retry_after,
        "causes": [{"reason": "DisruptionBudget", "message": cause}],
    })));
    e
}

fn still_processing(pdb_name: &str) -> ApiError {
    too_many_requests(
        10,
        format!("The disruption budget {pdb_name} is still being processed by the server."),
    )
}

/// Sets (or refreshes) a condition in a JSON `conditions` array, moving its transition time
/// only when its status changes.
pub(crate) fn set_condition(conditions: &mut Vec<Value>, mut cond: Value) {
    let now = meta::now_rfc3339();
    match conditions.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(existing) => {
            let moved = existing["status"] != cond["status"];
            let when = if moved {
                json!(now)
            } else {
                existing
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or(json!(now))
            };
            cond["lastTransitionTime"] = when;
            *existing = cond;
        }
        None => {
            cond["lastTransitionTime"] = json!(now);
            conditions.push(cond);
        }
    }
}

struct Eviction<'a> {
    app: &'a Arc<App>,
    pods: Arc<Resource>,
    pdbs: Arc<Resource>,
    namespace: Option<&'a str>,
    name: &'a str,
    opts: WriteOptions,
    delete_options: Value,
    caller_set_rv: bool,
}

enum Verdict {
    /// No budget guards the pod, or one was spent for it.
    Delete,
    /// The pod is unready and the budget lets it go; delete only if it is still the pod that
    /// was judged (it may have turned ready meanwhile).
    DeleteIfUnchanged,
}

impl Eviction<'_> {
    async fn run(&self) -> ApiResult<()> {
        let mut attempt = 0;
        let pod = loop {
            attempt += 1;
            let pod = self
                .app
                .registry
                .get(&self.pods, self.namespace, self.name, None)
                .await?;
            if !can_ignore_budget(&pod) {
                break pod;
            }
            let mut options = self.delete_options.clone();
            if enforce_rv(&pod) && !self.caller_set_rv {
                options = with_precondition_rv(&options, meta::resource_version(&pod));
            }
            match self.mark_and_delete(options).await {
                Ok(()) => return Ok(()),
                Err(e) if is_conflict(&e) && !self.caller_set_rv && attempt < RETRIES => continue,
                Err(e) => return Err(e),
            }
        };

        let verdict = self.consult_budget(&pod).await?;
        let options = match verdict {
            Verdict::Delete => self.delete_options.clone(),
            Verdict::DeleteIfUnchanged if self.caller_set_rv => self.delete_options.clone(),
            Verdict::DeleteIfUnchanged => {
                with_precondition_rv(&self.delete_options, meta::resource_version(&pod))
            }
        };
        match self.mark_and_delete(options).await {
            Err(e)
                if is_conflict(&e)
                    && matches!(verdict, Verdict::DeleteIfUnchanged)
                    && !self.caller_set_rv =>
            {
                // The pod changed after it was judged unhealthy: have the client try again.
                let pdb = self.matching_budgets(&pod).await?;
                let name = pdb.first().map(meta::name).unwrap_or_default().to_string();
                Err(still_processing(&name))
            }
            other => other,
        }
    }

    async fn matching_budgets(&self, pod: &Value) -> ApiResult<Vec<Value>> {
        let page = self
            .app
            .registry
            .list(&self.pdbs, self.namespace, &ListQuery::default())
            .await?;
        let labels = meta::path(pod, "metadata.labels")
            .cloned()
            .unwrap_or(json!({}));
        Ok(page
            .items
            .iter()
            .map(|o| o.value.clone())
            .filter(|pdb| {
                let selector = meta::path(pdb, "spec.selector")
                    .cloned()
                    .unwrap_or(Value::Null);
                // In policy/v1 an empty selector selects every pod; a missing one none.
                ferrokube_common::labels::Selector::from_label_selector(&selector)
                    .is_ok_and(|s| s.matches(&labels))
            })
            .collect())
    }

    async fn consult_budget(&self, pod: &Value) -> ApiResult<Verdict> {
        let budgets = self.matching_budgets(pod).await?;
        if budgets.len() > 1 {
            return Err(ApiError::new(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let Some(mut pdb) = budgets.into_iter().next() else {
            return Ok(Verdict::Delete);
        };
        if !is_ready(pod) {
            let policy = meta::path(&pdb, "spec.unhealthyPodEvictionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("IfHealthyBudget");
            if policy == "AlwaysAllow" {
                return Ok(Verdict::DeleteIfUnchanged);
            }
            let current = status_int(&pdb, "currentHealthy");
            let desired = status_int(&pdb, "desiredHealthy");
            if current >= desired && desired > 0 {
                return Ok(Verdict::DeleteIfUnchanged);
            }
        }
        let pdb_name = meta::name(&pdb).to_string();
        for _ in 0..RETRIES {
            match self.spend(&pdb).await {
                Ok(()) => return Ok(Verdict::Delete),
                Err(e) if is_conflict(&e) => {
                    pdb = self
                        .app
                        .registry
                        .get(&self.pdbs, self.namespace, &pdb_name, None)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::timeout(format!(
            "couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"
        )))
    }

    /// Takes one allowed disruption from the budget for this pod, or says why it cannot.
    async fn spend(&self, pdb: &Value) -> ApiResult<()> {
        let name = meta::name(pdb);
        let generation = meta::path(pdb, "metadata.generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if status_int(pdb, "observedGeneration") < generation {
            return Err(still_processing(name));
        }
        let allowed = status_int(pdb, "disruptionsAllowed");
        let subject = Subject {
            group: "policy",
            resource: "poddisruptionbudget",
            name,
        };
        if allowed < 0 {
            return Err(ApiError::forbidden(
                subject,
                "pdb disruptions allowed is negative",
            ));
        }
        let disrupted = meta::path(pdb, "status.disruptedPods")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len());
        if disrupted > MAX_DISRUPTED_PODS {
            return Err(ApiError::forbidden(
                subject,
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(too_many_requests(
                0,
                format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    status_int(pdb, "desiredHealthy"),
                    status_int(pdb, "currentHealthy")
                ),
            ));
        }
        if self.opts.dry_run {
            return Ok(());
        }
        let mut updated = pdb.clone();
        if !updated.get("status").is_some_and(Value::is_object) {
            updated["status"] = json!({});
        }
        updated["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if allowed - 1 == 0 {
            let mut conditions: Vec<Value> = meta::path(pdb, "status.conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            set_condition(
                &mut conditions,
                json!({
                    "type": "DisruptionAllowed",
                    "status": "False",
                    "reason": "InsufficientPods",
                    "message": "",
                    "observedGeneration": status_int(pdb, "observedGeneration"),
                }),
            );
            updated["status"]["conditions"] = json!(conditions);
        }
        if !updated["status"]
            .get("disruptedPods")
            .is_some_and(Value::is_object)
        {
            updated["status"]["disruptedPods"] = json!({});
        }
        // Tells the disruption controller not to count this pod as healthy while it goes.
        updated["status"]["disruptedPods"][self.name] = json!(meta::now_rfc3339());
        self.app
            .registry
            .update(
                &self.pdbs,
                self.namespace,
                name,
                Some("status"),
                updated,
                &WriteOptions::default(),
            )
            .await
            .map(|_| ())
    }

    /// Marks the pod with the DisruptionTarget condition, then deletes it with `options`.
    async fn mark_and_delete(&self, mut options: Value) -> ApiResult<()> {
        if !self.opts.dry_run {
            let pod = self
                .app
                .registry
                .get(&self.pods, self.namespace, self.name, None)
                .await?;
            check_preconditions(&pod, &options, self.name)?;
            let mut updated = pod.clone();
            let mut conditions: Vec<Value> = meta::path(&pod, "status.conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            set_condition(
                &mut conditions,
                json!({
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "EvictionByEvictionAPI",
                    "message": "Eviction API: evicting",
                }),
            );
            if !updated.get("status").is_some_and(Value::is_object) {
                updated["status"] = json!({});
            }
            updated["status"]["conditions"] = json!(conditions);
            let (stored, _) = self
                .app
                .registry
                .update(
                    &self.pods,
                    self.namespace,
                    self.name,
                    Some("status"),
                    updated,
                    &WriteOptions::default(),
                )
                .await?;
            // Our own write moved the version on; the caller's guard referred to the pod
            // before it.
            if precondition_rv(&options).is_some() {
                options = with_precondition_rv(&options, meta::resource_version(&stored));
            }
        }
        self.app
            .registry
            .delete(&self.pods, self.namespace, self.name, &options, &self.opts)
            .await
            .map(|_| ())
    }
}

fn check_preconditions(pod: &Value, options: &Value, name: &str) -> ApiResult<()> {
    let subject = || Subject {
        group: "",
        resource: "pods",
        name,
    };
    if let Some(uid) = options
        .get("preconditions")
        .and_then(|p| p.get("uid"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        if uid != meta::uid(pod) {
            return Err(ApiError::conflict(
                subject(),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(pod)
                ),
            ));
        }
    }
    if let Some(rv) = precondition_rv(options) {
        if rv != meta::resource_version(pod) {
            return Err(ApiError::conflict(
                subject(),
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(pod)
                ),
            ));
        }
    }
    Ok(())
}

fn status_int(obj: &Value, field: &str) -> i64 {
    obj.get("status")
        .and_then(|s| s.get(field))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}
