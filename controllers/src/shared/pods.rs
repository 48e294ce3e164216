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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut() {
        assert_eq!(generate_name_prefix("web"), "web-");
        assert_eq!(generate_name_prefix(&"x".repeat(80)).len(), 58);
    }
}
