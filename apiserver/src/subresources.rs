//! Subresources: status, scale, binding, finalize, approval and the pod-spec subresources.
//! The ones that reach past the apiserver (log, exec, attach, portforward, proxy) live in
//! `proxy`. Eviction lives in `eviction`, the ServiceAccount `token` subresource in
//! `serviceaccount::token`.

use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::authn::User;
use crate::encoding::{self, Format};
use crate::http::{query_value, respond, Body};
use crate::meta;
use crate::registry::PatchKind;
use crate::request::ResourceRequest;
use crate::resources::Resource;
use crate::server::App;
use crate::status::{ApiError, ApiResult, FieldError, Subject};

type Req = Request<hyper::body::Incoming>;

pub async fn serve(
    app: Arc<App>,
    req: Req,
    res: &Resource,
    namespace: Option<&str>,
    info: &ResourceRequest,
    query: Vec<(String, String)>,
    user: User,
) -> ApiResult<Response<Body>> {
    let _ = &user;
    let sub = info.subresource.as_deref().unwrap_or("");
    // Proxied answers are the backend's, whatever the client accepts.
    if crate::proxy::handles(sub) {
        return crate::proxy::serve(&app, req, res, namespace, info, &query).await;
    }
    let name = info.name.as_deref().unwrap_or("");
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let format = encoding::negotiate(accept.as_deref(), false)?.format;
    match (sub, info.verb) {
        ("scale", _) => scale(&app, req, res, namespace, name, info.verb, &query, format).await,
        ("binding", "create") => {
            let body = crate::http::resource_body(req).await?;
            bind(&app, namespace, name, body, &query).await
        }
        ("status" | "finalize" | "approval" | "ephemeralcontainers" | "resize", "get") => {
            let obj = app
                .registry
                .get(res, namespace, name, query_value(&query, "resourceVersion"))
                .await?;
            Ok(respond(StatusCode::OK, &obj, format))
        }
        ("status" | "finalize" | "approval" | "ephemeralcontainers" | "resize", "update") => {
            let opts = crate::http::write_options(&query)?;
            let body = crate::http::resource_body(req).await?;
            let (obj, _) = app
                .registry
                .update(res, namespace, name, Some(sub), body, &opts)
                .await?;
            Ok(respond(StatusCode::OK, &obj, format))
        }
        ("status" | "approval" | "ephemeralcontainers" | "resize", "patch") => {
            let opts = crate::http::write_options(&query)?;
            let (kind, patch) = crate::http::patch_body(req).await?;
            let obj = app
                .registry
                .patch(res, namespace, name, Some(sub), kind, &patch, &opts)
                .await?;
            Ok(respond(StatusCode::OK, &obj, format))
        }
        ("eviction", "create") => {
            let body = crate::http::resource_body(req).await?;
            crate::eviction::create(&app, namespace, name, body, &query).await
        }
        ("token", "create") => {
            crate::serviceaccount::token::create(&app, req, namespace, name, format).await
        }
        (other, _) => {
            let waiting_for = match other {
                "token" => "service-account token signing",
                _ => "its component",
            };
            Err(ApiError::service_unavailable(format!(
                "the {}/{other} subresource is not served by this ferrokube build yet: it needs {waiting_for}",
                res.plural
            )))
        }
    }
}

/// The Scale view of a workload: spec.replicas, status.replicas and the selector.
fn scale_of(res: &Resource, obj: &Value) -> Value {
    let selector = match meta::path(obj, "spec.selector") {
        // ReplicationControllers carry a plain label map; the others a LabelSelector.
        Some(sel) if res.kind == "ReplicationController" => json!({ "matchLabels": sel }),
        Some(sel) => sel.clone(),
        None => Value::Null,
    };
    let selector_string = ferrokube_common::labels::Selector::from_label_selector(&selector)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mut metadata = json!({
        "name": meta::name(obj),
        "namespace": meta::namespace(obj),
        "uid": meta::uid(obj),
        "resourceVersion": meta::resource_version(obj),
        "creationTimestamp": meta::str_field(obj, "creationTimestamp"),
    });
    if meta::namespace(obj).is_empty() {
        metadata.as_object_mut().map(|m| m.remove("namespace"));
    }
    let mut status = json!({
        "replicas": meta::path(obj, "status.replicas").and_then(Value::as_i64).unwrap_or(0),
    });
    if !selector_string.is_empty() {
        status["selector"] = json!(selector_string);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": { "replicas": meta::path(obj, "spec.replicas").and_then(Value::as_i64).unwrap_or(0) },
        "status": status,
    })
}

