//! The built-in resources of upstream v1.33, with the names, scopes, verbs and subresources
//! that `kubectl api-resources` shows against upstream.

use super::{Resource, Storage, Subresource, CREATE_ONLY, CRUD};

const STATUS: Subresource = Subresource {
    name: "status",
    kind: None,
    verbs: &["get", "patch", "update"],
};
const SCALE: Subresource = Subresource {
    name: "scale",
    kind: Some(("autoscaling", "v1", "Scale")),
    verbs: &["get", "patch", "update"],
};

fn sub(
    name: &'static str,
    kind: (&'static str, &'static str, &'static str),
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        kind: Some(kind),
        verbs,
    }
}

/// One row, with the defaults most rows share; the builder methods below adjust it.
fn row(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    definition: &str,
) -> Resource {
    Resource {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        short_names: vec![],
        categories: vec![],
        namespaced,
        verbs: CRUD.iter().map(|v| v.to_string()).collect(),
        subresources: vec![],
        storage: Storage::Keyed {
            prefix: plural.into(),
        },
        definition: definition.into(),
        create_on_update: false,
        return_deleted_object: false,
        preferred: true,
    }
}

impl Resource {
    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn cats(mut self, cats: &[&str]) -> Self {
        self.categories = cats.iter().map(|s| s.to_string()).collect();
        self
    }
    fn subs(mut self, subs: Vec<Subresource>) -> Self {
        self.subresources = subs;
        self
    }
    fn prefix(mut self, prefix: &str) -> Self {
        self.storage = Storage::Keyed {
            prefix: prefix.into(),
        };
        self
    }
    fn verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|v| v.to_string()).collect();
        self
    }
    fn virtual_only(mut self) -> Self {
        self.storage = Storage::Virtual;
        self
    }
    fn create_on_update(mut self) -> Self {
        self.create_on_update = true;
        self
    }
    fn returns_deleted(mut self) -> Self {
        self.return_deleted_object = true;
        self
    }
    fn not_preferred(mut self) -> Self {
        self.preferred = false;
        self
    }
}

