//! The Priority admission plugin, as upstream's: a new pod gets `spec.priority` and
//! `spec.preemptionPolicy` from its PriorityClass (or the global default class, or 0 and
//! PreemptLowerPriority when there is none), and is refused when it names a missing class or
//! sets either field to something else.

use serde_json::{json, Value};

use crate::meta;
use crate::registry::{ListQuery, Registry};
use crate::status::{ApiError, ApiResult, Subject};

/// The built-in classes only system pods may use.
const SYSTEM_CLASSES: [&str; 2] = ["system-node-critical", "system-cluster-critical"];

fn forbidden(pod: &Value, why: &str) -> ApiError {
    ApiError::forbidden(
        Subject {
            group: "",
            resource: "pods",
            name: meta::name(pod),
        },
        why,
    )
}

/// The PriorityClasses, from the cache as it is (like upstream's lister) or, with
/// `consistent`, as of the store's latest revision.
async fn priority_classes(reg: &Registry, consistent: bool) -> ApiResult<Vec<Value>> {
    let res = reg
        .table
        .lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("priorityclasses are not served"))?;
    let q = ListQuery {
        resource_version: (!consistent).then(|| "0".to_string()),
        ..Default::default()
    };
    let page = reg.list(&res, None, &q).await?;
    Ok(page.items.iter().map(|o| o.value.clone()).collect())
}

pub async fn admit(reg: &Registry, pod: &mut Value) -> ApiResult<()> {
    let namespace = meta::namespace(pod).to_string();
    let class_name = meta::path(pod, "spec.priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut classes = priority_classes(reg, false).await?;
    // A class created a moment ago may not be in the cache yet: look again at the latest
    // state before refusing the pod for it.
    if !class_name.is_empty() && !classes.iter().any(|c| meta::name(c) == class_name) {
        classes = priority_classes(reg, true).await?;
    }
    let (name, priority, policy) = if class_name.is_empty() {
        match classes
            .iter()
            .find(|c| c["globalDefault"].as_bool() == Some(true))
        {
            Some(c) => (
                meta::name(c).to_string(),
                c["value"].as_i64().unwrap_or(0),
                c["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
                    .to_string(),
            ),
            None => (String::new(), 0, "PreemptLowerPriority".to_string()),
        }
    } else {
        if SYSTEM_CLASSES.contains(&class_name.as_str()) && namespace != "kube-system" {
            return Err(forbidden(
                pod,
                &format!(
                    "pods with {class_name} priorityClass is not permitted in {namespace} namespace"
                ),
            ));
        }
        let Some(c) = classes.iter().find(|c| meta::name(c) == class_name) else {
            return Err(forbidden(
                pod,
                &format!("no PriorityClass with name {class_name} was found"),
            ));
        };
        (
            class_name.clone(),
            c["value"].as_i64().unwrap_or(0),
            c["preemptionPolicy"]
                .as_str()
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
        )
    };
    let spec = match pod.get_mut("spec").and_then(Value::as_object_mut) {
        Some(s) => s,
        None => return Ok(()),
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(forbidden(
                pod,
                &format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; \
                     priority admission controller computed {priority} from the given PriorityClass name"
                ),
            ));
        }
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str) {
        if given != policy {
            let given = given.to_string();
            return Err(forbidden(
                pod,
                &format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; \
                     priority admission controller computed {policy} from the given PriorityClass name"
                ),
            ));
        }
    }
    if !name.is_empty() {
        spec.insert("priorityClassName".into(), json!(name));
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}