#[allow(clippy::too_many_arguments)]
async fn scale(
    app: &App,
    req: Req,
    res: &Resource,
    namespace: Option<&str>,
    name: &str,
    verb: &str,
    query: &[(String, String)],
    format: Format,
) -> ApiResult<Response<Body>> {
    let opts = crate::http::write_options(query)?;
    let current = app.registry.get(res, namespace, name, None).await?;
    let current_scale = scale_of(res, &current);
    let wanted = match verb {
        "get" => return Ok(respond(StatusCode::OK, &current_scale, format)),
        "update" => crate::http::resource_body(req).await?,
        "patch" => {
            let (kind, patch) = crate::http::patch_body(req).await?;
            apply_scale_patch(&current_scale, kind, &patch)?
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let replicas = match meta::path(&wanted, "spec.replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("Scale.spec.replicas must be an integer"))?,
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            &[FieldError::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut patch = json!({ "spec": { "replicas": replicas } });
    let rv = meta::resource_version(&wanted);
    if !rv.is_empty() {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    let updated = app
        .registry
        .patch(res, namespace, name, None, PatchKind::Merge, &patch, &opts)
        .await?;
    Ok(respond(StatusCode::OK, &scale_of(res, &updated), format))
}

fn apply_scale_patch(current: &Value, kind: PatchKind, patch: &Value) -> ApiResult<Value> {
    let mut target = current.clone();
    let result = match kind {
        PatchKind::Json => ferrokube_common::patch::json_patch(&mut target, patch).map(|_| target),
        PatchKind::Merge => {
            ferrokube_common::patch::merge_patch(&mut target, patch).map(|_| target)
        }
        PatchKind::Strategic => ferrokube_common::patch::strategic_merge_patch(
            current,
            patch,
            "io.k8s.api.autoscaling.v1.Scale",
        ),
    };
    result.map_err(|e| ApiError::new(e.status_code(), "Invalid", e.message().to_string()))
}

/// Binds a pod to a node: sets spec.nodeName (once) and the PodScheduled condition.
pub async fn bind(
    app: &App,
    namespace: Option<&str>,
    pod_name: &str,
    binding: Value,
    query: &[(String, String)],
) -> ApiResult<Response<Body>> {
    let opts = crate::http::write_options(query)?;
    let pods = app
        .table
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    let name = if pod_name.is_empty() {
        meta::name(&binding).to_string()
    } else {
        pod_name.to_string()
    };
    let node = meta::path(&binding, "target.name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            &name,
            &[FieldError::required("target.name", "")],
        ));
    }
    let pod = app.registry.get(&pods, namespace, &name, None).await?;
    if meta::deletion_timestamp(&pod).is_some() {
        return Err(ApiError::conflict(
            Subject {
                group: "",
                resource: "pods",
                name: &name,
            },
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    if let Some(existing) = meta::path(&pod, "spec.nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(ApiError::conflict(
            Subject {
                group: "",
                resource: "pods",
                name: &name,
            },
            &format!("pod {name} is already assigned to node {existing:?}"),
        ));
    }
    let uid_pre = meta::path(&binding, "metadata.uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !uid_pre.is_empty() && uid_pre != meta::uid(&pod) {
        return Err(ApiError::conflict(
            Subject {
                group: "",
                resource: "pods",
                name: &name,
            },
            &format!(
                "Precondition failed: UID in precondition: {uid_pre}, UID in object meta: {}",
                meta::uid(&pod)
            ),
        ));
    }
    let mut updated = pod.clone();
    updated["spec"]["nodeName"] = json!(node);
    let mut conditions: Vec<Value> = meta::path(&pod, "status.conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
    if !updated.get("status").is_some_and(Value::is_object) {
        updated["status"] = json!({});
    }
    updated["status"]["conditions"] = json!(conditions);
    // Binding writes spec and status together, so it goes through a raw update of both.
    app.registry
        .bind_pod(&pods, namespace, &name, &pod, updated, &opts)
        .await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(respond(StatusCode::CREATED, &status, Format::Json))
}
