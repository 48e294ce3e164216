use serde_json::{json, Value};

use super::strategic_merge_patch;
use crate::patch::{PatchErrorKind, MAX_PATCH_DEPTH};

const POD: &str = "io.k8s.api.core.v1.Pod";
const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const POD_STATUS: &str = "io.k8s.api.core.v1.PodStatus";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const DEPLOYMENT_SPEC: &str = "io.k8s.api.apps.v1.DeploymentSpec";
const SERVICE_SPEC: &str = "io.k8s.api.core.v1.ServiceSpec";
const PDB_SPEC: &str = "io.k8s.api.policy.v1.PodDisruptionBudgetSpec";
const CUSTOM: &str = "com.example.v1.Widget";

struct Case {
    name: &'static str,
    definition: &'static str,
    original: Value,
    patch: Value,
    expected: Value,
}

fn run(cases: Vec<Case>) {
    for case in cases {
        let got = strategic_merge_patch(&case.original, &case.patch, case.definition)
            .unwrap_or_else(|e| panic!("{}: unexpected error: {e}", case.name));
        assert_eq!(
            got, case.expected,
            "{}\n  got:      {got}\n  expected: {}",
            case.name, case.expected
        );
    }
}

/// Names of the items of a list, for order assertions.
fn names(list: &Value, key: &str) -> Vec<Value> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[key].clone())
        .collect()
}

#[test]
fn maps() {
    run(vec![
        Case {
            name: "add, change and delete map fields",
            definition: POD,
            original: json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            patch: json!({"metadata": {"labels": {"a": "x", "b": null, "c": "3"}}}),
            expected: json!({"metadata": {"name": "p", "labels": {"a": "x", "c": "3"}}}),
        },
        Case {
            name: "null for a missing field is ignored",
            definition: POD,
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"labels": null}}),
            expected: json!({"metadata": {"name": "p"}}),
        },
        Case {
            name: "new subtree loses nulls and directive-marked maps",
            definition: POD,
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"spec": {"nodeName": null, "hostname": "h",
                                   "affinity": {"$patch": "delete"},
                                   "containers": [{"name": "a", "image": null},
                                                  {"name": "b", "$patch": "delete"}]}}),
            expected: json!({"metadata": {"name": "p"},
                             "spec": {"hostname": "h", "containers": [{"name": "a"}]}}),
        },
        Case {
            name: "$patch: replace replaces the map",
            definition: POD_SPEC,
            original: json!({"nodeSelector": {"disk": "hdd", "zone": "a"}}),
            patch: json!({"nodeSelector": {"$patch": "replace", "disk": "ssd"}}),
            expected: json!({"nodeSelector": {"disk": "ssd"}}),
        },
        Case {
            name: "$patch: delete empties the map",
            definition: POD,
            original: json!({"metadata": {"name": "p", "labels": {"a": "1"}}}),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            expected: json!({"metadata": {"name": "p", "labels": {}}}),
        },
        Case {
            name: "patch strategy replace on a map field",
            definition: PDB_SPEC,
            original: json!({"minAvailable": 1, "selector": {
                "matchLabels": {"app": "a"},
                "matchExpressions": [{"key": "k", "operator": "Exists"}]}}),
            patch: json!({"selector": {"matchLabels": {"app": "b"}}}),
            expected: json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "b"}}}),
        },
        Case {
            name: "a value of another type replaces",
            definition: POD_SPEC,
            original: json!({"nodeSelector": {"a": "b"}, "hostname": "h"}),
            patch: json!({"nodeSelector": "oops", "hostname": {"x": null, "y": 1}}),
            expected: json!({"nodeSelector": "oops", "hostname": {"y": 1}}),
        },
        Case {
            name: "null patch changes nothing",
            definition: POD,
            original: json!({"metadata": {"name": "p"}}),
            patch: Value::Null,
            expected: json!({"metadata": {"name": "p"}}),
        },
        Case {
            name: "top-level $patch: delete",
            definition: POD,
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"$patch": "delete"}),
            expected: json!({}),
        },
    ]);
}

