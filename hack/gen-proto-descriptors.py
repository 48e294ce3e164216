#!/usr/bin/env python3
"""Generate common/src/protobuf/descriptors.json: the protobuf field table of every built-in type.

Facts are combined from two crates unpacked in the local cargo registry, so neither this script
nor CI needs the network (the generated file is committed):

* `k8s-pb` 0.9.0 (prost code generated from upstream's generated.proto files): message names,
  field numbers, wire types, repeated/map shape, message references, and the declaration order
  of fields, which is Go's struct order and so its JSON order;
* `k8s-openapi` 0.29.0, module v1_33 (generated from upstream's OpenAPI): which definitions and
  properties exist in v1.33, their JSON names, their group-version-kinds, and which properties
  are required (Go always serialises those, zero value included).

k8s-pb follows a newer release: fields and messages v1.33 lacks are dropped, and definitions it
lacks are reported. Whether a Go field is a pointer (so that an explicit zero is meaningful) is
recorded by neither crate, so the tables below carry that fact where it matters.

Usage: hack/gen-proto-descriptors.py [--k8s-pb DIR] [--k8s-openapi DIR] [--check]
Run `cargo fetch` (or `cargo info`/`cargo download` of both crates) first.
"""

import argparse
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "common/src/protobuf/descriptors.json")

# Rust module prefix in k8s-pb / k8s-openapi -> OpenAPI package prefix.
PACKAGE_ROOTS = [
    ("api", "io.k8s.api"),
    ("apimachinery", "io.k8s.apimachinery"),
    ("apiextensions_apiserver", "io.k8s.apiextensions-apiserver"),
    ("kube_aggregator", "io.k8s.kube-aggregator"),
]

# Packages served although no OpenAPI definition names them.
EXTRA_PACKAGES = {
    "io.k8s.apimachinery.pkg.apis.meta.v1",
    "io.k8s.apimachinery.pkg.runtime",
    "io.k8s.api.apidiscovery.v2",
    "io.k8s.api.apidiscovery.v2beta1",
}

# Messages whose JSON form is not an object of their fields; the codec handles them by name.
SPECIAL = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "microtime",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Duration": "duration",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "fieldsv1",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "quantity",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "rawextension",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON": "json",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1beta1.JSON": "json",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray": "schemaorarray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1beta1.JSONSchemaPropsOrArray": "schemaorarray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool": "schemaorbool",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1beta1.JSONSchemaPropsOrBool": "schemaorbool",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray": "schemaorstringarray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1beta1.JSONSchemaPropsOrStringArray": "schemaorstringarray",
}

