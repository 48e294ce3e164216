use serde_json::{json, Value};

use super::wire::{put_bytes, put_varint_field};
use super::*;

/// Request bodies kubectl v1.32 sent for `kubectl create ...`, beside the JSON that
/// `kubectl create ... --dry-run=client -o json` prints for the same object: Go's own
/// rendering of those bytes.
const KUBECTL_FIXTURES: &[(&str, &[u8], &str)] = &[
    (
        "namespace",
        include_bytes!("testdata/kubectl-namespace.bin"),
        include_str!("testdata/kubectl-namespace.json"),
    ),
    (
        "configmap",
        include_bytes!("testdata/kubectl-configmap.bin"),
        include_str!("testdata/kubectl-configmap.json"),
    ),
    (
        "secret",
        include_bytes!("testdata/kubectl-secret.bin"),
        include_str!("testdata/kubectl-secret.json"),
    ),
    (
        "service",
        include_bytes!("testdata/kubectl-service.bin"),
        include_str!("testdata/kubectl-service.json"),
    ),
    (
        "deployment",
        include_bytes!("testdata/kubectl-deployment.bin"),
        include_str!("testdata/kubectl-deployment.json"),
    ),
    (
        "cronjob",
        include_bytes!("testdata/kubectl-cronjob.bin"),
        include_str!("testdata/kubectl-cronjob.json"),
    ),
    (
        "priorityclass",
        include_bytes!("testdata/kubectl-priorityclass.bin"),
        include_str!("testdata/kubectl-priorityclass.json"),
    ),
    (
        "pdb",
        include_bytes!("testdata/kubectl-pdb.bin"),
        include_str!("testdata/kubectl-pdb.json"),
    ),
];

#[test]
fn descriptor_table_loads_and_is_complete() {
    let table = table::load(include_str!("descriptors.json")).expect("descriptors load");
    assert!(table.messages.len() > 500);
    for (group, version, kind) in [
        ("", "v1", "Pod"),
        ("", "v1", "PodList"),
        ("", "v1", "Status"),
        ("apps", "v1", "Deployment"),
        ("networking.k8s.io", "v1", "IPAddress"),
        ("networking.k8s.io", "v1", "ServiceCIDR"),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "v1", "APIService"),
        ("coordination.k8s.io", "v1beta1", "LeaseCandidate"),
        ("resource.k8s.io", "v1beta2", "ResourceClaim"),
        ("apidiscovery.k8s.io", "v2", "APIGroupDiscoveryList"),
    ] {
        assert!(
            table.kind(group, version, kind).is_some(),
            "{group}/{version} {kind}"
        );
    }
    assert!(is_supported("apps/v1", "DeleteOptions"));
    assert!(is_supported("v1", "WatchEvent"));
    assert!(!is_supported("example.com/v1", "Widget"));
    assert_eq!(definition_for("v1", "Pod"), Some("io.k8s.api.core.v1.Pod"));
}

#[test]
fn decodes_kubectl_bodies_exactly_as_go_prints_them() {
    for (name, bytes, expected) in KUBECTL_FIXTURES {
        let got = decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: Value = serde_json::from_str(expected).unwrap();
        // Compare the text so that key order (Go's struct order) is checked too.
        assert_eq!(
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&expected).unwrap(),
            "{name}"
        );
        let again = decode(&encode(&got).unwrap()).unwrap();
        assert_eq!(again, without_nulls(&got), "{name} round trip");
    }
}

#[test]
fn namespace_bytes_match_by_hand() {
    // kind Namespace, apiVersion v1, metadata.name "foo", nothing else.
    let obj = json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "foo"}});
    let bytes = encode(&obj).unwrap();
    let mut expected = b"k8s\0".to_vec();
    expected.extend_from_slice(b"\x0a\x0f\x0a\x02v1\x12\x09Namespace");
    expected.extend_from_slice(b"\x12\x07\x0a\x05\x0a\x03foo");
    expected.extend_from_slice(b"\x1a\x00\x22\x00");
    assert_eq!(bytes, expected);
    assert_eq!(decode(&bytes).unwrap(), obj);
}