#[test]
fn lists_merged_by_key() {
    run(vec![
        Case {
            name: "change one container by name",
            definition: POD_SPEC,
            original: json!({"containers": [
                {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]},
                {"name": "log", "image": "fluentd"}]}),
            patch: json!({"containers": [{"name": "web", "image": "nginx:2"}]}),
            expected: json!({"containers": [
                {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]},
                {"name": "log", "image": "fluentd"}]}),
        },
        Case {
            name: "a new item without $setElementOrder goes first, as upstream puts it",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            patch: json!({"containers": [{"name": "c", "image": "x"}]}),
            expected: json!({"containers": [{"name": "c", "image": "x"}, {"name": "a"}, {"name": "b"}]}),
        },
        Case {
            name: "patched items take the patch order, server-only items keep theirs",
            definition: CONTAINER,
            original: json!({"env": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]}),
            patch: json!({"env": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]}),
            expected: json!({"env": [{"name": "2", "value": "b"},
                                     {"name": "3", "value": "c"},
                                     {"name": "1", "value": "a"}]}),
        },
        Case {
            name:
                "nested lists merge too: env by name, ports by containerPort, mounts by mountPath",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "web",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "name": "http"}],
                "volumeMounts": [{"mountPath": "/data", "name": "data"}]}]}),
            patch: json!({"containers": [{"name": "web",
                "env": [{"name": "B", "value": "3"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]}),
            expected: json!({"containers": [{"name": "web",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
                "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
                "volumeMounts": [{"mountPath": "/data", "name": "data", "readOnly": true}]}]}),
        },
        Case {
            name: "$patch: delete removes every item with that key",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "a", "image": "dup"}]}),
            patch: json!({"containers": [{"name": "a", "$patch": "delete"}]}),
            expected: json!({"containers": [{"name": "b"}]}),
        },
        Case {
            name: "deleting a missing item is fine",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "a"}]}),
            patch: json!({"containers": [{"name": "zz", "$patch": "delete"}]}),
            expected: json!({"containers": [{"name": "a"}]}),
        },
        Case {
            name: "$patch: replace in a list keeps only the other patch items",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}),
            patch: json!({"containers": [{"$patch": "replace"}, {"name": "c"}, {"name": "a"}]}),
            expected: json!({"containers": [{"name": "c"}, {"name": "a"}]}),
        },
        Case {
            name: "$patch: replace alone empties the list",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "a"}]}),
            patch: json!({"containers": [{"$patch": "replace"}]}),
            expected: json!({"containers": []}),
        },
        Case {
            name: "ownerReferences merge by uid",
            definition: OBJECT_META,
            original: json!({"ownerReferences": [{"uid": "u1", "name": "a", "kind": "ReplicaSet"}]}),
            patch: json!({"ownerReferences": [{"uid": "u1", "controller": true},
                                              {"uid": "u2", "name": "b", "kind": "Job"}]}),
            expected: json!({"ownerReferences": [
                {"uid": "u1", "name": "a", "kind": "ReplicaSet", "controller": true},
                {"uid": "u2", "name": "b", "kind": "Job"}]}),
        },
        Case {
            name: "conditions merge by type",
            definition: POD_STATUS,
            original: json!({"conditions": [{"type": "Ready", "status": "False"},
                                            {"type": "Initialized", "status": "True"}]}),
            patch: json!({"conditions": [{"type": "Ready", "status": "True"}]}),
            expected: json!({"conditions": [{"type": "Ready", "status": "True"},
                                            {"type": "Initialized", "status": "True"}]}),
        },
        Case {
            name: "service ports merge by port",
            definition: SERVICE_SPEC,
            original: json!({"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}),
            patch: json!({"ports": [{"port": 80, "targetPort": 9090}]}),
            expected: json!({"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}),
        },
        Case {
            name: "empty lists on both sides stay empty",
            definition: POD_SPEC,
            original: json!({"containers": []}),
            patch: json!({"containers": []}),
            expected: json!({"containers": []}),
        },
        Case {
            name: "a duplicate key in the patch merges into the item added first",
            definition: POD_SPEC,
            original: json!({"containers": []}),
            patch: json!({"containers": [{"name": "a", "image": "x"}, {"name": "a", "args": ["y"]}]}),
            expected: json!({"containers": [{"name": "a", "image": "x", "args": ["y"]}]}),
        },
    ]);
}

#[test]
fn lists_replaced_or_unioned() {
    run(vec![
        Case {
            name: "tolerations have no merge strategy and are replaced",
            definition: POD_SPEC,
            original: json!({"tolerations": [{"key": "a", "operator": "Exists"}]}),
            patch: json!({"tolerations": [{"key": "b", "operator": "Exists"}]}),
            expected: json!({"tolerations": [{"key": "b", "operator": "Exists"}]}),
        },
        Case {
            name: "a replaced list is taken verbatim, directives included",
            definition: POD_SPEC,
            original: json!({"tolerations": [{"key": "a"}]}),
            patch: json!({"tolerations": [{"key": "a", "$patch": "delete"}]}),
            expected: json!({"tolerations": [{"key": "a", "$patch": "delete"}]}),
        },
        Case {
            name: "container args are replaced",
            definition: CONTAINER,
            original: json!({"args": ["a", "b"]}),
            patch: json!({"args": ["c"]}),
            expected: json!({"args": ["c"]}),
        },
        Case {
            name: "finalizers merge as a set; new ones go first",
            definition: OBJECT_META,
            original: json!({"finalizers": ["a", "b"]}),
            patch: json!({"finalizers": ["c", "b"]}),
            expected: json!({"finalizers": ["c", "a", "b"]}),
        },
        Case {
            name: "set union drops duplicates and keeps the patch order for known items",
            definition: OBJECT_META,
            original: json!({"finalizers": ["a", "b", "c", "a"]}),
            patch: json!({"finalizers": ["c", "a"]}),
            expected: json!({"finalizers": ["b", "c", "a"]}),
        },
        Case {
            name: "$deleteFromPrimitiveList removes every copy",
            definition: OBJECT_META,
            original: json!({"finalizers": ["a", "b", "a", "c"]}),
            patch: json!({"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}),
            expected: json!({"finalizers": ["b", "c"]}),
        },
        Case {
            name: "$deleteFromPrimitiveList also applies to lists without merge strategy",
            definition: CONTAINER,
            original: json!({"args": ["1", "2", "3"]}),
            patch: json!({"$deleteFromPrimitiveList/args": ["2"]}),
            expected: json!({"args": ["1", "3"]}),
        },
        Case {
            name: "$deleteFromPrimitiveList of a missing list adds nothing",
            definition: OBJECT_META,
            original: json!({"name": "x"}),
            patch: json!({"$deleteFromPrimitiveList/finalizers": ["a"]}),
            expected: json!({"name": "x"}),
        },
        Case {
            name: "add and delete in one primitive list",
            definition: OBJECT_META,
            original: json!({"finalizers": ["a", "b"]}),
            patch: json!({"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}),
            expected: json!({"finalizers": ["c", "b"]}),
        },
    ]);
}

#[test]
fn set_element_order() {
    run(vec![
        Case {
            name: "kubectl appends a container: order list puts it last",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            patch: json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                          "containers": [{"name": "c", "image": "x"}]}),
            expected: json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c", "image": "x"}]}),
        },
        Case {
            name: "new item first in the order list",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "1"}, {"name": "2", "value": 2}]}),
            patch: json!({"$setElementOrder/containers": [
                              {"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
                          "containers": [{"name": "4", "value": 4}, {"name": "3", "value": 3}]}),
            expected: json!({"containers": [{"name": "4", "value": 4}, {"name": "1"},
                                            {"name": "2", "value": 2}, {"name": "3", "value": 3}]}),
        },
        Case {
            name: "reorder only, server-only items stay next to their neighbours",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "1", "other": "a"}, {"name": "2"},
                                            {"name": "9"}, {"name": "3"}, {"name": "4"}]}),
            patch: json!({"$setElementOrder/containers": [
                {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]}),
            expected: json!({"containers": [{"name": "2"}, {"name": "1", "other": "a"},
                                            {"name": "9"}, {"name": "4"}, {"name": "3"}]}),
        },
        Case {
            name: "add and delete with server-only items (live list edited in place)",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "1"}, {"name": "2", "other": "b"},
                                            {"name": "4", "other": "c"}]}),
            patch: json!({"$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
                          "containers": [{"name": "3"}, {"name": "1", "$patch": "delete"}]}),
            expected: json!({"containers": [{"name": "2", "other": "b"},
                                            {"name": "4", "other": "c"}, {"name": "3"}]}),
        },
        Case {
            name: "add and delete where the added item takes the freed slot",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "1", "other": "a"}, {"name": "4", "other": "c"}]}),
            patch: json!({"$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
                          "containers": [{"name": "2"}, {"name": "3"},
                                         {"name": "1", "$patch": "delete"}]}),
            expected: json!({"containers": [{"name": "4", "other": "c"}, {"name": "2"}, {"name": "3"}]}),
        },
        Case {
            name: "deleting an item only the order list remembers; server item stays after",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "3", "other": "a"}]}),
            patch: json!({"$setElementOrder/containers": [{"name": "2"}],
                          "containers": [{"name": "2"}, {"name": "1", "$patch": "delete"}]}),
            expected: json!({"containers": [{"name": "2"}, {"name": "3", "other": "a"}]}),
        },
        Case {
            name: "order naming a deleted item that never existed",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "hello2"}]}),
            patch: json!({"$setElementOrder/containers": [{"name": "hello"}, {"name": "doesntexist"}],
                          "containers": [{"name": "hello"}]}),
            expected: json!({"containers": [{"name": "hello"}, {"name": "hello2"}]}),
        },
        Case {
            name: "order list naming an item that exists nowhere",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": "1"}, {"name": "3"}]}),
            patch: json!({"$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
                          "containers": [{"name": "3", "value": 3}, {"name": "1", "value": 1}]}),
            expected: json!({"containers": [{"name": "3", "value": 3}, {"name": "1", "value": 1}]}),
        },
        Case {
            name: "order list for a list the object lacks",
            definition: POD_SPEC,
            original: json!({}),
            patch: json!({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                          "containers": [{"name": "b", "image": null}, {"name": "a"},
                                         {"name": "z", "$patch": "delete"}]}),
            expected: json!({"containers": [{"name": "b", "image": null}, {"name": "a"}]}),
        },
        Case {
            name: "duplicates keep their relative order",
            definition: POD_SPEC,
            original: json!({"containers": [{"name": 1}, {"name": 2, "v": "dup1"}, {"name": 3},
                                            {"name": 2, "v": "dup2"}, {"name": 4}]}),
            patch: json!({"$setElementOrder/containers": [
                {"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2}]}),
            expected: json!({"containers": [{"name": 2, "v": "dup1"}, {"name": 2, "v": "dup2"},
                                            {"name": 1}, {"name": 4}, {"name": 3}]}),
        },
        Case {
            name: "primitive list: add with order",
            definition: OBJECT_META,
            original: json!({"finalizers": ["1", "2", "3"]}),
            patch: json!({"$setElementOrder/finalizers": ["1", "2", "4"], "finalizers": ["4"]}),
            expected: json!({"finalizers": ["1", "2", "4", "3"]}),
        },
        Case {
            name: "primitive list: add, delete and order",
            definition: OBJECT_META,
            original: json!({"finalizers": ["1", "2", "3", "4"]}),
            patch: json!({"$setElementOrder/finalizers": ["1", "3", "5"],
                          "$deleteFromPrimitiveList/finalizers": ["2"],
                          "finalizers": ["5"]}),
            expected: json!({"finalizers": ["1", "3", "5", "4"]}),
        },
        Case {
            name: "primitive list: reorder with server-only items",
            definition: OBJECT_META,
            original: json!({"finalizers": ["1", "2", "7", "9", "8", "3", "4"]}),
            patch: json!({"$setElementOrder/finalizers": ["2", "1", "4", "3"]}),
            expected: json!({"finalizers": ["2", "1", "7", "9", "8", "4", "3"]}),
        },
        Case {
            name: "order for a list without merge strategy still reorders it",
            definition: CONTAINER,
            original: json!({"args": ["b", "a", "c"]}),
            patch: json!({"$setElementOrder/args": ["a", "b"]}),
            expected: json!({"args": ["a", "b", "c"]}),
        },
    ]);
}

#[test]
fn retain_keys() {
    run(vec![
        Case {
            name: "deployment strategy switched to Recreate",
            definition: DEPLOYMENT_SPEC,
            original: json!({"replicas": 2, "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}),
            patch: json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                       "rollingUpdate": null}}),
            expected: json!({"replicas": 2, "strategy": {"type": "Recreate"}}),
        },
        Case {
            name: "fields set by defaulting are cleared",
            definition: DEPLOYMENT_SPEC,
            original: json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}),
            patch: json!({"strategy": {"$retainKeys": ["rollingUpdate", "type"],
                                       "rollingUpdate": {"maxSurge": 2}}}),
            expected: json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}),
        },
        Case {
            name: "without the directive a retainKeys field merges normally",
            definition: DEPLOYMENT_SPEC,
            original: json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}),
            patch: json!({"strategy": {"rollingUpdate": {"maxSurge": 2}}}),
            expected: json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}),
        },
        Case {
            name: "volume source switched (merge,retainKeys list)",
            definition: POD_SPEC,
            original: json!({"volumes": [{"name": "cfg", "secret": {"secretName": "s"}},
                                         {"name": "data", "emptyDir": {}}]}),
            patch: json!({"$setElementOrder/volumes": [{"name": "cfg"}, {"name": "data"}],
                          "volumes": [{"name": "data", "$retainKeys": ["configMap", "name"],
                                       "configMap": {"name": "cm"}, "emptyDir": null}]}),
            expected: json!({"volumes": [{"name": "cfg", "secret": {"secretName": "s"}},
                                         {"name": "data", "configMap": {"name": "cm"}}]}),
        },
        Case {
            name: "directive lists and nulls may name unlisted fields",
            definition: DEPLOYMENT_SPEC,
            original: json!({"strategy": {"type": "Recreate"}}),
            patch: json!({"strategy": {"$retainKeys": ["type"], "rollingUpdate": null,
                                       "$deleteFromPrimitiveList/x": ["a"],
                                       "$setElementOrder/y": ["b"]}}),
            expected: json!({"strategy": {"type": "Recreate"}}),
        },
    ]);
}

