//! Upstream's printer columns, kind by kind.
//!
//! The API server renders tables as upstream's server does, with every wide column's cells
//! filled in; clients hide the priority-1 columns unless asked for `-o wide`.

mod admission;
mod apps;
mod autoscaling;
mod batch;
mod core;
mod events;
mod misc;
mod networking;
mod pod;
mod rbac;
mod storage;
mod util;

use serde_json::Value;

use super::{Column, Printer};

/// A printer that is just its columns and a function computing one row's cells.
pub(super) struct Cells {
    pub columns: &'static [Column],
    pub cells: fn(&Value) -> Vec<Value>,
}

impl Printer for Cells {
    fn columns(&self) -> &'static [Column] {
        self.columns
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        (self.cells)(obj)
    }
}

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    match (group, kind) {
        ("", "Event") => return Some(&events::CORE),
        ("events.k8s.io", "Event") => return Some(&events::EVENTS_V1),
        _ => {}
    }
    core::lookup(group, kind)
        .or_else(|| apps::lookup(group, kind))
        .or_else(|| batch::lookup(group, kind))
        .or_else(|| autoscaling::lookup(group, kind))
        .or_else(|| networking::lookup(group, kind))
        .or_else(|| rbac::lookup(group, kind))
        .or_else(|| storage::lookup(group, kind))
        .or_else(|| admission::lookup(group, kind))
        .or_else(|| misc::lookup(group, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every printer must yield one cell per column, whatever shape the object has.
    #[test]
    fn cells_match_columns_for_odd_objects() {
        let odd = [
            serde_json::json!(null),
            serde_json::json!({}),
            serde_json::json!({"metadata": 1, "spec": [], "status": "x"}),
        ];
        for (group, kind) in KINDS {
            let printer =
                lookup(group, kind).unwrap_or_else(|| panic!("no printer for {group}/{kind}"));
            // Upstream's IPAddress rows carry an age cell its columns do not declare.
            let extra = usize::from(*kind == "IPAddress");
            for obj in &odd {
                assert_eq!(
                    printer.cells(obj).len(),
                    printer.columns().len() + extra,
                    "{group}/{kind}"
                );
            }
        }
    }

    const KINDS: &[(&str, &str)] = &[
        ("", "Namespace"),
        ("", "Pod"),
        ("", "PodTemplate"),
        ("", "ReplicationController"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "Node"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("", "ResourceQuota"),
        ("", "ComponentStatus"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("networking.k8s.io", "IPAddress"),
        ("networking.k8s.io", "ServiceCIDR"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "VolumeAttributesClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "CSIStorageCapacity"),
        ("storage.k8s.io", "VolumeAttachment"),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
        ),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
        ),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding",
        ),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
        (
            "admissionregistration.k8s.io",
            "MutatingAdmissionPolicyBinding",
        ),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("policy", "PodDisruptionBudget"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("certificates.k8s.io", "ClusterTrustBundle"),
        ("coordination.k8s.io", "Lease"),
        ("coordination.k8s.io", "LeaseCandidate"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("resource.k8s.io", "DeviceClass"),
        ("resource.k8s.io", "ResourceClaim"),
        ("resource.k8s.io", "ResourceClaimTemplate"),
        ("resource.k8s.io", "ResourceSlice"),
        ("internal.apiserver.k8s.io", "StorageVersion"),
        ("storagemigration.k8s.io", "StorageVersionMigration"),
        ("apiregistration.k8s.io", "APIService"),
    ];

    /// Kinds upstream prints with the default Name/Created At table.
    #[test]
    fn default_table_kinds_have_no_printer() {
        for (group, kind) in [
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("", "LimitRange"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            ("example.com", "Pod"),
        ] {
            assert!(lookup(group, kind).is_none(), "{group}/{kind}");
        }
    }
}
