//! Pods stamped from a controller's template, as upstream's PodControl creates them.

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The name prefix upstream gives a controller's pods: the owner's name and a dash, cut so
/// that the generated name stays a valid DNS label.
pub fn generate_name_prefix(owner: &str) -> String {
    const MAX: usize = 63 - 5;
    let mut prefix = format!("{owner}-");
    if prefix.len() > MAX {
        prefix.truncate(MAX);
    }
    prefix
}

/// A pod from `template` for an owner, with the owner as its controller.
pub fn from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner_ref: OwnerReference,
    prefix: &str,
) -> Pod {
    let t_meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix.to_string()),
            namespace: Some(namespace.to_string()),
            labels: t_meta.labels,
            annotations: t_meta.annotations,
            finalizers: t_meta.finalizers,
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's Ready condition last became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        cond.last_transition_time
            .as_ref()
            .map_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH, |t| t.0),
    )
}

/// Whether the pod's phase is Running.
pub fn is_running(pod: &Pod) -> bool {
    phase(pod) == "Running"
}

/// The pod's phase, empty when it has none yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod finished (Succeeded or Failed) and will never run again.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod is being deleted.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether the pod has been ready for `min_ready_seconds`; when it is ready but not yet for
/// long enough, also how long until it will be (so the caller can requeue for that moment).
pub fn availability(pod: &Pod, min_ready_seconds: i32) -> (bool, Option<std::time::Duration>) {
    let Some(since) = ready_since(pod) else {
        return (false, None);
    };
    if min_ready_seconds <= 0 {
        return (true, None);
    }
    let due = since
        .as_second()
        .saturating_add(i64::from(min_ready_seconds));
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    if due <= now {
        (true, None)
    } else {
        (
            false,
            Some(std::time::Duration::from_secs(
                u64::try_from(due - now).unwrap_or(1),
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut() {
        assert_eq!(generate_name_prefix("web"), "web-");
        assert_eq!(generate_name_prefix(&"x".repeat(80)).len(), 58);
    }
}