#[test]
fn schemaless_paths() {
    run(vec![
        Case {
            name: "custom resource: maps merge, lists replace",
            definition: CUSTOM,
            original: json!({"spec": {"size": 1, "items": [{"name": "a"}, {"name": "b"}],
                                      "config": {"x": 1, "y": 2}}}),
            patch: json!({"spec": {"items": [{"name": "c"}], "config": {"y": null, "z": 3}}}),
            expected: json!({"spec": {"size": 1, "items": [{"name": "c"}], "config": {"x": 1, "z": 3}}}),
        },
        Case {
            name: "custom resource: directives still work",
            definition: CUSTOM,
            original: json!({"spec": {"config": {"x": 1}, "list": ["a", "b"]}}),
            patch: json!({"spec": {"config": {"$patch": "replace", "y": 2},
                                   "$deleteFromPrimitiveList/list": ["a"]}}),
            expected: json!({"spec": {"config": {"y": 2}, "list": ["b"]}}),
        },
        Case {
            name: "unknown field inside a typed object is schemaless",
            definition: POD_SPEC,
            original: json!({"extra": {"items": [{"name": "a"}]}}),
            patch: json!({"extra": {"items": [{"name": "b"}]}}),
            expected: json!({"extra": {"items": [{"name": "b"}]}}),
        },
        Case {
            name: "annotations are a plain string map",
            definition: OBJECT_META,
            original: json!({"annotations": {"a": "1", "$x": "2"}}),
            patch: json!({"annotations": {"b": "2", "$x": null}}),
            expected: json!({"annotations": {"a": "1", "b": "2"}}),
        },
        Case {
            name: "map values of a known type: resource quantities",
            definition: "io.k8s.api.core.v1.ResourceRequirements",
            original: json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
            patch: json!({"limits": {"cpu": "2", "memory": null}}),
            expected: json!({"limits": {"cpu": "2"}}),
        },
        Case {
            name: "map values of a struct type keep their schema (CRD schema properties)",
            definition: "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
            original: json!({"properties": {"spec": {"type": "object", "required": ["a"]}}}),
            patch: json!({"properties": {"spec": {"required": ["b"]}}}),
            expected: json!({"properties": {"spec": {"type": "object", "required": ["b"]}}}),
        },
    ]);
}