/// A null time is Go's zero time, which travels as an absent field: Go clients read both the
/// same way, so a JSON round trip drops it.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Map keys come back sorted, as Go prints them, so objects compare regardless of key order
/// (struct order is checked against kubectl's own output above).
fn round_trip(obj: Value) {
    let bytes = encode(&obj).unwrap();
    assert!(bytes.starts_with(&MAGIC));
    let back = decode(&bytes).unwrap();
    assert_eq!(back, without_nulls(&obj));
}

fn object_meta() -> Value {
    json!({
        "name": "web-0",
        "namespace": "default",
        "uid": "0b9e2a6e-1c5f-4c1e-9a43-0d4f6f1b7a10",
        "resourceVersion": "12345",
        "generation": 3,
        "creationTimestamp": "2024-01-02T03:04:05Z",
        "deletionTimestamp": "2024-01-02T04:00:00Z",
        "deletionGracePeriodSeconds": 0,
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"a/b": "c", "empty": ""},
        "ownerReferences": [{
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-5d8",
            "uid": "6f0d2b0e-3f0c-4a57-b0f5-9a4d2b8c1e22",
            "controller": true,
            "blockOwnerDeletion": false
        }],
        "finalizers": ["example.com/guard"],
        "managedFields": [{
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2024-01-02T03:04:05Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
        }]
    })
}

#[test]
fn pod_round_trips() {
    round_trip(json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": object_meta(),
        "spec": {
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                {"name": "cfg", "configMap": {"name": "web-config", "defaultMode": 420}},
                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
            ],
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "command": ["nginx"],
                "args": ["-g", "daemon off;"],
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "env": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw", "optional": false}}}
                ],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "250m", "memory": "64Mi"}
                },
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                    "initialDelaySeconds": 5,
                    "periodSeconds": 10
                },
                "readinessProbe": {"tcpSocket": {"port": 80}},
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {"runAsUser": 0, "runAsNonRoot": false, "allowPrivilegeEscalation": false}
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"disk": "ssd"},
            "automountServiceAccountToken": false,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}
            ],
            "priority": 0
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-01-02T03:04:06Z"}],
            "hostIP": "10.0.0.1",
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "startTime": "2024-01-02T03:04:05Z",
            "containerStatuses": [{
                "name": "web",
                "state": {"running": {"startedAt": "2024-01-02T03:04:06Z"}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": "nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:abc",
                "containerID": "containerd://123",
                "started": true
            }],
            "qosClass": "Burstable"
        }
    }));
}

#[test]
fn secret_bytes_are_base64() {
    let obj = json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": "creds", "namespace": "default"},
        "immutable": false,
        "data": {"pw": "aHVudGVyMg==", "empty": "", "bin": "AAEC/w=="},
        "type": "Opaque"
    });
    round_trip(obj.clone());
    let raw = encode_message("io.k8s.api.core.v1.Secret", &obj).unwrap();
    let needle = b"hunter2";
    assert!(raw.windows(needle.len()).any(|w| w == needle));
    let bad = json!({"kind": "Secret", "apiVersion": "v1", "data": {"x": "***"}});
    assert!(matches!(encode(&bad), Err(ProtoError::InvalidValue { .. })));
}

#[test]
fn deployment_and_service_round_trip() {
    round_trip(json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {}}]}
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "conditions": [{
                "type": "Available", "status": "True",
                "lastUpdateTime": "2024-01-02T03:04:05Z", "lastTransitionTime": "2024-01-02T03:04:05Z",
                "reason": "MinimumReplicasAvailable", "message": "ok"
            }]
        }
    }));
    round_trip(json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http", "nodePort": 30080},
                {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9090}
            ],
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "type": "NodePort",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster"
        },
        "status": {"loadBalancer": {}}
    }));
}

