//! Resource requests: one function per verb, each reading the request, calling the registry
//! and encoding the answer in the shape the client asked for.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{body, query_value, respond, Body, MAX_BODY};
use crate::authn::User;
use crate::encoding::{self, BodyFormat, Format, Negotiated, Shape};
use crate::registry::{strategy_of, DeleteOutcome, ListQuery, PatchKind, WriteOptions};
use crate::request::ResourceRequest;
use crate::resources::Resource;
use crate::server::App;
use crate::status::{ApiError, ApiResult};
use crate::watchcache::CachedObject;

type Req = Request<hyper::body::Incoming>;

pub async fn serve(
    app: Arc<App>,
    req: Req,
    info: ResourceRequest,
    query: Vec<(String, String)>,
    user: User,
) -> ApiResult<Response<Body>> {
    let res = app
        .table
        .lookup(&info.group, &info.version, &info.resource)
        .ok_or_else(ApiError::path_not_found)?;
    // A cluster-scoped resource has no namespaced path (namespaces themselves aside).
    if !res.namespaced && info.namespace.is_some() && res.plural != "namespaces" {
        return Err(ApiError::path_not_found());
    }
    let namespace = if res.plural == "namespaces" {
        None
    } else {
        info.namespace.clone()
    };

    if let Some(sub) = &info.subresource {
        let Some(s) = res.subresources.iter().find(|s| s.name == sub) else {
            return Err(ApiError::path_not_found());
        };
        // Proxies pass any method on, OPTIONS included.
        let proxied_options = s.name == "proxy" && req.method() == http::Method::OPTIONS;
        if !s.verbs.contains(&info.verb) && !proxied_options {
            return Err(ApiError::method_not_allowed());
        }
        return crate::subresources::serve(
            app,
            req,
            &res,
            namespace.as_deref(),
            &info,
            query,
            user,
        )
        .await;
    }
    if info.verb.is_empty() || !res.allows(info.verb) {
        return Err(ApiError::method_not_allowed());
    }
    if crate::virtual_resources::is_virtual(&res) {
        if info.verb == "create" {
            let body = read_object(req).await?;
            let out =
                crate::virtual_resources::create(&app, &res, namespace.as_deref(), body, &user)
                    .await?;
            return Ok(respond(StatusCode::CREATED, &out, Format::Json));
        }
        let out = crate::virtual_resources::read(&app, &res, info.name.as_deref()).await?;
        return Ok(respond(StatusCode::OK, &out, Format::Json));
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let negotiated = encoding::negotiate(accept.as_deref(), true)?;
    let namespace = namespace.as_deref();
    match info.verb {
        "get" => {
            let name = info.name.as_deref().unwrap_or("");
            let obj = app
                .registry
                .get(
                    &res,
                    namespace,
                    name,
                    query_value(&query, "resourceVersion"),
                )
                .await?;
            Ok(single(&res, obj, negotiated, &query, StatusCode::OK))
        }
        "list" => list(&app, &res, namespace, &query, negotiated).await,
        "watch" => super::watch::serve(app.clone(), res, namespace, &query, negotiated).await,
        "create" => {
            let opts = write_options(&query)?;
            let obj = read_checked(req, &opts).await?;
            let created = app.registry.create(&res, namespace, obj, &opts).await?;
            Ok(with_warnings(
                single(&res, created, negotiated, &query, StatusCode::CREATED),
                &opts,
            ))
        }
        "update" => {
            let opts = write_options(&query)?;
            let name = info.name.as_deref().unwrap_or("");
            let obj = read_checked(req, &opts).await?;
            let (stored, created) = app
                .registry
                .update(&res, namespace, name, None, obj, &opts)
                .await?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(
                single(&res, stored, negotiated, &query, code),
                &opts,
            ))
        }
        "patch" => {
            let opts = write_options(&query)?;
            let name = info.name.as_deref().unwrap_or("");
            let (kind, patch) = read_patch(req).await?;
            let out = app
                .registry
                .patch(&res, namespace, name, None, kind, &patch, &opts)
                .await?;
            Ok(with_warnings(
                single(&res, out, negotiated, &query, StatusCode::OK),
                &opts,
            ))
        }
        "delete" => {
            let opts = write_options(&query)?;
            let name = info.name.as_deref().unwrap_or("");
            let options = delete_options(req, &query).await?;
            // Upstream answers 202 only for a pending delete that asked for cascading through
            // the deprecated orphanDependents=false; everything else is a 200.
            let cascading = options.get("orphanDependents") == Some(&json!(false));
            match app
                .registry
                .delete(&res, namespace, name, &options, &opts)
                .await?
            {
                DeleteOutcome::Deleted(v) => Ok(respond(StatusCode::OK, &v, negotiated.format)),
                DeleteOutcome::Pending(v) if cascading => {
                    Ok(respond(StatusCode::ACCEPTED, &v, negotiated.format))
                }
                DeleteOutcome::Pending(v) => Ok(respond(StatusCode::OK, &v, negotiated.format)),
            }
        }
        "deletecollection" => {
            let opts = write_options(&query)?;
            let options = delete_options(req, &query).await?;
            let q = ListQuery::parse(&query, &res, strategy_of(&res))?;
            let page = app.registry.list(&res, namespace, &q).await?;
            let mut deleted = Vec::new();
            for obj in page.items {
                let ns = crate::meta::namespace(&obj.value).to_string();
                let ns = if ns.is_empty() {
                    None
                } else {
                    Some(ns.as_str())
                };
                match app
                    .registry
                    .delete(&res, ns, crate::meta::name(&obj.value), &options, &opts)
                    .await
                {
                    Ok(DeleteOutcome::Deleted(_)) | Ok(DeleteOutcome::Pending(_)) => {
                        deleted.push(app.registry.convert_out(&res, obj.value.clone()))
                    }
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({
                "kind": res.list_kind,
                "apiVersion": res.api_version(),
                "metadata": {"resourceVersion": page.revision.to_string()},
                "items": deleted,
            });
            Ok(respond(StatusCode::OK, &list, negotiated.format))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Reads `dryRun` and checks it.
pub fn write_options(query: &[(String, String)]) -> ApiResult<WriteOptions> {
    let mut opts = WriteOptions::default();
    for (k, v) in query {
        if k == "dryRun" {
            if v == "All" {
                opts.dry_run = true;
            } else if !v.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "Invalid dry run value: {v:?}: supported values: \"All\""
                )));
            }
        }
        if k == "fieldValidation" {
            opts.field_validation = crate::fieldvalidation::Mode::parse(Some(v))?;
        }
    }
    Ok(opts)
}

/// Reads a JSON or YAML object body, reporting duplicate fields as field validation says.
pub async fn read_checked(req: Req, opts: &WriteOptions) -> ApiResult<Value> {
    let is_json = matches!(
        encoding::body_format(
            req.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
        ),
        Some(BodyFormat::Json)
    );
    let (value, raw) = read_raw(req).await?;
    if is_json && opts.field_validation != crate::fieldvalidation::Mode::Ignore {
        let dups = crate::fieldvalidation::duplicate_fields(&raw);
        if !dups.is_empty() {
            if opts.field_validation == crate::fieldvalidation::Mode::Strict {
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    dups.join(", ")
                )));
            }
            opts.warn(dups);
        }
    }
    Ok(value)
}