/// The shape of patch `kubectl apply` sends for a Deployment after the user changed the
/// image, removed an env var and a sidecar, added an env var and a port, and switched a
/// volume from emptyDir to a ConfigMap. The live object has fields the user never set.
#[test]
fn kubectl_apply_deployment() {
    let live = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": 3,
                     "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "web:1",
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                                 {"name": "INJECTED", "value": "x"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "terminationMessagePath": "/dev/termination-log"},
                        {"name": "sidecar", "image": "proxy:1"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always"
                }
            }
        },
        "status": {"replicas": 2}
    });
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "$setElementOrder/volumes": [{"name": "data"}],
                "containers": [
                    {"name": "web", "image": "web:2",
                     "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
                     "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                     "env": [{"name": "C", "value": "3"}, {"name": "B", "$patch": "delete"}],
                     "ports": [{"containerPort": 443}]},
                    {"name": "sidecar", "$patch": "delete"}
                ],
                "volumes": [{"name": "data", "$retainKeys": ["configMap", "name"],
                             "configMap": {"name": "web-config"}, "emptyDir": null}]
            }}
        }
    });
    let got = strategic_merge_patch(&live, &patch, DEPLOYMENT).unwrap();
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": 3,
                     "annotations": {"deployment.kubernetes.io/revision": "3",
                                     "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "web:2",
                         // INJECTED was never applied by kubectl; upstream keeps it between
                         // its old neighbour and the newly added var.
                         "env": [{"name": "A", "value": "1"}, {"name": "INJECTED", "value": "x"},
                                 {"name": "C", "value": "3"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"},
                                   {"containerPort": 443}],
                         "terminationMessagePath": "/dev/termination-log"}
                    ],
                    "volumes": [{"name": "data", "configMap": {"name": "web-config"}}],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always"
                }
            }
        },
        "status": {"replicas": 2}
    });
    assert_eq!(got, expected, "\n  got: {got}");

    // A plain `kubectl patch` of the image touches nothing else.
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "proxy:2"}]}}}});
    let got = strategic_merge_patch(&live, &patch, DEPLOYMENT).unwrap();
    let containers = &got["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        names(containers, "name"),
        vec![json!("web"), json!("sidecar")]
    );
    assert_eq!(containers[1]["image"], json!("proxy:2"));
    assert_eq!(
        containers[0],
        live["spec"]["template"]["spec"]["containers"][0]
    );
}