pub fn builtin_resources() -> Vec<Resource> {
    const CORE: &str = "io.k8s.api.core.v1";
    let core = |kind: &str, plural: &str, ns: bool| {
        row("", "v1", kind, plural, ns, &format!("{CORE}.{kind}"))
    };
    let mut rows = vec![
        core("Binding", "bindings", true)
            .verbs(CREATE_ONLY)
            .virtual_only(),
        core("ComponentStatus", "componentstatuses", false)
            .short(&["cs"])
            .verbs(&["get", "list"])
            .virtual_only(),
        core("ConfigMap", "configmaps", true).short(&["cm"]),
        core("Endpoints", "endpoints", true)
            .short(&["ep"])
            .prefix("services/endpoints")
            .create_on_update(),
        core("Event", "events", true)
            .short(&["ev"])
            .create_on_update(),
        core("LimitRange", "limitranges", true)
            .short(&["limits"])
            .create_on_update(),
        core("Namespace", "namespaces", false)
            .short(&["ns"])
            .verbs(&[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ])
            .subs(vec![
                sub("finalize", ("", "v1", "Namespace"), &["update"]),
                STATUS,
            ]),
        core("Node", "nodes", false)
            .short(&["no"])
            .prefix("minions")
            .subs(vec![
                sub(
                    "proxy",
                    ("", "v1", "NodeProxyOptions"),
                    &["create", "delete", "get", "patch", "update"],
                ),
                STATUS,
            ]),
        core("PersistentVolumeClaim", "persistentvolumeclaims", true)
            .short(&["pvc"])
            .subs(vec![STATUS]),
        core("PersistentVolume", "persistentvolumes", false)
            .short(&["pv"])
            .subs(vec![STATUS]),
        core("Pod", "pods", true)
            .short(&["po"])
            .cats(&["all"])
            .returns_deleted()
            .subs(vec![
                sub("attach", ("", "v1", "PodAttachOptions"), &["create", "get"]),
                sub("binding", ("", "v1", "Binding"), &["create"]),
                sub(
                    "ephemeralcontainers",
                    ("", "v1", "Pod"),
                    &["get", "patch", "update"],
                ),
                sub("eviction", ("policy", "v1", "Eviction"), &["create"]),
                sub("exec", ("", "v1", "PodExecOptions"), &["create", "get"]),
                sub("log", ("", "v1", "Pod"), &["get"]),
                sub(
                    "portforward",
                    ("", "v1", "PodPortForwardOptions"),
                    &["create", "get"],
                ),
                sub(
                    "proxy",
                    ("", "v1", "PodProxyOptions"),
                    &["create", "delete", "get", "patch", "update"],
                ),
                sub("resize", ("", "v1", "Pod"), &["get", "patch", "update"]),
                STATUS,
            ]),
        core("PodTemplate", "podtemplates", true),
        core("ReplicationController", "replicationcontrollers", true)
            .short(&["rc"])
            .cats(&["all"])
            .prefix("controllers")
            .subs(vec![SCALE, STATUS]),
        core("ResourceQuota", "resourcequotas", true)
            .short(&["quota"])
            .subs(vec![STATUS]),
        core("Secret", "secrets", true),
        core("ServiceAccount", "serviceaccounts", true)
            .short(&["sa"])
            .subs(vec![sub(
                "token",
                ("authentication.k8s.io", "v1", "TokenRequest"),
                &["create"],
            )]),
        core("Service", "services", true)
            .short(&["svc"])
            .cats(&["all"])
            .prefix("services/specs")
            .returns_deleted()
            .subs(vec![
                sub(
                    "proxy",
                    ("", "v1", "ServiceProxyOptions"),
                    &["create", "delete", "get", "patch", "update"],
                ),
                STATUS,
            ]),
    ];

    const ADM: &str = "io.k8s.api.admissionregistration.v1";
    let adm = |kind: &str, plural: &str| {
        row(
            "admissionregistration.k8s.io",
            "v1",
            kind,
            plural,
            false,
            &format!("{ADM}.{kind}"),
        )
        .cats(&["api-extensions"])
    };
    rows.extend([
        adm(
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
        adm("ValidatingAdmissionPolicy", "validatingadmissionpolicies").subs(vec![STATUS]),
        adm(
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
        adm(
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        row(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        )
        .short(&["crd", "crds"])
        .cats(&["api-extensions"])
        .prefix("apiextensions.k8s.io/customresourcedefinitions")
        .returns_deleted()
        .subs(vec![STATUS]),
        row(
            "apiregistration.k8s.io",
            "v1",
            "APIService",
            "apiservices",
            false,
            "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService",
        )
        .cats(&["api-extensions"])
        .prefix("apiregistration.k8s.io/apiservices")
        .subs(vec![STATUS]),
    ]);

    const APPS: &str = "io.k8s.api.apps.v1";
    let apps =
        |kind: &str, plural: &str| row("apps", "v1", kind, plural, true, &format!("{APPS}.{kind}"));
    rows.extend([
        apps("ControllerRevision", "controllerrevisions"),
        apps("DaemonSet", "daemonsets")
            .short(&["ds"])
            .cats(&["all"])
            .subs(vec![STATUS]),
        apps("Deployment", "deployments")
            .short(&["deploy"])
            .cats(&["all"])
            .subs(vec![SCALE, STATUS]),
        apps("ReplicaSet", "replicasets")
            .short(&["rs"])
            .cats(&["all"])
            .subs(vec![SCALE, STATUS]),
        apps("StatefulSet", "statefulsets")
            .short(&["sts"])
            .cats(&["all"])
            .subs(vec![SCALE, STATUS]),
    ]);

    let review = |group: &str, kind: &str, plural: &str, ns: bool, pkg: &str| {
        row(
            group,
            "v1",
            kind,
            plural,
            ns,
            &format!("io.k8s.api.{pkg}.v1.{kind}"),
        )
        .verbs(CREATE_ONLY)
        .virtual_only()
    };
    rows.extend([
        review(
            "authentication.k8s.io",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
            "authentication",
        ),
        review(
            "authentication.k8s.io",
            "TokenReview",
            "tokenreviews",
            false,
            "authentication",
        ),
        review(
            "authorization.k8s.io",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
            "authorization",
        ),
        review(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
            "authorization",
        ),
        review(
            "authorization.k8s.io",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            false,
            "authorization",
        ),
        review(
            "authorization.k8s.io",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
            "authorization",
        ),
    ]);

    rows.extend([
        row(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        )
        .short(&["hpa"])
        .cats(&["all"])
        .subs(vec![STATUS]),
        row(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler",
        )
        .short(&["hpa"])
        .cats(&["all"])
        .subs(vec![STATUS])
        .not_preferred(),
        row(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            true,
            "io.k8s.api.batch.v1.CronJob",
        )
        .short(&["cj"])
        .cats(&["all"])
        .subs(vec![STATUS]),
        row(
            "batch",
            "v1",
            "Job",
            "jobs",
            true,
            "io.k8s.api.batch.v1.Job",
        )
        .cats(&["all"])
        .subs(vec![STATUS]),
        row(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            false,
            "io.k8s.api.certificates.v1.CertificateSigningRequest",
        )
        .short(&["csr"])
        .subs(vec![
            sub(
                "approval",
                ("certificates.k8s.io", "v1", "CertificateSigningRequest"),
                &["get", "patch", "update"],
            ),
            STATUS,
        ]),
        row(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            "io.k8s.api.coordination.v1.Lease",
        ),
        row(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            "io.k8s.api.discovery.v1.EndpointSlice",
        ),
        row(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            "io.k8s.api.events.v1.Event",
        )
        .short(&["ev"])
        .create_on_update(),
        row(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "FlowSchema",
            "flowschemas",
            false,
            "io.k8s.api.flowcontrol.v1.FlowSchema",
        )
        .subs(vec![STATUS]),
        row(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            false,
            "io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration",
        )
        .subs(vec![STATUS]),
    ]);

    const NET: &str = "io.k8s.api.networking.v1";
    let net = |kind: &str, plural: &str, ns: bool| {
        row(
            "networking.k8s.io",
            "v1",
            kind,
            plural,
            ns,
            &format!("{NET}.{kind}"),
        )
    };
    rows.extend([
        net("IPAddress", "ipaddresses", false).short(&["ip"]),
        net("IngressClass", "ingressclasses", false),
        net("Ingress", "ingresses", true)
            .short(&["ing"])
            .prefix("ingress")
            .subs(vec![STATUS]),
        net("NetworkPolicy", "networkpolicies", true).short(&["netpol"]),
        net("ServiceCIDR", "servicecidrs", false).subs(vec![STATUS]),
        row(
            "node.k8s.io",
            "v1",
            "RuntimeClass",
            "runtimeclasses",
            false,
            "io.k8s.api.node.v1.RuntimeClass",
        ),
        row(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            "io.k8s.api.policy.v1.PodDisruptionBudget",
        )
        .short(&["pdb"])
        .subs(vec![STATUS]),
    ]);

    const RBAC: &str = "io.k8s.api.rbac.v1";
    let rbac = |kind: &str, plural: &str, ns: bool| {
        row(
            "rbac.authorization.k8s.io",
            "v1",
            kind,
            plural,
            ns,
            &format!("{RBAC}.{kind}"),
        )
        .create_on_update()
    };
    rows.extend([
        rbac("ClusterRoleBinding", "clusterrolebindings", false),
        rbac("ClusterRole", "clusterroles", false),
        rbac("RoleBinding", "rolebindings", true),
        rbac("Role", "roles", true),
        row(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            false,
            "io.k8s.api.scheduling.v1.PriorityClass",
        )
        .short(&["pc"]),
    ]);

    const STORAGE: &str = "io.k8s.api.storage.v1";
    let storage = |kind: &str, plural: &str, ns: bool| {
        row(
            "storage.k8s.io",
            "v1",
            kind,
            plural,
            ns,
            &format!("{STORAGE}.{kind}"),
        )
    };
    rows.extend([
        storage("CSIDriver", "csidrivers", false),
        storage("CSINode", "csinodes", false),
        storage("CSIStorageCapacity", "csistoragecapacities", true),
        storage("StorageClass", "storageclasses", false).short(&["sc"]),
        storage("VolumeAttachment", "volumeattachments", false).subs(vec![STATUS]),
    ]);
    rows
}