# Kinds that travel in protobuf but have no x-kubernetes-group-version-kind in the OpenAPI facts.
EXTRA_KINDS = [
    ("meta.k8s.io", "v1", "PartialObjectMetadata", "io.k8s.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata"),
    ("meta.k8s.io", "v1", "PartialObjectMetadataList", "io.k8s.apimachinery.pkg.apis.meta.v1.PartialObjectMetadataList"),
    ("meta.k8s.io", "v1", "Status", "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
    ("meta.k8s.io", "v1", "WatchEvent", "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"),
    ("meta.k8s.io", "v1", "DeleteOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
    ("meta.k8s.io", "v1", "ListOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.ListOptions"),
    ("meta.k8s.io", "v1", "GetOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.GetOptions"),
    ("meta.k8s.io", "v1", "CreateOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.CreateOptions"),
    ("meta.k8s.io", "v1", "UpdateOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.UpdateOptions"),
    ("meta.k8s.io", "v1", "PatchOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.PatchOptions"),
    ("meta.k8s.io", "v1", "ApplyOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.ApplyOptions"),
    ("meta.k8s.io", "v1", "TableOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.TableOptions"),
    ("", "v1", "Status", "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
    ("", "v1", "List", "io.k8s.apimachinery.pkg.apis.meta.v1.List"),
    ("", "v1", "APIVersions", "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions"),
    ("", "v1", "APIGroupList", "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList"),
    ("", "v1", "APIGroup", "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup"),
    ("", "v1", "APIResourceList", "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList"),
    ("apidiscovery.k8s.io", "v2", "APIGroupDiscoveryList", "io.k8s.api.apidiscovery.v2.APIGroupDiscoveryList"),
    ("apidiscovery.k8s.io", "v2", "APIGroupDiscovery", "io.k8s.api.apidiscovery.v2.APIGroupDiscovery"),
    ("apidiscovery.k8s.io", "v2beta1", "APIGroupDiscoveryList", "io.k8s.api.apidiscovery.v2beta1.APIGroupDiscoveryList"),
    ("apidiscovery.k8s.io", "v2beta1", "APIGroupDiscovery", "io.k8s.api.apidiscovery.v2beta1.APIGroupDiscovery"),
]

# JSON names of properties of messages absent from the OpenAPI facts whose prost (snake_case)
# name does not turn back into the proto name by plain lowerCamel conversion.
JSON_NAME_OVERRIDES = {
    ("io.k8s.apimachinery.pkg.runtime.Unknown", "type_meta"): "typeMeta",
    ("io.k8s.api.core.v1.PodLogOptions", "insecure_skip_tls_verify_backend"): "insecureSkipTLSVerifyBackend",
}

# Optional int/bool fields that are plain (non-pointer) values in Go: a zero there means
# "unset" and Go's omitempty leaves it out of the JSON. Every other optional int/bool is a
# pointer in Go, so an explicit zero on the wire is kept.
NON_POINTER_SCALARS = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": ["generation"],
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status": ["code"],
    "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails": ["retryAfterSeconds"],
    "io.k8s.apimachinery.pkg.apis.meta.v1.ListOptions": ["watch", "allowWatchBookmarks", "limit"],
    "io.k8s.apimachinery.pkg.apis.meta.v1.PatchOptions": [],
    "io.k8s.apimachinery.pkg.apis.meta.v1.ApplyOptions": ["force"],
    "io.k8s.apimachinery.pkg.apis.meta.v1.Condition": ["observedGeneration"],
    "io.k8s.api.core.v1.Container": ["stdin", "stdinOnce", "tty"],
    "io.k8s.api.core.v1.EphemeralContainerCommon": ["stdin", "stdinOnce", "tty"],
    "io.k8s.api.core.v1.ContainerPort": ["hostPort"],
    "io.k8s.api.core.v1.VolumeMount": ["readOnly"],
    "io.k8s.api.core.v1.PodSpec": ["hostNetwork", "hostPID", "hostIPC"],
    "io.k8s.api.core.v1.Probe": [
        "initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold",
    ],
    "io.k8s.api.core.v1.ServicePort": ["nodePort"],
    "io.k8s.api.core.v1.ServiceSpec": ["publishNotReadyAddresses", "healthCheckNodePort"],
    "io.k8s.api.core.v1.NodeSpec": ["unschedulable"],
    "io.k8s.api.core.v1.ContainerStateTerminated": ["signal"],
    "io.k8s.api.core.v1.Event": ["count"],
    "io.k8s.api.core.v1.EventSeries": ["count"],
    "io.k8s.api.core.v1.ReplicationControllerSpec": ["minReadySeconds"],
    "io.k8s.api.core.v1.ReplicationControllerStatus": [
        "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration",
    ],
    "io.k8s.api.core.v1.AWSElasticBlockStoreVolumeSource": ["partition", "readOnly"],
    "io.k8s.api.core.v1.GCEPersistentDiskVolumeSource": ["partition", "readOnly"],
    "io.k8s.api.core.v1.ISCSIVolumeSource": ["readOnly", "chapAuthDiscovery", "chapAuthSession"],
    "io.k8s.api.core.v1.ISCSIPersistentVolumeSource": ["readOnly", "chapAuthDiscovery", "chapAuthSession"],
    "io.k8s.api.core.v1.NFSVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.RBDVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.RBDPersistentVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.CinderVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.CinderPersistentVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.CephFSVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.CephFSPersistentVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.FCVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.FlexVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.FlexPersistentVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.AzureFileVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.AzureFilePersistentVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.GlusterfsVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.GlusterfsPersistentVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.PersistentVolumeClaimVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.PortworxVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.QuobyteVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.ScaleIOVolumeSource": ["sslEnabled", "readOnly"],
    "io.k8s.api.core.v1.ScaleIOPersistentVolumeSource": ["sslEnabled", "readOnly"],
    "io.k8s.api.core.v1.StorageOSVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.StorageOSPersistentVolumeSource": ["readOnly"],
    "io.k8s.api.core.v1.PodLogOptions": ["follow", "previous", "timestamps", "insecureSkipTLSVerifyBackend"],
    "io.k8s.api.core.v1.PodAttachOptions": ["stdin", "stdout", "stderr", "tty"],
    "io.k8s.api.core.v1.PodExecOptions": ["stdin", "stdout", "stderr", "tty"],
    "io.k8s.api.apps.v1.DeploymentSpec": ["minReadySeconds", "paused"],
    "io.k8s.api.apps.v1.DeploymentStatus": [
        "observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
        "unavailableReplicas",
    ],
    "io.k8s.api.apps.v1.ReplicaSetSpec": ["minReadySeconds"],
    "io.k8s.api.apps.v1.ReplicaSetStatus": [
        "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration",
    ],
    "io.k8s.api.apps.v1.StatefulSetSpec": ["minReadySeconds"],
    "io.k8s.api.apps.v1.StatefulSetStatus": [
        "observedGeneration", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas",
    ],
    "io.k8s.api.apps.v1.DaemonSetSpec": ["minReadySeconds"],
    "io.k8s.api.apps.v1.DaemonSetStatus": [
        "observedGeneration", "updatedNumberScheduled", "numberAvailable", "numberUnavailable",
    ],
    "io.k8s.api.batch.v1.JobStatus": ["active", "succeeded", "failed"],
    "io.k8s.api.autoscaling.v1.ScaleSpec": ["replicas"],
    "io.k8s.api.autoscaling.v1.HorizontalPodAutoscalerStatus": [],
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus": ["currentReplicas"],
    "io.k8s.api.policy.v1.PodDisruptionBudgetStatus": ["observedGeneration"],
    "io.k8s.api.storage.v1.VolumeAttachmentStatus": [],
    "io.k8s.api.authentication.v1.TokenReviewStatus": ["authenticated"],
    "io.k8s.api.scheduling.v1.PriorityClass": ["globalDefault"],
    "io.k8s.api.networking.v1.ServiceBackendPort": ["number"],
    "io.k8s.api.flowcontrol.v1.QueuingConfiguration": ["queues", "handSize", "queueLengthLimit"],
    "io.k8s.api.flowcontrol.v1.FlowSchemaSpec": ["matchingPrecedence"],
    "io.k8s.api.core.v1.PodCondition": ["observedGeneration"],
    "io.k8s.api.core.v1.PodStatus": ["observedGeneration"],
    "io.k8s.api.core.v1.CSIPersistentVolumeSource": ["readOnly"],
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec": [
        "preserveUnknownFields",
    ],
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion": ["deprecated"],
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceColumnDefinition": ["priority"],
    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceSpec": ["insecureSkipTLSVerify"],
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps": [
        "exclusiveMaximum", "exclusiveMinimum", "uniqueItems", "nullable",
        "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
    ],
    "io.k8s.api.authorization.v1.SubjectAccessReviewStatus": ["denied"],
    "io.k8s.api.authorization.v1.SubjectRulesReviewStatus": [],
    "io.k8s.api.authorization.v1.ResourceAttributes": [],
    "io.k8s.api.events.v1.EventSeries": [],
    "io.k8s.api.networking.v1.IngressPortStatus": [],
    "io.k8s.api.flowcontrol.v1.LimitedPriorityLevelConfiguration": [],
}