#[test]
fn go_zero_values_follow_pointer_facts() {
    // DeploymentSpec: replicas (1) is *int32, minReadySeconds (5) a plain int32, paused (7) a
    // plain bool; Go writes all three, and only the pointer's zero means something.
    let mut spec = Vec::new();
    put_varint_field(&mut spec, 1, 0);
    put_varint_field(&mut spec, 5, 0);
    put_varint_field(&mut spec, 7, 0);
    let got = decode_message("io.k8s.api.apps.v1.DeploymentSpec", &spec).unwrap();
    assert_eq!(got, json!({"replicas": 0}));
    // ContainerPort.containerPort is required and so printed even when zero; hostIP is not.
    let mut port = Vec::new();
    put_bytes(&mut port, 5, b"");
    let got = decode_message("io.k8s.api.core.v1.ContainerPort", &port).unwrap();
    assert_eq!(got, json!({"containerPort": 0}));
}

#[test]
fn negative_int32_is_sign_extended() {
    let spec = json!({"replicas": -1});
    let bytes = encode_message("io.k8s.api.apps.v1.DeploymentSpec", &spec).unwrap();
    assert_eq!(bytes.len(), 1 + 10);
    assert_eq!(
        decode_message("io.k8s.api.apps.v1.DeploymentSpec", &bytes).unwrap(),
        spec
    );
    let too_big = json!({"replicas": 1u64 << 40});
    assert!(encode_message("io.k8s.api.apps.v1.DeploymentSpec", &too_big).is_err());
}

#[test]
fn event_micro_time_round_trips() {
    round_trip(json!({
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": {"name": "web.17a", "namespace": "default"},
        "eventTime": "2024-01-02T03:04:05.123456Z",
        "series": {"count": 2, "lastObservedTime": "2024-01-02T03:05:00.000001Z"},
        "reportingController": "kubelet",
        "reportingInstance": "node-1",
        "action": "Pulling",
        "reason": "Pulling",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1", "apiVersion": "v1", "fieldPath": "spec.containers{web}"},
        "note": "Pulling image",
        "type": "Normal",
        "deprecatedFirstTimestamp": "2024-01-02T03:04:05Z",
        "deprecatedCount": 1
    }));
}

#[test]
fn time_quirks_match_go() {
    // An empty Time message is Go's zero time, printed as null; Go keeps no nanoseconds.
    let mut meta = Vec::new();
    put_bytes(&mut meta, 8, b"");
    let mut ts = Vec::new();
    put_varint_field(&mut ts, 1, 1_704_164_645);
    put_varint_field(&mut ts, 2, 999);
    put_bytes(&mut meta, 9, &ts);
    let got = decode_message("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", &meta).unwrap();
    assert_eq!(
        got,
        json!({"creationTimestamp": null, "deletionTimestamp": "2024-01-02T03:04:05Z"})
    );
    let bad = json!({"creationTimestamp": "yesterday"});
    assert!(encode_message("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", &bad).is_err());
}

#[test]
fn quantities_are_canonicalised_on_decode() {
    let mut list = Vec::new();
    let mut entry = Vec::new();
    put_bytes(&mut entry, 1, b"cpu");
    let mut q = Vec::new();
    put_bytes(&mut q, 1, b"0.5");
    put_bytes(&mut entry, 2, &q);
    put_bytes(&mut list, 1, &entry);
    let got = decode_message("io.k8s.api.core.v1.ResourceRequirements", &list).unwrap();
    assert_eq!(got, json!({"limits": {"cpu": "500m"}}));
    let mut bad = Vec::new();
    let mut entry = Vec::new();
    put_bytes(&mut entry, 1, b"cpu");
    let mut q = Vec::new();
    put_bytes(&mut q, 1, b"lots");
    put_bytes(&mut entry, 2, &q);
    put_bytes(&mut bad, 1, &entry);
    assert!(decode_message("io.k8s.api.core.v1.ResourceRequirements", &bad).is_err());
}