#[test]
fn original_is_untouched() {
    let original = json!({"metadata": {"labels": {"a": "1"}}});
    let copy = original.clone();
    let _ = strategic_merge_patch(&original, &json!({"metadata": {"labels": null}}), POD);
    let _ = strategic_merge_patch(&original, &json!({"metadata": {"$patch": "bogus"}}), POD);
    assert_eq!(original, copy);
}

#[test]
fn key_order_is_preserved() {
    let original = json!({"a": 1, "b": 2, "c": 3});
    let got =
        strategic_merge_patch(&original, &json!({"b": null, "d": 4, "a": 5}), CUSTOM).unwrap();
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "c", "d"]);
}

#[test]
fn errors() {
    let cases: Vec<(&str, &str, Value, Value, PatchErrorKind, &str)> = vec![
        (
            "patch item without the merge key",
            POD_SPEC,
            json!({"containers": [{"name": "a"}]}),
            json!({"containers": [{"image": "x"}]}),
            PatchErrorKind::Internal,
            "does not contain declared merge key: name",
        ),
        (
            "delete directive without the merge key",
            POD_SPEC,
            json!({"containers": [{"name": "a"}]}),
            json!({"containers": [{"$patch": "delete"}]}),
            PatchErrorKind::Internal,
            "does not contain declared merge key: name",
        ),
        (
            "unknown $patch in a map",
            POD,
            json!({"metadata": {}}),
            json!({"metadata": {"$patch": "frobnicate"}}),
            PatchErrorKind::Internal,
            "unknown patch type: frobnicate",
        ),
        (
            "unknown $patch in a list item",
            POD_SPEC,
            json!({"containers": [{"name": "a"}]}),
            json!({"containers": [{"name": "a", "$patch": 7}]}),
            PatchErrorKind::Internal,
            "unknown patch type: 7",
        ),
        (
            "$patch: merge in a list",
            POD_SPEC,
            json!({"containers": [{"name": "a"}]}),
            json!({"containers": [{"$patch": "merge"}]}),
            PatchErrorKind::Internal,
            "merging lists cannot yet be specified in the patch",
        ),
        (
            "$setElementOrder without a field",
            POD_SPEC,
            json!({}),
            json!({"$setElementOrderX": []}),
            PatchErrorKind::BadRequest,
            "invalid patch format of setElementOrder list",
        ),
        (
            "$deleteFromPrimitiveList without a field",
            OBJECT_META,
            json!({}),
            json!({"$deleteFromPrimitiveList": ["a"]}),
            PatchErrorKind::BadRequest,
            "invalid patch format of primitive list",
        ),
        (
            "$setElementOrder that is not a list",
            POD_SPEC,
            json!({}),
            json!({"$setElementOrder/containers": "a"}),
            PatchErrorKind::Internal,
            "must be a list",
        ),
        (
            "$setElementOrder disagreeing with the patch list",
            POD_SPEC,
            json!({"containers": [{"name": "1"}, {"name": "3"}, {"name": "2"}]}),
            json!({"$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
                   "containers": [{"name": "3"}, {"name": "1"}]}),
            PatchErrorKind::Internal,
            "doesn't match $setElementOrder list",
        ),
        (
            "$setElementOrder disagreeing with a primitive patch list",
            OBJECT_META,
            json!({"finalizers": ["1", "3", "2"]}),
            json!({"$setElementOrder/finalizers": ["1", "2", "3"], "finalizers": ["3", "1"]}),
            PatchErrorKind::Internal,
            "doesn't match $setElementOrder list",
        ),
        (
            "$retainKeys that is not a list",
            DEPLOYMENT_SPEC,
            json!({"strategy": {}}),
            json!({"strategy": {"$retainKeys": "type"}}),
            PatchErrorKind::BadRequest,
            "invalid patch format of retainKeys",
        ),
        (
            "patch sets a field $retainKeys does not list",
            DEPLOYMENT_SPEC,
            json!({"strategy": {}}),
            json!({"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}),
            PatchErrorKind::BadRequest,
            "invalid patch format of retainKeys",
        ),
        (
            "lists of lists",
            OBJECT_META,
            json!({"finalizers": ["a"]}),
            json!({"finalizers": [["b"]]}),
            PatchErrorKind::Internal,
            "list element types are not identical",
        ),
        (
            "lists of lists in a fresh list",
            OBJECT_META,
            json!({"finalizers": []}),
            json!({"finalizers": [["b"]]}),
            PatchErrorKind::Unprocessable,
            "lists of lists are not supported",
        ),
        (
            "mixed element types",
            OBJECT_META,
            json!({"finalizers": ["a"]}),
            json!({"finalizers": [1]}),
            PatchErrorKind::Internal,
            "list element types are not identical",
        ),
        (
            "null list items",
            OBJECT_META,
            json!({"finalizers": []}),
            json!({"finalizers": [null]}),
            PatchErrorKind::Internal,
            "must not be null",
        ),
        (
            "scalars in a list merged by key",
            POD_SPEC,
            json!({"containers": []}),
            json!({"containers": ["a"]}),
            PatchErrorKind::Internal,
            "expected a map",
        ),
        (
            "patch that is not a map",
            POD,
            json!({}),
            json!([1]),
            PatchErrorKind::BadRequest,
            "must be a map",
        ),
        (
            "original that is not a map",
            POD,
            json!([1]),
            json!({}),
            PatchErrorKind::BadRequest,
            "invalid JSON document",
        ),
    ];
    for (name, definition, original, patch, kind, message) in cases {
        let err = strategic_merge_patch(&original, &patch, definition).expect_err(name);
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert!(err.message().contains(message), "{name}: {err}");
    }
}

#[test]
fn deep_patches_are_rejected_not_overflowed() {
    fn nested(depth: usize) -> Value {
        let mut v = json!({"leaf": true});
        for _ in 1..depth {
            v = json!({ "a": v });
        }
        v
    }
    // At the limit the recursion must still fit a test thread's stack.
    let at_limit = nested(MAX_PATCH_DEPTH);
    assert!(strategic_merge_patch(&json!({}), &at_limit, CUSTOM).is_ok());
    assert!(strategic_merge_patch(&at_limit, &at_limit, CUSTOM).is_ok());
    let err = strategic_merge_patch(&json!({}), &nested(MAX_PATCH_DEPTH + 1), CUSTOM).unwrap_err();
    assert_eq!(err.kind(), PatchErrorKind::BadRequest);

    let mut list_nest = json!([]);
    for _ in 1..MAX_PATCH_DEPTH {
        list_nest = json!([list_nest]);
    }
    let _ = strategic_merge_patch(
        &json!({"metadata": {"finalizers": ["x"]}}),
        &json!({"metadata": {"finalizers": list_nest}}),
        POD,
    );
}

/// Throws generated junk at the patcher: it must return, never panic.
#[test]
fn arbitrary_patches_never_panic() {
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() as usize) % items.len()]
        }
    }
    const KEYS: &[&str] = &[
        "name",
        "containers",
        "env",
        "ports",
        "containerPort",
        "finalizers",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/env",
        "$deleteFromPrimitiveList/finalizers",
        "$setElementOrder/finalizers",
        "volumes",
        "spec",
        "template",
        "metadata",
        "value",
        "image",
        "strategy",
        "type",
    ];
    const STRINGS: &[&str] = &["a", "b", "delete", "replace", "merge", "name", "x"];
    fn value(rng: &mut Rng, depth: u32) -> Value {
        match rng.next() % if depth > 5 { 4 } else { 7 } {
            0 => Value::Null,
            1 => json!(rng.next() % 3),
            2 => json!(rng.pick(STRINGS)),
            3 => json!(rng.next().is_multiple_of(2)),
            4 | 5 => {
                let mut map = serde_json::Map::new();
                for _ in 0..rng.next() % 4 {
                    map.insert(rng.pick(KEYS).to_string(), value(rng, depth + 1));
                }
                Value::Object(map)
            }
            _ => Value::Array((0..rng.next() % 4).map(|_| value(rng, depth + 1)).collect()),
        }
    }
    let live = json!({
        "metadata": {"name": "d", "finalizers": ["a", "b"]},
        "spec": {"strategy": {"type": "RollingUpdate"}, "template": {"spec": {
            "containers": [{"name": "a", "env": [{"name": "x", "value": "1"}],
                            "ports": [{"containerPort": 1}]},
                           {"name": "b"}],
            "volumes": [{"name": "v", "emptyDir": {}}]}}}
    });
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let patch = value(&mut rng, 0);
        let _ = strategic_merge_patch(&live, &patch, DEPLOYMENT);
        let _ = strategic_merge_patch(
            &live,
            &json!({"spec": {"template": {"spec": patch}}}),
            DEPLOYMENT,
        );
        let mut target = live.clone();
        let _ = crate::patch::merge_patch(&mut target, &patch);
        let mut target = live.clone();
        let _ = crate::patch::json_patch(&mut target, &json!([patch]));
    }
}