# Optional string fields that are pointers in Go, so that "" on the wire is kept; every other
# optional string is a plain value whose "" means unset.
POINTER_STRINGS = {
    "io.k8s.api.core.v1.PersistentVolumeClaimSpec": [
        "storageClassName", "volumeAttributesClassName", "volumeMode",
    ],
    "io.k8s.api.core.v1.PersistentVolumeClaimStatus": ["currentVolumeAttributesClassName"],
    "io.k8s.api.core.v1.PersistentVolumeSpec": ["volumeAttributesClassName", "volumeMode"],
    "io.k8s.api.core.v1.AzureDiskVolumeSource": ["cachingMode", "fsType", "kind"],
    "io.k8s.api.core.v1.ISCSIVolumeSource": ["initiatorName"],
    "io.k8s.api.core.v1.ISCSIPersistentVolumeSource": ["initiatorName"],
    "io.k8s.api.core.v1.EndpointAddress": ["nodeName"],
    "io.k8s.api.core.v1.TypedLocalObjectReference": ["apiGroup"],
    "io.k8s.api.core.v1.TypedObjectReference": ["apiGroup", "namespace"],
    "io.k8s.api.core.v1.ServiceSpec": ["loadBalancerClass"],
    "io.k8s.api.core.v1.GRPCAction": ["service"],
    "io.k8s.api.core.v1.SecurityContext": ["procMount"],
    "io.k8s.api.core.v1.ServicePort": ["appProtocol"],
    "io.k8s.api.core.v1.EndpointPort": ["appProtocol"],
    "io.k8s.api.core.v1.ContainerPort": [],
    "io.k8s.api.core.v1.LocalVolumeSource": ["fsType"],
    "io.k8s.api.core.v1.CSIVolumeSource": ["fsType"],
    "io.k8s.api.core.v1.ConfigMapKeySelector": [],
    "io.k8s.api.core.v1.PodSecurityContext": ["fsGroupChangePolicy"],
    "io.k8s.api.core.v1.LoadBalancerIngress": ["ipMode"],
    "io.k8s.api.networking.v1.IngressSpec": ["ingressClassName"],
    "io.k8s.api.networking.v1.IngressClassParametersReference": ["apiGroup", "scope", "namespace"],
    "io.k8s.api.networking.v1.IngressPortStatus": ["error"],
    "io.k8s.api.networking.v1.HTTPIngressPath": ["pathType"],
    "io.k8s.api.discovery.v1.EndpointPort": ["name", "protocol", "appProtocol"],
    "io.k8s.api.discovery.v1.Endpoint": ["hostname", "nodeName", "zone"],
    "io.k8s.api.batch.v1.JobSpec": ["completionMode", "podReplacementPolicy", "managedBy"],
    "io.k8s.api.batch.v1.JobStatus": ["failedIndexes"],
    "io.k8s.api.batch.v1.CronJobSpec": ["timeZone"],
    "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement": ["containerName"],
    "io.k8s.api.apps.v1.DeploymentStatus": [],
    "io.k8s.api.policy.v1.PodDisruptionBudgetSpec": ["unhealthyPodEvictionPolicy"],
    "io.k8s.api.storage.v1.StorageClass": ["reclaimPolicy", "volumeBindingMode"],
    "io.k8s.api.storage.v1.VolumeAttachmentSource": ["persistentVolumeName"],
    "io.k8s.api.storage.v1.CSIDriverSpec": ["fsGroupPolicy"],
    "io.k8s.api.coordination.v1.LeaseSpec": ["holderIdentity", "strategy", "preferredHolder"],
    "io.k8s.api.authentication.v1.BoundObjectReference": [],
    "io.k8s.api.rbac.v1.Subject": [],
    "io.k8s.api.admissionregistration.v1.ValidatingWebhook": ["failurePolicy", "matchPolicy", "sideEffects"],
    "io.k8s.api.admissionregistration.v1.MutatingWebhook": [
        "failurePolicy", "matchPolicy", "sideEffects", "reinvocationPolicy",
    ],
    "io.k8s.api.admissionregistration.v1.WebhookClientConfig": ["url"],
    "io.k8s.api.admissionregistration.v1.ServiceReference": ["path"],
    "io.k8s.api.admissionregistration.v1.Rule": ["scope"],
    "io.k8s.api.admissionregistration.v1.Rule": ["scope"],
    "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec": ["failurePolicy"],
    "io.k8s.api.admissionregistration.v1.MatchResources": ["matchPolicy"],
    "io.k8s.api.admissionregistration.v1.ParamRef": ["parameterNotFoundAction"],
    "io.k8s.api.admissionregistration.v1.Validation": ["reason"],
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ServiceReference": ["path"],
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookClientConfig": ["url"],
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ValidationRule": ["reason"],
    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.ServiceReference": [],
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions": ["propagationPolicy"],
    "io.k8s.apimachinery.pkg.apis.meta.v1.Preconditions": ["uid", "resourceVersion"],
    "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry": [],
    "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta": [],
}