#[test]
fn pod_list_and_status_round_trip() {
    let pod = |name: &str| json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}, "status": {"phase": "Pending"}});
    round_trip(json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "99", "continue": "abc", "remainingItemCount": 0},
        "items": [pod("a"), pod("b")]
    }));
    round_trip(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "pods \"x\" not found",
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods", "causes": [{"reason": "FieldValueRequired", "message": "required", "field": "spec"}]},
        "code": 404
    }));
}

#[test]
fn watch_event_frames() {
    let pod = json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "a", "namespace": "default", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    let frame = encode_watch_event("ADDED", &pod).unwrap();
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len + 4, frame.len());
    // The event is bare; only its object carries the k8s\0 envelope.
    assert_ne!(&frame[4..8], &MAGIC);
    let mut stream = frame.clone();
    stream.extend_from_slice(&frame[..6]);
    let (event, used) = decode_watch_frame(&stream).unwrap().unwrap();
    assert_eq!(used, frame.len());
    assert_eq!(event, json!({"type": "ADDED", "object": pod}));
    assert_eq!(decode_watch_frame(&stream[used..]).unwrap(), None);
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410});
    let frame = encode_watch_event("ERROR", &status).unwrap();
    let (event, _) = decode_watch_frame(&frame).unwrap().unwrap();
    assert_eq!(event["object"], status);
}

#[test]
fn delete_options_under_any_group_version() {
    let obj = json!({
        "kind": "DeleteOptions",
        "apiVersion": "apps/v1",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u", "resourceVersion": "5"},
        "propagationPolicy": "Foreground",
        "dryRun": ["All"]
    });
    round_trip(obj);
}

#[test]
fn crd_schema_unions_round_trip() {
    round_trip(json!({
        "kind": "CustomResourceDefinition",
        "apiVersion": "apiextensions.k8s.io/v1",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1, "maximum": 10.5, "default": 3},
                                "mode": {"type": "string", "enum": ["a", "b"]},
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                "free": {"type": "object", "additionalProperties": false},
                                "any": {"x-kubernetes-preserve-unknown-fields": true},
                                "port": {"x-kubernetes-int-or-string": true},
                                "ref": {"$ref": "#/definitions/x", "dependencies": {"a": ["b"], "c": {"type": "object"}}}
                            },
                            "x-kubernetes-validations": [{"rule": "self.size > 0", "message": "positive"}]
                        }
                    }
                }},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]
            }],
            "conversion": {"strategy": "None"}
        }
    }));
}

#[test]
fn extra_values_are_plain_arrays() {
    round_trip(json!({
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": {
            "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"},
            "user": "alice",
            "groups": ["dev"],
            "extra": {"scopes": ["a", "b"], "none": []},
            "uid": "1"
        },
        "status": {"allowed": true, "reason": "ok"}
    }));
}

#[test]
fn raw_extensions_carry_json() {
    round_trip(json!({
        "kind": "ControllerRevision",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web-1"},
        "data": {"spec": {"template": {"x": [1, 2.5, "s", null, true]}}},
        "revision": 1
    }));
}

#[test]
fn packed_and_unpacked_repeated_ints() {
    let def = "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement";
    let mut unpacked = Vec::new();
    put_bytes(&mut unpacked, 2, b"In");
    put_varint_field(&mut unpacked, 3, 1);
    put_varint_field(&mut unpacked, 3, 42);
    let mut packed = Vec::new();
    put_bytes(&mut packed, 2, b"In");
    put_bytes(&mut packed, 3, &[1, 42]);
    let expected = json!({"operator": "In", "values": [1, 42]});
    assert_eq!(decode_message(def, &unpacked).unwrap(), expected);
    assert_eq!(decode_message(def, &packed).unwrap(), expected);
    assert_eq!(encode_message(def, &expected).unwrap(), unpacked);
}

