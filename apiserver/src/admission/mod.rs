//! Admission that every write goes through: namespace lifecycle, as upstream's
//! NamespaceLifecycle plugin (nothing new in a namespace that is missing or terminating, and
//! the system namespaces cannot be deleted), and the mutating plugins that run before
//! validation (`ServiceAccount` in `crate::serviceaccount::admission`, then `priority`).

mod priority;

use serde_json::{json, Value};

use crate::meta;
use crate::registry::Registry;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult, Subject};

/// Namespaces that exist from the start and cannot be deleted.
pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The admission plugins that can be turned off (`--disable-admission-plugins`).
#[derive(Clone, Debug)]
pub struct Plugins {
    pub service_account: bool,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            service_account: true,
        }
    }
}

impl Plugins {
    /// The default plugins less the named ones.
    pub fn without(disabled: &[String]) -> Result<Plugins, String> {
        let mut plugins = Plugins::default();
        for name in disabled {
            match name.as_str() {
                "ServiceAccount" => plugins.service_account = false,
                other => {
                    return Err(format!(
                        "admission plugin {other:?} cannot be disabled in this build (ServiceAccount can)"
                    ))
                }
            }
        }
        Ok(plugins)
    }
}

/// Mutating admission on create, run after defaulting and before validation.
pub async fn mutate_create(reg: &Registry, res: &Resource, obj: &mut Value) -> ApiResult<()> {
    if res.group.is_empty() && res.plural == "pods" {
        if reg.admission.service_account {
            // NamespaceLifecycle comes first upstream: a pod for a missing namespace is
            // refused for that, not for its missing account.
            admit_create(reg, res, obj).await?;
            crate::serviceaccount::admission::admit(reg, obj).await?;
        }
        priority::admit(reg, obj).await?;
    }
    Ok(())
}

pub async fn admit_create(reg: &Registry, res: &Resource, obj: &Value) -> ApiResult<()> {
    if !res.namespaced {
        return Ok(());
    }
    let ns = meta::namespace(obj);
    let namespaces = reg
        .table
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
    let found = match reg.get(&namespaces, None, ns, Some("0")).await {
        Ok(n) => Some(n),
        // The cache may lag a namespace created a moment ago: ask the store itself.
        Err(e) if e.code == 404 => match reg.get(&namespaces, None, ns, None).await {
            Ok(n) => Some(n),
            Err(e) if e.code == 404 => None,
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let Some(namespace) = found else {
        return Err(ApiError::not_found(Subject {
            group: "",
            resource: "namespaces",
            name: ns,
        }));
    };
    let terminating = meta::deletion_timestamp(&namespace).is_some()
        || meta::path(&namespace, "status.phase").and_then(Value::as_str) == Some("Terminating");
    if terminating {
        let mut e = ApiError::forbidden(
            Subject {
                group: &res.group,
                resource: &res.plural,
                name: meta::name(obj),
            },
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        );
        if let Some(d) = e.details.as_mut() {
            d["causes"] = json!([{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {ns} is being terminated"),
                "field": "metadata.namespace",
            }]);
        }
        return Err(e);
    }
    Ok(())
}

pub fn admit_delete(res: &Resource, name: &str) -> ApiResult<()> {
    if res.group.is_empty() && res.kind == "Namespace" && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            Subject {
                group: "",
                resource: "namespaces",
                name,
            },
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}
