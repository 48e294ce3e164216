//! The `token` subresource of ServiceAccounts: a TokenRequest (`authentication.k8s.io/v1`)
//! in, the same TokenRequest with a signed token in its status out, as upstream's
//! `TokenREST`.

use http::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::claims::{self, NewToken, Private, Ref};
use super::{jwt, lookup, now_unix};
use crate::encoding::Format;
use crate::http::{respond, Body};
use crate::meta;
use crate::server::App;
use crate::status::{ApiError, ApiResult, FieldError, Subject};

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";
/// Upstream's defaulting of `spec.expirationSeconds`.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 600;

/// Splits an `apiVersion` into group and version, as `schema.FromAPIVersionAndKind`.
fn group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// The typed reading upstream's decoder would do of the fields used here.
fn strings(v: Option<&Value>, field: &str) -> ApiResult<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {field}: expected string"
                    ))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {field}: expected an array"
        ))),
    }
}

fn string_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// POST `.../serviceaccounts/{name}/token`.
pub async fn create(
    app: &App,
    req: Request<hyper::body::Incoming>,
    namespace: Option<&str>,
    name: &str,
    format: Format,
) -> ApiResult<Response<Body>> {
    let sa_cfg = &app.service_accounts;
    let Some(signing) = sa_cfg.signing.as_ref() else {
        return Err(ApiError::path_not_found());
    };
    let namespace = namespace
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("namespace is required"))?;
    let mut body = crate::http::resource_body(req).await?;
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != "authentication.k8s.io/v1")
        || (!kind.is_empty() && kind != KIND)
    {
        return Err(ApiError::bad_request(format!(
            "the body of the request was of kind {kind} in version {api_version}, not a {KIND} in authentication.k8s.io/v1"
        )));
    }
    let body_name = meta::name(&body).to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::invalid(
            GROUP,
            KIND,
            name,
            &[FieldError::invalid(
                "metadata.name",
                body_name,
                "must match the service account name if specified",
            )],
        ));
    }
    let body_ns = meta::namespace(&body).to_string();
    if !body_ns.is_empty() && body_ns != namespace {
        return Err(ApiError::invalid(
            GROUP,
            KIND,
            name,
            &[FieldError::invalid(
                "metadata.namespace",
                body_ns,
                "must match the service account namespace if specified",
            )],
        ));
    }

    let accounts = app
        .table
        .lookup("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::internal("serviceaccounts are not served"))?;
    let sa = app
        .registry
        .get(&accounts, Some(namespace), name, None)
        .await?;

    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut audiences = strings(spec.get("audiences"), "spec.audiences")?;
    if audiences.is_empty() {
        audiences = sa_cfg.api_audiences.clone();
    }
    let mut expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(
                "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: spec.expirationSeconds: expected an integer",
            )
        })?,
    };
    let now = now_unix();

    let mut errs = Vec::new();
    if expiration < MIN_EXPIRATION_SECONDS {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > 1 << 32 {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(GROUP, KIND, "", &errs));
    }

    let mut private = Private {
        namespace: namespace.to_string(),
        service_account: Ref {
            name: meta::name(&sa).to_string(),
            uid: meta::uid(&sa).to_string(),
        },
        ..Default::default()
    };
    let bound = spec.get("boundObjectRef").filter(|r| !r.is_null());
    if let Some(r) = bound {
        bind(app, namespace, name, r, &mut private).await?;
    }

    let mut warnings = Vec::new();
    let max = sa_cfg.max_expiration_seconds;
    if max > 0 && expiration > max {
        warnings.push(format!(
            "requested expiration of {expiration} seconds shortened to {max} seconds"
        ));
        expiration = max;
    }
    // Projected tokens of the admission plugin's volume warn, rather than fail, after their
    // requested life; they really expire a year later (or at the maximum).
    let mut exp = expiration;
    let mut warn_after = 0;
    let kube_audiences = audiences.iter().all(|a| sa_cfg.api_audiences.contains(a));
    if sa_cfg.extend_expiration
        && private.pod.is_some()
        && expiration == claims::WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS
        && kube_audiences
    {
        warn_after = exp;
        exp = if max > 0 {
            max
        } else {
            claims::EXPIRATION_EXTENSION_SECONDS
        };
    }

    let jti = uuid::Uuid::new_v4().to_string();
    let issuer = sa_cfg.issuers[0].clone();
    let claims = claims::build(&NewToken {
        issuer: &issuer,
        audiences: &audiences,
        now,
        expiration_seconds: exp,
        warn_after,
        jti: &jti,
        private: &private,
    });
    let token = jwt::sign(signing, &claims)
        .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;

    let created = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
    let expires = chrono::DateTime::from_timestamp(now + expiration, 0).unwrap_or_default();
    let rfc3339 =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut out_spec = json!({"audiences": audiences, "expirationSeconds": expiration});
    if let Some(r) = bound {
        out_spec["boundObjectRef"] = r.clone();
    }
    let mut metadata = body
        .get("metadata")
        .filter(|m| m.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    metadata["name"] = json!(meta::name(&sa));
    metadata["namespace"] = json!(namespace);
    metadata["creationTimestamp"] = json!(rfc3339(created));
    body = json!({
        "kind": KIND,
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": metadata,
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(expires)},
    });
    let mut resp = respond(StatusCode::CREATED, &body, format);
    for w in warnings {
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - {}", Value::from(w))) {
            resp.headers_mut().append("warning", v);
        }
    }
    Ok(resp)
}