#[test]
fn unknown_fields_are_skipped() {
    let mut meta = Vec::new();
    put_bytes(&mut meta, 1, b"x");
    put_varint_field(&mut meta, 999, 7);
    put_bytes(&mut meta, 1000, b"future");
    meta.extend_from_slice(&[0x0d, 1, 2, 3, 4]); // field 1 as fixed32: wrong type
    assert!(decode_message("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", &meta).is_err());
    meta.truncate(meta.len() - 5);
    assert_eq!(
        decode_message("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", &meta).unwrap(),
        json!({"name": "x"})
    );
}

#[test]
fn every_kind_round_trips_its_type_meta() {
    for ((group, version, kind), _) in TABLE.kinds.iter() {
        let api_version = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let obj = json!({"kind": kind, "apiVersion": api_version});
        let back = decode(&encode(&obj).unwrap()).unwrap();
        assert_eq!(back["kind"], obj["kind"]);
        assert_eq!(back["apiVersion"], obj["apiVersion"]);
    }
}

#[test]
fn envelope_errors() {
    assert_eq!(decode(b""), Err(ProtoError::MissingMagic));
    assert_eq!(decode(b"{\"kind\":1}"), Err(ProtoError::MissingMagic));
    let widget = json!({"kind": "Widget", "apiVersion": "example.com/v1"});
    assert!(matches!(
        encode(&widget),
        Err(ProtoError::UnknownKind { .. })
    ));
    let mut gz = encode(&json!({"kind": "Namespace", "apiVersion": "v1"})).unwrap();
    let n = gz.len();
    gz.truncate(n - 4);
    put_bytes(&mut gz, 3, b"gzip");
    assert_eq!(
        decode(&gz),
        Err(ProtoError::UnsupportedEncoding("gzip".into()))
    );
    assert!(matches!(
        decode_message("io.k8s.api.core.v1.Nope", b""),
        Err(ProtoError::UnknownMessage(_))
    ));
}

#[test]
fn garbage_never_panics() {
    let mut inputs: Vec<Vec<u8>> = KUBECTL_FIXTURES.iter().map(|f| f.1.to_vec()).collect();
    inputs.push(
        encode(&json!({"kind": "Pod", "apiVersion": "v1", "metadata": object_meta()})).unwrap(),
    );
    // A small xorshift generator keeps the test deterministic.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for input in &inputs {
        for cut in 0..input.len() {
            let _ = decode(&input[..cut]);
        }
        for _ in 0..300 {
            let mut mutated = input.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % mutated.len();
                mutated[i] = next() as u8;
            }
            let _ = decode(&mutated);
            let _ = decode_message("io.k8s.api.core.v1.Pod", &mutated[4..]);
        }
    }
    for _ in 0..2000 {
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = decode_message("io.k8s.api.core.v1.Pod", &bytes);
        let _ = decode_watch_event(&bytes);
    }
}

#[test]
fn nesting_is_bounded() {
    // A v1 List whose single item is a List whose single item is ... far too deep.
    let mut bytes = encode(&json!({"kind": "List", "apiVersion": "v1"})).unwrap();
    for _ in 0..200 {
        let mut raw_extension = Vec::new();
        put_bytes(&mut raw_extension, 1, &bytes);
        let mut list = Vec::new();
        put_bytes(&mut list, 2, &raw_extension);
        let mut type_meta = Vec::new();
        put_bytes(&mut type_meta, 1, b"v1");
        put_bytes(&mut type_meta, 2, b"List");
        bytes = MAGIC.to_vec();
        put_bytes(&mut bytes, 1, &type_meta);
        put_bytes(&mut bytes, 2, &list);
    }
    assert_eq!(decode(&bytes), Err(ProtoError::TooDeep(MAX_DEPTH)));

    let mut schema = json!({"type": "string"});
    for _ in 0..200 {
        schema = json!({"type": "object", "properties": {"x": schema}});
    }
    let def = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
    assert_eq!(
        encode_message(def, &schema),
        Err(ProtoError::TooDeep(MAX_DEPTH))
    );
}
