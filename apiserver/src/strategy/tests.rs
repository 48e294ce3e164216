//! Tests across every kind: realistic objects validate cleanly once defaulted, and no value of
//! the wrong type anywhere in an object makes a strategy panic.

use serde_json::{json, Value};

use super::{for_kind, Strategy};

fn pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "app", "image": "nginx:1.27",
            "ports": [{"containerPort": 80, "name": "http"}],
            "env": [{"name": "A", "value": "b"}, {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "readinessProbe": {"httpGet": {"port": "http"}},
            "livenessProbe": {"tcpSocket": {"port": 80}},
            "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"]}},
        }],
        "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c", "items": [{"key": "k", "path": "p"}]}}],
        "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
        "nodeSelector": {"disk": "ssd"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}],
    })
}

fn template(restart: &str) -> Value {
    let mut spec = pod_spec();
    spec["restartPolicy"] = json!(restart);
    json!({"metadata": {"labels": {"app": "web"}}, "spec": spec})
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "ns", "uid": "0d8e2a4c-5b41-4b7e-9c35-1ad7e3f3d6a1"})
}

/// A realistic object of every kind with its own rules.
fn samples() -> Vec<(&'static str, &'static str, Value)> {
    let selector = json!({"matchLabels": {"app": "web"}});
    vec![
        (
            "",
            "Pod",
            json!({"apiVersion": "v1", "metadata": meta("web"), "spec": pod_spec()}),
        ),
        (
            "",
            "PodTemplate",
            json!({"metadata": meta("t"), "template": template("Always")}),
        ),
        (
            "",
            "ReplicationController",
            json!({"metadata": meta("rc"), "spec": {"replicas": 2, "template": template("Always")}}),
        ),
        (
            "apps",
            "Deployment",
            json!({"metadata": meta("web"), "spec": {"selector": selector, "template": template("Always")}}),
        ),
        (
            "apps",
            "ReplicaSet",
            json!({"metadata": meta("web"), "spec": {"selector": selector, "template": template("Always")}}),
        ),
        (
            "apps",
            "DaemonSet",
            json!({"metadata": meta("web"), "spec": {"selector": selector, "template": template("Always")}}),
        ),
        (
            "apps",
            "StatefulSet",
            json!({"metadata": meta("web"), "spec": {"selector": selector, "serviceName": "web",
            "template": template("Always"), "volumeClaimTemplates": [{"metadata": {"name": "v"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        ),
        (
            "apps",
            "ControllerRevision",
            json!({"metadata": meta("r"), "data": {"a": 1}, "revision": 1}),
        ),
        (
            "batch",
            "Job",
            json!({"metadata": meta("job"), "spec": {"template": template("Never")}}),
        ),
        (
            "batch",
            "CronJob",
            json!({"metadata": meta("cj"), "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC",
            "jobTemplate": {"spec": {"template": template("OnFailure")}}}}),
        ),
        (
            "",
            "Service",
            json!({"metadata": meta("web"), "spec": {"type": "NodePort", "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "https", "port": 443}]}}),
        ),
        (
            "",
            "Endpoints",
            json!({"metadata": meta("web"), "subsets": [{"addresses": [{"ip": "10.0.0.5", "nodeName": "n1"}],
            "ports": [{"port": 80}]}]}),
        ),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"metadata": meta("web-abc"), "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": true}}], "ports": [{"name": "http", "port": 80}]}),
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata": meta("c"), "data": {"k": "v"}, "binaryData": {"b": "eA=="}}),
        ),
        (
            "",
            "Secret",
            json!({"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eA=="},
            "stringData": {"extra": "x"}}),
        ),
        ("", "Namespace", json!({"metadata": {"name": "team-a"}})),
        (
            "",
            "Node",
            json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.0.0/24"],
            "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
        ),
        (
            "",
            "Event",
            json!({"apiVersion": "v1", "metadata": meta("e"), "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "web"},
            "reason": "Started", "message": "m", "type": "Normal"}),
        ),
        (
            "",
            "LimitRange",
            json!({"metadata": meta("l"), "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"},
            "min": {"cpu": "10m"}, "default": {"cpu": "500m"}}]}}),
        ),
        (
            "",
            "ResourceQuota",
            json!({"metadata": meta("q"), "spec": {"hard": {"pods": "10", "requests.cpu": "4"}}}),
        ),
        (
            "",
            "PersistentVolume",
            json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteOnce"], "nfs": {"server": "nfs.example.com", "path": "/exports"}}}),
        ),
        (
            "",
            "PersistentVolumeClaim",
            json!({"metadata": meta("pvc"), "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "standard"}}),
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            json!({"metadata": {"name": "standard"}, "provisioner": "example.com/nfs",
            "parameters": {"a": "b"}}),
        ),
        (
            "scheduling.k8s.io",
            "PriorityClass",
            json!({"metadata": {"name": "high"}, "value": 1000}),
        ),
        (
            "node.k8s.io",
            "RuntimeClass",
            json!({"metadata": {"name": "runc"}, "handler": "runc",
            "overhead": {"podFixed": {"cpu": "10m"}}, "scheduling": {"nodeSelector": {"a": "b"}}}),
        ),
        (
            "coordination.k8s.io",
            "Lease",
            json!({"metadata": meta("l"), "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}),
        ),
        (
            "rbac.authorization.k8s.io",
            "Role",
            json!({"metadata": meta("r"), "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            json!({"metadata": {"name": "r"}, "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"metadata": meta("b"), "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "ns"}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "Group", "name": "system:authenticated"}]}),
        ),
        (
            "networking.k8s.io",
            "Ingress",
            json!({"metadata": meta("i"), "spec": {"ingressClassName": "nginx", "rules": [{"host": "example.com",
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}],
            "tls": [{"hosts": ["example.com"], "secretName": "tls"}]}}),
        ),
        (
            "networking.k8s.io",
            "IngressClass",
            json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}),
        ),
        (
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"metadata": meta("np"), "spec": {"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": 80}]}]}}),
        ),
        (
            "policy",
            "PodDisruptionBudget",
            json!({"metadata": meta("pdb"), "spec": {"minAvailable": "50%", "selector": selector}}),
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v2", "metadata": meta("h"), "spec": {"maxReplicas": 5,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}}),
        ),
    ]
}