/// Checks the object a token is bound to and records it in the claims.
async fn bind(
    app: &App,
    namespace: &str,
    sa_name: &str,
    r: &Value,
    private: &mut Private,
) -> ApiResult<()> {
    let (group, version) = group_version(string_field(r, "apiVersion"));
    let kind = string_field(r, "kind");
    let ref_name = string_field(r, "name");
    let ref_uid = string_field(r, "uid");
    let uid = match (group, kind) {
        ("", "Pod") => {
            let pod = lookup_live(app, "pods", Some(namespace), ref_name).await?;
            let runs_as = meta::path(&pod, "spec.serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if runs_as != sa_name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            let node_name = meta::path(&pod, "spec.nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !node_name.is_empty() {
                let node_uid = match lookup(&app.registry, "nodes", None, node_name).await {
                    Ok(node) => meta::uid(&node).to_string(),
                    // A missing node still leaves its name in the claims.
                    Err(e) if e.code == 404 => String::new(),
                    Err(e) => {
                        return Err(ApiError::internal(format!(
                            "Internal error occurred: {}",
                            e.message
                        )))
                    }
                };
                private.node = Some(Ref {
                    name: node_name.to_string(),
                    uid: node_uid,
                });
            }
            let uid = meta::uid(&pod).to_string();
            private.pod = Some(Ref {
                name: meta::name(&pod).to_string(),
                uid: uid.clone(),
            });
            uid
        }
        ("", "Node") => {
            let node = lookup_live(app, "nodes", None, ref_name).await?;
            let uid = meta::uid(&node).to_string();
            private.node = Some(Ref {
                name: meta::name(&node).to_string(),
                uid: uid.clone(),
            });
            uid
        }
        ("", "Secret") => {
            let secret = lookup_live(app, "secrets", Some(namespace), ref_name).await?;
            let uid = meta::uid(&secret).to_string();
            private.secret = Some(Ref {
                name: meta::name(&secret).to_string(),
                uid: uid.clone(),
            });
            uid
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )))
        }
    };
    if !ref_uid.is_empty() && ref_uid != uid {
        return Err(ApiError::conflict(
            Subject {
                group,
                resource: kind,
                name: ref_name,
            },
            &format!(
                "the UID in the bound object reference ({ref_uid}) does not match the UID in record. \
                 The object might have been deleted and then recreated"
            ),
        ));
    }
    Ok(())
}

/// A read from the store, as upstream's REST getters do.
async fn lookup_live(
    app: &App,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let res = app
        .table
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))?;
    app.registry.get(&res, namespace, name, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_split_as_upstream() {
        assert_eq!(group_version("v1"), ("", "v1"));
        assert_eq!(group_version("apps/v1"), ("apps", "v1"));
        assert_eq!(group_version(""), ("", ""));
    }
}
