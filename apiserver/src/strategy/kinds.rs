//! Which strategy each built-in kind uses.

use serde_json::{json, Value};

use super::{NameRule, Strategy};

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

struct Pod;
impl Strategy for Pod {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let s = |p: &str| crate::meta::path(obj, p).and_then(Value::as_str).unwrap_or("").to_string();
        Some(match field {
            "spec.hostNetwork" => crate::meta::path(obj, field)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            "status.podIPs" => crate::meta::path(obj, "status.podIPs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|ip| ip.get("ip"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            other => s(other),
        })
    }
}

struct Namespace;
impl Strategy for Namespace {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({ "phase": "Active" });
        // Every namespace carries the `kubernetes` finalizer until its content is gone.
        let spec = obj
            .as_object_mut()
            .map(|o| o.entry("spec").or_insert_with(|| json!({})));
        if let Some(spec) = spec {
            if !spec.is_object() {
                *spec = json!({});
            }
            let finalizers = spec
                .as_object_mut()
                .map(|s| s.entry("finalizers").or_insert_with(|| json!([])));
            if let Some(Value::Array(list)) = finalizers {
                if !list.iter().any(|f| f == "kubernetes") {
                    list.push(json!("kubernetes"));
                }
            }
        }
    }
    fn defaults(&self, obj: &mut Value) {
        // The name label is set by the server and cannot be changed.
        let name = crate::meta::name(obj).to_string();
        let meta = crate::meta::metadata_mut(obj);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = json!(name);
    }
}

struct Service;
impl Strategy for Service {
    fn name_rule(&self) -> NameRule {
        NameRule::Label1035
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }
}

struct Secret;
impl Strategy for Secret {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }
    fn defaults(&self, obj: &mut Value) {
        if obj.get("type").map_or(true, |t| t.as_str().map_or(true, str::is_empty)) {
            obj["type"] = json!("Opaque");
        }
    }
}

struct Event;
impl Strategy for Event {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let s = |p: &str| crate::meta::path(obj, p).and_then(Value::as_str).unwrap_or("").to_string();
        Some(match field {
            "source" => s("source.component"),
            other => s(other),
        })
    }
}

struct Node;
impl Strategy for Node {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.unschedulable").then(|| {
            crate::meta::path(obj, field)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()
        })
    }
}

struct Replicated;
impl Strategy for Replicated {
    fn tracks_generation(&self) -> bool {
        true
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.replicas").then(|| {
            crate::meta::path(obj, field)
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string()
        })
    }
}

struct Job;
impl Strategy for Job {
    fn tracks_generation(&self) -> bool {
        true
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.successful").then(|| {
            crate::meta::path(obj, field)
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string()
        })
    }
}

struct Csr;
impl Strategy for Csr {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.signerName"]
    }
}

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Strategy> {
    Some(match (group, kind) {
        ("", "Pod") => &Pod,
        ("", "Namespace") => &Namespace,
        ("", "Service") => &Service,
        ("", "Secret") => &Secret,
        ("", "Event") => &Event,
        ("", "Node") => &Node,
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &Replicated,
        ("batch", "Job") => &Job,
        ("certificates.k8s.io", "CertificateSigningRequest") => &Csr,
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet")
        | ("batch", "CronJob")
        | ("policy", "PodDisruptionBudget")
        | ("networking.k8s.io", "Ingress" | "NetworkPolicy")
        | ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("admissionregistration.k8s.io", _)
        | ("flowcontrol.apiserver.k8s.io", _) => &Generational,
        ("rbac.authorization.k8s.io", _) => &PathNamed,
        _ => return None,
    })
}