/// Adds the warnings a write collected as `Warning` headers, as upstream does.
pub fn with_warnings(mut resp: Response<Body>, opts: &WriteOptions) -> Response<Body> {
    for w in opts.take_warnings() {
        let text = format!("299 - {}", Value::from(w));
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// Reads a JSON or YAML object body.
pub async fn read_object(req: Req) -> ApiResult<Value> {
    read_raw(req).await.map(|(v, _)| v)
}

async fn read_raw(req: Req) -> ApiResult<(Value, Bytes)> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let format = match encoding::body_format(ct.as_deref()) {
        Some(f @ (BodyFormat::Json | BodyFormat::Yaml | BodyFormat::Protobuf)) => f,
        _ => {
            return Err(ApiError::unsupported_media_type(
                "application/json, application/yaml, application/vnd.kubernetes.protobuf",
            ))
        }
    };
    let bytes = body::read_limited(req.into_body(), MAX_BODY).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let v = encoding::decode(&bytes, format)?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok((v, bytes))
}

/// Reads a patch body and its type from the Content-Type.
pub async fn read_patch(req: Req) -> ApiResult<(PatchKind, Value)> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let kind = match encoding::body_format(Some(&ct)) {
        Some(BodyFormat::JsonPatch) => PatchKind::Json,
        Some(BodyFormat::MergePatch) => PatchKind::Merge,
        Some(BodyFormat::StrategicMergePatch) => PatchKind::Strategic,
        Some(BodyFormat::ApplyPatch) => {
            return Err(ApiError::unsupported_media_type(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (server-side apply is not supported by this server yet)",
            ))
        }
        _ => {
            return Err(ApiError::unsupported_media_type(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml",
            ))
        }
    };
    let bytes = body::read_limited(req.into_body(), MAX_BODY).await?;
    let patch: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    Ok((kind, patch))
}