# Properties the OpenAPI marks required only because they carry a default, while Go still tags
# them omitempty: an empty value stays out of the JSON.
OMITEMPTY_REQUIRED = {
    "io.k8s.api.core.v1.LocalObjectReference": ["name"],
}

# Optional properties whose Go JSON tag lacks omitempty: Go prints them even when empty.
ALWAYS_PRINTED = {
    "io.k8s.api.core.v1.Event": ["reportingComponent", "reportingInstance"],
}

SCALARS = {"string": "s", "bool": "b", "int32": "i", "int64": "l", "double": "d", "bytes": "y"}


def norm(name):
    """Case- and punctuation-free form under which prost and OpenAPI names coincide."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def lower_camel(snake):
    parts = snake.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def package_of(module_parts):
    for rust, pkg in PACKAGE_ROOTS:
        if module_parts[0] == rust:
            return ".".join([pkg] + module_parts[1:])
    return None


def find_crate(name, override):
    if override:
        return override
    home = os.path.expanduser("~")
    hits = sorted(glob.glob(os.path.join(home, ".cargo/registry/src/*", name)))
    hits += sorted(glob.glob(os.path.join("/tmp/x", name)))
    if not hits:
        sys.exit(f"{name} not found: run `cargo fetch` or pass its directory")
    return hits[0]


STRUCT_RE = re.compile(r"^pub struct (\w+) \{")
PROST_RE = re.compile(r"#\[prost\((.*)\)\]")


def parse_prost_file(path, module):
    """Yield (struct, [(attr, rust_field, rust_type)]) for each message of one prost file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = STRUCT_RE.match(lines[i])
        if m is None:
            i += 1
            continue
        name = m.group(1)
        fields = []
        if lines[i].rstrip().endswith("{}"):
            yield name, fields
            i += 1
            continue
        i += 1
        while i < len(lines) and lines[i] != "}":
            pm = PROST_RE.search(lines[i])
            if pm is None:
                i += 1
                continue
            attr = pm.group(1)
            i += 1
            decl = ""
            depth = 0
            while i < len(lines):
                part = lines[i].strip()
                decl += part
                depth += part.count("<") - part.count(">")
                i += 1
                if depth == 0 and decl.endswith(","):
                    break
            fm = re.match(r"pub (?:r#)?(\w+):\s*(.*),$", decl)
            if fm is None:
                sys.exit(f"cannot parse field in {path}: {decl}")
            fields.append((attr, fm.group(1), fm.group(2)))
        yield name, fields


