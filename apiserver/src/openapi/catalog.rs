//! The `k8s-openapi` types whose JSON schemas can be published, by definition name.
//!
//! The resource table names kinds by their OpenAPI definition name (a string), while schemas
//! come from `JsonSchema` impls (types), so this is the bridge between the two. Every kind
//! `k8s-openapi` generates for v1.33 is listed, not only the ones served today, so that a row
//! added to the table finds its schema without touching this file. Types that only appear as
//! fields of these are pulled in by the generator itself.

use std::collections::HashMap;
use std::sync::LazyLock;

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
use schemars::{JsonSchema, SchemaGenerator};

type Add = fn(&mut SchemaGenerator);

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

macro_rules! catalog {
    ($($ty:ty),* $(,)?) => {
        fn entries() -> Vec<(String, Add)> {
            vec![$((<$ty as JsonSchema>::schema_name().into_owned(), add::<$ty> as Add)),*]
        }
    };
}

catalog![
    // Types the API machinery itself serves: errors, options, watch events, discovery.
    meta::APIGroup,
    meta::APIGroupList,
    meta::APIResourceList,
    meta::APIVersions,
    meta::DeleteOptions,
    meta::Patch,
    meta::Status,
    meta::WatchEvent<RawExtension>,
    k8s_openapi::apimachinery::pkg::version::Info,
    // Every kind of v1.33.
    api::admissionregistration::v1::MutatingWebhookConfiguration,
    api::admissionregistration::v1::ValidatingAdmissionPolicy,
    api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    api::admissionregistration::v1::ValidatingWebhookConfiguration,
    api::admissionregistration::v1alpha1::MutatingAdmissionPolicy,
    api::admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding,
    api::admissionregistration::v1beta1::ValidatingAdmissionPolicy,
    api::admissionregistration::v1beta1::ValidatingAdmissionPolicyBinding,
    api::apiserverinternal::v1alpha1::StorageVersion,
    api::apps::v1::ControllerRevision,
    api::apps::v1::DaemonSet,
    api::apps::v1::Deployment,
    api::apps::v1::ReplicaSet,
    api::apps::v1::StatefulSet,
    api::authentication::v1::SelfSubjectReview,
    api::authentication::v1::TokenRequest,
    api::authentication::v1::TokenReview,
    api::authorization::v1::LocalSubjectAccessReview,
    api::authorization::v1::SelfSubjectAccessReview,
    api::authorization::v1::SelfSubjectRulesReview,
    api::authorization::v1::SubjectAccessReview,
    api::autoscaling::v1::HorizontalPodAutoscaler,
    api::autoscaling::v1::Scale,
    api::autoscaling::v2::HorizontalPodAutoscaler,
    api::batch::v1::CronJob,
    api::batch::v1::Job,
    api::certificates::v1::CertificateSigningRequest,
    api::certificates::v1alpha1::ClusterTrustBundle,
    api::certificates::v1beta1::ClusterTrustBundle,
    api::coordination::v1::Lease,
    api::coordination::v1alpha2::LeaseCandidate,
    api::coordination::v1beta1::LeaseCandidate,
    api::core::v1::Binding,
    api::core::v1::ComponentStatus,
    api::core::v1::ConfigMap,
    api::core::v1::Endpoints,
    api::core::v1::Event,
    api::core::v1::LimitRange,
    api::core::v1::Namespace,
    api::core::v1::Node,
    api::core::v1::PersistentVolume,
    api::core::v1::PersistentVolumeClaim,
    api::core::v1::Pod,
    api::core::v1::PodTemplate,
    api::core::v1::ReplicationController,
    api::core::v1::ResourceQuota,
    api::core::v1::Secret,
    api::core::v1::Service,
    api::core::v1::ServiceAccount,
    api::discovery::v1::EndpointSlice,
    api::events::v1::Event,
    api::flowcontrol::v1::FlowSchema,
    api::flowcontrol::v1::PriorityLevelConfiguration,
    api::networking::v1::IPAddress,
    api::networking::v1::Ingress,
    api::networking::v1::IngressClass,
    api::networking::v1::NetworkPolicy,
    api::networking::v1::ServiceCIDR,
    api::networking::v1beta1::IPAddress,
    api::networking::v1beta1::ServiceCIDR,
    api::node::v1::RuntimeClass,
    api::policy::v1::Eviction,
    api::policy::v1::PodDisruptionBudget,
    api::rbac::v1::ClusterRole,
    api::rbac::v1::ClusterRoleBinding,
    api::rbac::v1::Role,
    api::rbac::v1::RoleBinding,
    api::resource::v1alpha3::DeviceClass,
    api::resource::v1alpha3::DeviceTaintRule,
    api::resource::v1alpha3::ResourceClaim,
    api::resource::v1alpha3::ResourceClaimTemplate,
    api::resource::v1alpha3::ResourceSlice,
    api::resource::v1beta1::DeviceClass,
    api::resource::v1beta1::ResourceClaim,
    api::resource::v1beta1::ResourceClaimTemplate,
    api::resource::v1beta1::ResourceSlice,
    api::resource::v1beta2::DeviceClass,
    api::resource::v1beta2::ResourceClaim,
    api::resource::v1beta2::ResourceClaimTemplate,
    api::resource::v1beta2::ResourceSlice,
    api::scheduling::v1::PriorityClass,
    api::storage::v1::CSIDriver,
    api::storage::v1::CSINode,
    api::storage::v1::CSIStorageCapacity,
    api::storage::v1::StorageClass,
    api::storage::v1::VolumeAttachment,
    api::storage::v1alpha1::VolumeAttributesClass,
    api::storage::v1beta1::VolumeAttributesClass,
    api::storagemigration::v1alpha1::StorageVersionMigration,
    apiextensions::v1::CustomResourceDefinition,
    apiregistration::v1::APIService,
];

static CATALOG: LazyLock<HashMap<String, Add>> = LazyLock::new(|| entries().into_iter().collect());

/// Adds the schema of the named definition (and of everything it refers to) to the generator;
/// false when no `k8s-openapi` type has that name.
pub fn add_definition(generator: &mut SchemaGenerator, name: &str) -> bool {
    match CATALOG.get(name) {
        Some(add) => {
            add(generator);
            true
        }
        None => false,
    }
}

/// A generator whose references point at `#/definitions/<name>`, as swagger 2.0 wants; v3
/// rewrites them. No transforms: upstream's v2 keeps a `description` beside each `$ref`.
pub fn generator() -> SchemaGenerator {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.definitions_path = "/definitions".into();
    settings.meta_schema = None;
    settings.transforms.clear();
    settings.into_generator()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_upstream_definition_names() {
        let mut generator = generator();
        assert!(add_definition(&mut generator, "io.k8s.api.core.v1.Pod"));
        assert!(!add_definition(
            &mut generator,
            "io.k8s.api.core.v1.NoSuchKind"
        ));
        let definitions = generator.take_definitions(false);
        assert!(definitions.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(definitions.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        let reference = &definitions["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["$ref"];
        assert_eq!(reference, "#/definitions/io.k8s.api.core.v1.PodSpec");
    }
}
