//! Resources that are answered, not stored: the access and identity reviews, core
//! `bindings`, and `componentstatuses`.
//!
//! Authorization is AlwaysAllow until the authorization component lands, so access reviews
//! answer as upstream's AlwaysAllow authorizer does.

use serde_json::{json, Value};

use crate::authn::User;
use crate::resources::{Resource, Storage};
use crate::server::App;
use crate::status::{ApiError, ApiResult, FieldError};

pub fn is_virtual(res: &Resource) -> bool {
    matches!(res.storage, Storage::Virtual)
}

fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    info
}

/// POST to a review (or `bindings`): the request object comes back with its status filled.
pub async fn create(
    app: &App,
    res: &Resource,
    namespace: Option<&str>,
    mut body: Value,
    user: &User,
) -> ApiResult<Value> {
    body["apiVersion"] = json!(res.api_version());
    body["kind"] = json!(res.kind);
    match res.kind.as_str() {
        "Binding" => {
            let name = crate::meta::name(&body).to_string();
            crate::subresources::bind(app, namespace, &name, body.clone(), &[]).await?;
            Ok(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            )
        }
        "SelfSubjectReview" => {
            body["status"] = json!({"userInfo": user_info(user)});
            Ok(body)
        }
        "TokenReview" => {
            let token = crate::meta::path(&body, "spec.token")
                .and_then(Value::as_str)
                .unwrap_or("");
            if token.is_empty() {
                return Err(ApiError::invalid(
                    "authentication.k8s.io",
                    "TokenReview",
                    "",
                    &[FieldError::required("spec.token", "")],
                ));
            }
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            body["status"] = match app.tokens.authenticate(&headers) {
                Some(u) => {
                    json!({"authenticated": true, "user": user_info(&u), "audiences": body["spec"]["audiences"].clone()})
                }
                None => json!({"authenticated": false, "error": "token not recognised"}),
            };
            Ok(body)
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" | "SelfSubjectAccessReview" => {
            let spec = body.get("spec").cloned().unwrap_or(Value::Null);
            let has_attrs = spec.get("resourceAttributes").is_some()
                || spec.get("nonResourceAttributes").is_some();
            if !has_attrs {
                return Err(ApiError::invalid(
                    &res.group,
                    &res.kind,
                    "",
                    &[FieldError::invalid(
                        "spec.resourceAttributes",
                        Value::Null,
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    )],
                ));
            }
            if res.kind == "LocalSubjectAccessReview" {
                let ns = spec["resourceAttributes"]["namespace"]
                    .as_str()
                    .unwrap_or("");
                if Some(ns) != namespace {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {}",
                        namespace.unwrap_or("")
                    )));
                }
            }
            body["status"] = json!({"allowed": true});
            Ok(body)
        }
        "SelfSubjectRulesReview" => {
            body["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
            Ok(body)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// GET of `componentstatuses`: the health of the store behind the server.
pub async fn read(app: &App, res: &Resource, name: Option<&str>) -> ApiResult<Value> {
    if res.kind != "ComponentStatus" {
        return Err(ApiError::method_not_allowed());
    }
    let healthy = app.registry.store.current_revision().await;
    let condition = match healthy {
        Ok(_) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Err(e) => json!({"type": "Healthy", "status": "False", "error": e.to_string()}),
    };
    let item = json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": "etcd-0"},
        "conditions": [condition],
    });
    match name {
        Some("etcd-0") => Ok(item),
        Some(other) => Err(crate::registry::not_found(res, other)),
        None => Ok(
            json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": [item]}),
        ),
    }
}
