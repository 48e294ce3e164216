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
    user.to_user_info()
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
            if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
                return Err(ApiError::bad_request(format!(
                    "namespace is not allowed on this type: {ns}"
                )));
            }
            let token = crate::meta::path(&body, "spec.token")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if token.is_empty() {
                return Err(ApiError::bad_request(
                    "token is required for TokenReview in authentication",
                ));
            }
            let audiences: Vec<String> = crate::meta::path(&body, "spec.audiences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            body["status"] = match crate::authn::authenticate_token(app, &token, Some(&audiences))
                .await
            {
                Ok(a) => {
                    let mut status = json!({"authenticated": true, "user": a.user.to_user_info()});
                    if !a.audiences.is_empty() {
                        status["audiences"] = json!(a.audiences);
                    }
                    status
                }
                Err(e) => json!({"user": {}, "error": e}),
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
