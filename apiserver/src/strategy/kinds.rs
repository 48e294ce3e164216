//! Which strategy each built-in kind uses.

use super::{
    batch, config, core_v1, misc, networking, pod, rbac, scaling, service, workloads, NameRule,
    Strategy,
};

/// Kinds whose only special rule is that they track `metadata.generation`.
struct Generational;
impl Strategy for Generational {
    fn tracks_generation(&self) -> bool {
        true
    }
}

/// Kinds named by any path segment (RBAC and a few others).
struct PathNamed;
impl Strategy for PathNamed {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Strategy> {
    Some(match (group, kind) {
        ("", "Pod") => &pod::Pod,
        ("", "Namespace") => &core_v1::Namespace,
        ("", "Service") => &service::Service,
        ("", "Endpoints") => &service::Endpoints,
        ("discovery.k8s.io", "EndpointSlice") => &service::EndpointSlice,
        ("", "Secret") => &config::Secret,
        ("", "ConfigMap") => &config::ConfigMap,
        ("", "Event") | ("events.k8s.io", "Event") => &core_v1::Event,
        ("", "LimitRange") => &core_v1::LimitRange,
        ("", "ResourceQuota") => &core_v1::ResourceQuota,
        ("", "PersistentVolume") => &core_v1::PersistentVolume,
        ("", "PersistentVolumeClaim") => &core_v1::PersistentVolumeClaim,
        ("", "Node") => &core_v1::Node,
        ("", "ReplicationController") => &workloads::ReplicationController,
        ("", "PodTemplate") => &workloads::PodTemplate,
        ("apps", "ReplicaSet") => &workloads::ReplicaSet,
        ("apps", "Deployment") => &workloads::Deployment,
        ("apps", "StatefulSet") => &workloads::StatefulSet,
        ("apps", "DaemonSet") => &workloads::DaemonSet,
        ("apps", "ControllerRevision") => &workloads::ControllerRevision,
        ("batch", "Job") => &batch::Job,
        ("batch", "CronJob") => &batch::CronJob,
        ("certificates.k8s.io", "CertificateSigningRequest") => &misc::Csr,
        ("coordination.k8s.io", "Lease") => &misc::Lease,
        ("scheduling.k8s.io", "PriorityClass") => &misc::PriorityClass,
        ("node.k8s.io", "RuntimeClass") => &misc::RuntimeClass,
        ("storage.k8s.io", "StorageClass") => &misc::StorageClass,
        ("policy", "PodDisruptionBudget") => &scaling::PodDisruptionBudget,
        ("autoscaling", "HorizontalPodAutoscaler") => &scaling::HorizontalPodAutoscaler,
        ("networking.k8s.io", "Ingress") => &networking::Ingress,
        ("networking.k8s.io", "IngressClass") => &networking::IngressClass,
        ("networking.k8s.io", "NetworkPolicy") => &networking::NetworkPolicy,
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("admissionregistration.k8s.io", _)
        | ("flowcontrol.apiserver.k8s.io", _) => &Generational,
        ("rbac.authorization.k8s.io", "Role") => &rbac::Role,
        ("rbac.authorization.k8s.io", "ClusterRole") => &rbac::ClusterRole,
        ("rbac.authorization.k8s.io", "RoleBinding") => &rbac::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &rbac::ClusterRoleBinding,
        ("rbac.authorization.k8s.io", _) => &PathNamed,
        _ => return None,
    })
}