fn create(s: &dyn Strategy, body: &Value) -> Value {
    let mut obj = body.clone();
    s.prepare_for_create(&mut obj);
    s.defaults(&mut obj);
    obj
}

#[test]
fn realistic_objects_are_valid_and_stable() {
    for (group, kind, body) in samples() {
        let s = for_kind(group, kind);
        let obj = create(s, &body);
        let errs: Vec<String> = s.validate(&obj).iter().map(|e| e.message()).collect();
        assert!(errs.is_empty(), "{group}/{kind}: {errs:#?}");
        let mut again = obj.clone();
        s.defaults(&mut again);
        assert_eq!(again, obj, "{group}/{kind}: defaults are not idempotent");
        let mut same = obj.clone();
        s.prepare_for_update(&mut same, &obj);
        s.defaults(&mut same);
        let errs: Vec<String> = s
            .validate_update(&same, &obj)
            .iter()
            .map(|e| e.message())
            .collect();
        assert!(errs.is_empty(), "{group}/{kind} (no-op update): {errs:#?}");
    }
}

/// Every path of an object, as JSON pointers, objects and arrays included.
fn pointers(v: &Value, prefix: String, out: &mut Vec<String>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                pointers(
                    c,
                    format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn no_wrongly_typed_value_panics() {
    let replacements = [
        Value::Null,
        json!(0),
        json!(-7),
        json!(1.5),
        json!(1e300),
        json!(""),
        json!("é∆/..%"),
        json!(true),
        json!([]),
        json!([null, 1, "x"]),
        json!({}),
        json!({"a": [1]}),
    ];
    for (group, kind, body) in samples() {
        let s = for_kind(group, kind);
        let good = create(s, &body);
        let mut paths = Vec::new();
        pointers(&good, String::new(), &mut paths);
        for p in paths
            .iter()
            .filter(|p| !p.is_empty() && !p.starts_with("/metadata"))
        {
            for r in &replacements {
                let mut bad = good.clone();
                if let Some(slot) = bad.pointer_mut(p) {
                    *slot = r.clone();
                }
                let created = create(s, &bad);
                let _ = s.validate(&created);
                let mut updated = bad.clone();
                s.prepare_for_update(&mut updated, &good);
                s.defaults(&mut updated);
                let _ = s.validate_update(&updated, &good);
                let mut reverse = good.clone();
                s.prepare_for_update(&mut reverse, &bad);
                let _ = s.validate_update(&reverse, &bad);
                for f in s.selectable_fields() {
                    let _ = s.field_value(&created, f);
                }
                let _ = s.warnings(&created);
            }
        }
    }
}