def resolve_type(rust_type, module):
    """Module path and name of the message a Rust field type refers to."""
    inner = rust_type
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while inner.startswith(wrapper):
            inner = inner[len(wrapper):-1]
    if inner.startswith("::prost::alloc::collections::BTreeMap<"):
        inner = inner[len("::prost::alloc::collections::BTreeMap<"):-1]
        inner = inner.split(",", 1)[1].strip().rstrip(",")
    inner = inner.rstrip(",")
    parts = inner.split("::")
    base = list(module)
    while parts and parts[0] == "super":
        base.pop()
        parts.pop(0)
    if len(parts) == 1:
        return module, parts[0]
    return base + parts[:-1], parts[-1]


def load_k8s_pb(root):
    messages = {}
    for path in sorted(glob.glob(os.path.join(root, "src/**/mod.rs"), recursive=True)):
        rel = os.path.relpath(os.path.dirname(path), os.path.join(root, "src"))
        module = rel.split(os.sep)
        if package_of(module) is None:
            continue
        for name, fields in parse_prost_file(path, module):
            messages[(tuple(module), name)] = fields
    return messages


def load_openapi(root):
    """Definitions of the k8s-openapi v1_33 module.

    Returns {definition: {"props": {norm(json): json}, "required": {json}, "gvk": (g, v, k) or None}}.
    """
    defs = {}
    base = os.path.join(root, "src/v1_33")
    for path in glob.glob(os.path.join(base, "**/*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        dm = re.match(r"// Generated from definition (\S+)", text)
        if dm is None:
            continue
        name = dm.group(1)
        sm = re.search(r"\npub struct \w+ \{(.*?)\n\}", text, re.S)
        json_of = dict((rust, js) for js, rust in re.findall(r'"([^"]+)" => Field::Key_(\w+),', text))
        props, required = {}, set()
        if sm is not None:
            for fm in re.finditer(r"\n    pub (?:r#)?(\w+): ([^\n]*),", sm.group(1)):
                js = json_of.get(fm.group(1))
                if js is None:
                    continue
                props[norm(js)] = js
                if not fm.group(2).startswith("Option<"):
                    required.add(js)
        gvk = None
        gm = re.search(
            r'const GROUP: &\'static str = "([^"]*)";\s*const KIND: &\'static str = "([^"]*)";'
            r'\s*const VERSION: &\'static str = "([^"]*)";',
            text,
        )
        if gm is not None:
            gvk = (gm.group(1), gm.group(3), gm.group(2))
        defs[name] = {"props": props, "required": required, "gvk": gvk}
    return defs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-pb")
    ap.add_argument("--k8s-openapi")
    ap.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = ap.parse_args()

    openapi = load_openapi(find_crate("k8s-openapi-0.29.0", args.k8s_openapi))
    packages = {n.rsplit(".", 1)[0] for n in openapi} | EXTRA_PACKAGES
    pb = load_k8s_pb(find_crate("k8s-pb-0.9.0", args.k8s_pb))

    by_norm = {}
    for n in openapi:
        pkg, short = n.rsplit(".", 1)
        by_norm[(pkg, norm(short))] = n

    # Name every prost message after its OpenAPI definition when one exists.
    names = {}
    for module, rust_name in pb:
        pkg = package_of(list(module))
        if pkg not in packages:
            continue
        names[(module, rust_name)] = by_norm.get((pkg, norm(rust_name)), f"{pkg}.{rust_name}")

    def field_kind(attr):
        kind = attr.split(",")[0].strip().split(" ")[0]
        if kind.startswith("btree_map"):
            return re.search(r'btree_map = "string, (\w+)"', attr).group(1), "m"
        return kind, ("r" if " repeated" in attr else "")

    def target_of(key, rust_type):
        mod, nm = resolve_type(rust_type, list(key[0]))
        return names.get((tuple(mod), nm))

    # Go structs embedded inline (Volume.volumeSource, Probe.handler, ...) have no definition of
    # their own: their fields take their JSON names from the definition that embeds them.
    inherited = {}
    inline_fields = set()
    by_name = {names[k]: k for k in names}

    def visible(target, seen=()):
        """Normalised JSON names a message contributes, with its inline members expanded."""
        key = by_name.get(target)
        result = set()
        for attr, rust_field, rust_type in pb.get(key, []):
            if (target, rust_field) in inline_fields and target not in seen:
                result |= visible(target_of(key, rust_type), seen + (target,))
            else:
                result.add(norm(rust_field))
        return result

    changed = True
    while changed:
        changed = False
        for key, fields in pb.items():
            if key not in names:
                continue
            parent = names[key]
            owner = parent if parent in openapi else inherited.get(parent)
            if owner is None:
                continue
            props = openapi[owner]["props"]
            if not props:
                continue
            for attr, rust_field, rust_type in fields:
                kind, shape = field_kind(attr)
                if kind != "message" or shape or norm(rust_field) in props:
                    continue
                if (parent, rust_field) in inline_fields:
                    continue
                target = target_of(key, rust_type)
                inner = visible(target)
                # Fields newer than v1.33 may be missing from the parent, so a majority decides.
                if inner and 2 * len(inner & set(props)) > len(inner):
                    if target not in openapi:
                        inherited[target] = inherited.get(parent, parent)
                    inline_fields.add((parent, rust_field))
                    changed = True

    # Go types declared as []string (ExtraValue, Verbs) are wrapped in a message on the wire only.
    special = dict(SPECIAL)
    for key, fields in pb.items():
        if key in names and names[key] not in openapi and len(fields) == 1:
            attr, rust_field, _ = fields[0]
            if rust_field == "items" and field_kind(attr) == ("string", "r"):
                special[names[key]] = "stringlist"

    warnings = []
    out = {}
    for key, fields in sorted(pb.items()):
        if key not in names:
            continue
        full = names[key]
        if full in special:
            continue
        module = list(key[0])
        d = openapi.get(full)
        owner = openapi.get(inherited.get(full))
        props = (d or owner or {}).get("props", {})
        req = (d or owner or {}).get("required", set())
        nonptr = set(NON_POINTER_SCALARS.get(full, []))
        ptrstr = set(POINTER_STRINGS.get(full, []))
        rows = []
        used = set()
        for attr, rust_field, rust_type in fields:
            tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
            kind, flags = field_kind(attr)
            if kind == "message":
                typ = target_of(key, rust_type)
                if typ is None:
                    sys.exit(f"{full}.{rust_field}: unresolved message type {rust_type}")
            elif kind in SCALARS:
                typ = SCALARS[kind]
            else:
                sys.exit(f"{full}.{rust_field}: unknown prost kind {kind}")
            if (full, rust_field) in inline_fields:
                json_name = lower_camel(rust_field)
                flags += "i"
            elif props:
                json_name = props.get(norm(rust_field))
                if json_name is None:
                    # Newer than v1.33: a v1.33 server skips it like any unknown field.
                    warnings.append(f"{full}: proto field {rust_field} is not in v1.33, dropped")
                    continue
            else:
                json_name = JSON_NAME_OVERRIDES.get((full, rust_field), lower_camel(rust_field))
            used.add(json_name)
            if not flags:
                if json_name in ALWAYS_PRINTED.get(full, []) or (
                    json_name in req and json_name not in OMITEMPTY_REQUIRED.get(full, [])
                ):
                    flags += "q"
                elif typ in ("b", "i", "l", "d") and json_name not in nonptr:
                    flags += "p"
                elif typ == "s" and json_name in ptrstr:
                    flags += "p"
            rows.append([tag, json_name, typ, flags] if flags else [tag, json_name, typ])
        if d and not any(len(r) > 3 and "i" in r[3] for r in rows):
            for js in d["props"].values():
                if js not in used and js not in ("apiVersion", "kind"):
                    warnings.append(f"{full}: v1.33 property {js} has no proto field")
        for table in (NON_POINTER_SCALARS, POINTER_STRINGS):
            for p in table.get(full, []):
                if p not in used:
                    warnings.append(f"{full}: listed field {p} does not exist")
        # Declaration order is Go's struct order, which is also its JSON order.
        out[full] = rows

    for n, d in openapi.items():
        if n not in out and n not in special and d["props"]:
            warnings.append(f"{n}: v1.33 definition without a proto message")
    for table in (NON_POINTER_SCALARS, POINTER_STRINGS):
        for n in table:
            if n not in out:
                warnings.append(f"{n}: listed message does not exist")

    kinds = set()
    for n, d in openapi.items():
        if d["gvk"] and n in out:
            g, v, k = d["gvk"]
            kinds.add((g, v, k, n))
            lst = n + "List"
            if lst in out:
                kinds.add((g, v, k + "List", lst))
    for k in EXTRA_KINDS:
        if k[3] in out:
            kinds.add(k)
    # Keep only what a served kind can reach: k8s-pb also describes types newer than v1.33.
    reachable = set()
    todo = [k[3] for k in kinds]
    while todo:
        n = todo.pop()
        if n in reachable or n not in out:
            continue
        reachable.add(n)
        todo.extend(r[2] for r in out[n] if r[2] in out)
    out = {n: rows for n, rows in sorted(out.items()) if n in reachable}
    doc = {
        "special": dict(sorted(special.items())),
        "kinds": [list(k) for k in sorted(kinds)],
        "messages": out,
    }
    text = json.dumps(doc, separators=(",", ":")) + "\n"
    for w in sorted(set(warnings)):
        print("note:", w, file=sys.stderr)
    if args.check:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{OUT} is stale: rerun hack/gen-proto-descriptors.py")
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(out)} messages, {len(kinds)} kinds, {len(text)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