/// DeleteOptions from the body (if any) and the query string.
async fn delete_options(req: Req, query: &[(String, String)]) -> ApiResult<Value> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = body::read_limited(req.into_body(), MAX_BODY).await?;
    let mut options = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        json!({})
    } else {
        let format = encoding::body_format(ct.as_deref()).unwrap_or(BodyFormat::Json);
        encoding::decode(&bytes, format)?
    };
    if !options.is_object() {
        return Err(ApiError::bad_request("DeleteOptions must be an object"));
    }
    for (k, v) in query {
        match k.as_str() {
            "gracePeriodSeconds" => {
                let n: i64 = v.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds {v:?}"))
                })?;
                options["gracePeriodSeconds"] = json!(n);
            }
            "propagationPolicy" => options["propagationPolicy"] = json!(v),
            "orphanDependents" => options["orphanDependents"] = json!(v == "true"),
            _ => {}
        }
    }
    Ok(options)
}

/// The response for one object in the negotiated shape.
pub fn single(
    res: &Resource,
    obj: Value,
    n: Negotiated,
    query: &[(String, String)],
    code: StatusCode,
) -> Response<Body> {
    match n.shape {
        Shape::Object => respond(code, &obj, n.format),
        Shape::Metadata => respond(code, &crate::table::partial_metadata(&obj), n.format),
        Shape::Table => {
            let include = query_value(query, "includeObject").unwrap_or("Metadata");
            let table = crate::table::to_table(
                res,
                &[&obj],
                &json!({"resourceVersion": crate::meta::resource_version(&obj)}),
                include,
                false,
            );
            respond(code, &table, n.format)
        }
    }
}

async fn list(
    app: &App,
    res: &Resource,
    namespace: Option<&str>,
    query: &[(String, String)],
    n: Negotiated,
) -> ApiResult<Response<Body>> {
    let q = ListQuery::parse(query, res, strategy_of(res))?;
    let page = app.registry.list(res, namespace, &q).await?;
    let mut list_meta = json!({ "resourceVersion": page.revision.to_string() });
    if let Some(c) = &page.continue_token {
        list_meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        list_meta["remainingItemCount"] = json!(r);
    }
    let converted: Vec<Value>;
    let needs_conversion = crate::convert::storage_version(res) != res.api_version();
    match n.shape {
        Shape::Table => {
            converted = page
                .items
                .iter()
                .map(|o| app.registry.convert_out(res, o.value.clone()))
                .collect();
            let refs: Vec<&Value> = converted.iter().collect();
            let include = query_value(query, "includeObject").unwrap_or("Metadata");
            let table = crate::table::to_table(res, &refs, &list_meta, include, false);
            Ok(respond(StatusCode::OK, &table, n.format))
        }
        Shape::Metadata => {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|o| crate::table::partial_metadata(&o.value))
                .collect();
            let list = json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta,
                "items": items,
            });
            Ok(respond(StatusCode::OK, &list, n.format))
        }
        Shape::Object if n.format == Format::Json && !needs_conversion => {
            Ok(super::bytes_response(
                StatusCode::OK,
                json_list(res, &list_meta, &page.items),
                "application/json",
            ))
        }
        Shape::Object => {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|o| app.registry.convert_out(res, o.value.clone()))
                .collect();
            let list = json!({
                "kind": res.list_kind,
                "apiVersion": res.api_version(),
                "metadata": list_meta,
                "items": items,
            });
            Ok(respond(StatusCode::OK, &list, n.format))
        }
    }
}

/// A JSON list assembled from each object's cached serialisation, without re-encoding.
fn json_list(res: &Resource, list_meta: &Value, items: &[Arc<CachedObject>]) -> Bytes {
    let head = format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
        Value::from(res.list_kind.as_str()),
        Value::from(res.api_version()),
        list_meta
    );
    let size = head.len() + 2 + items.iter().map(|o| o.json().len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(head.as_bytes());
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(o.json());
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}
