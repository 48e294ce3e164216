//! Printers of the smaller groups: policy, certificates, coordination, scheduling, node,
//! resource, storage migration, storage versions and API services.

use serde_json::{json, Value};

use super::super::{human_duration, Column, Printer};
use super::util::{
    at, condition, created, int_at, items, list_with_more, name, opt_bool, opt_int, opt_str,
    str_at, str_or,
};
use super::Cells;

/// An int-or-string field as upstream prints it, or "N/A" when unset.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".into(),
    }
}

const POD_DISRUPTION_BUDGET: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Min Available",
            "string",
            "The minimum number of pods that must be available.",
        ),
        Column::new(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable.",
        ),
        Column::new(
            "Allowed Disruptions",
            "integer",
            "How many pods may be disrupted right now.",
        ),
        Column::age(),
    ],
    cells: |pdb| {
        vec![
            name(pdb),
            json!(int_or_string(at(pdb, "spec.minAvailable"))),
            json!(int_or_string(at(pdb, "spec.maxUnavailable"))),
            json!(int_at(pdb, "status.disruptionsAllowed")),
            created(pdb),
        ]
    },
};

const CERTIFICATE_SIGNING_REQUEST: Cells = Cells {
    columns: &[
        Column::name(),
        Column::age(),
        Column::new(
            "SignerName",
            "string",
            "The signer asked to sign the request.",
        ),
        Column::new("Requestor", "string", "The user who made the request."),
        Column::new(
            "RequestedDuration",
            "string",
            "How long the certificate should be valid.",
        ),
        Column::new(
            "Condition",
            "string",
            "Where the request is in its approval and signing.",
        ),
    ],
    cells: |csr| {
        let duration = opt_int(csr, "spec.expirationSeconds")
            .map_or_else(|| "<none>".to_string(), human_duration);
        vec![
            name(csr),
            created(csr),
            json!(opt_str(csr, "spec.signerName")
                .filter(|s| !s.is_empty())
                .unwrap_or("<none>")),
            json!(str_at(csr, "spec.username")),
            json!(duration),
            json!(csr_condition(csr)),
        ]
    },
};

fn csr_condition(csr: &Value) -> String {
    let has = |kind: &str| condition(csr, "status.conditions", kind).is_some();
    // Denial overrides approval, whatever order the conditions came in.
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(csr, "status.certificate").is_empty() {
        status.push_str(",Issued");
    }
    status
}

const CLUSTER_TRUST_BUNDLE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("SignerName", "string", "The signer the bundle belongs to."),
    ],
    cells: |ctb| {
        vec![
            name(ctb),
            json!(opt_str(ctb, "spec.signerName")
                .filter(|s| !s.is_empty())
                .unwrap_or("<none>")),
        ]
    },
};

const LEASE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Holder", "string", "The current holder of the lease."),
        Column::age(),
    ],
    cells: |l| vec![name(l), json!(str_at(l, "spec.holderIdentity")), created(l)],
};

const LEASE_CANDIDATE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("LeaseName", "string", "The lease the candidate runs for."),
        Column::new("BinaryVersion", "string", "The candidate's binary version."),
        Column::new(
            "EmulationVersion",
            "string",
            "The version the candidate emulates.",
        ),
        Column::age(),
    ],
    cells: |lc| {
        vec![
            name(lc),
            json!(str_at(lc, "spec.leaseName")),
            json!(str_at(lc, "spec.binaryVersion")),
            json!(str_at(lc, "spec.emulationVersion")),
            created(lc),
        ]
    },
};

const PRIORITY_CLASS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Value",
            "integer",
            "The priority given to pods of the class.",
        ),
        Column::new(
            "Global-Default",
            "boolean",
            "Whether pods without a class get this one.",
        ),
        Column::age(),
        // Upstream fills this only for wide output but declares it as a regular column.
        Column::new(
            "PreemptionPolicy",
            "string",
            "Whether pods of the class may preempt others.",
        ),
    ],
    cells: |pc| {
        vec![
            name(pc),
            json!(int_at(pc, "value")),
            json!(opt_bool(pc, "globalDefault").unwrap_or(false)),
            created(pc),
            json!(str_or(pc, "preemptionPolicy", "PreemptLowerPriority")),
        ]
    },
};

const RUNTIME_CLASS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Handler", "string", "The container runtime handler."),
        Column::age(),
    ],
    cells: |rc| vec![name(rc), json!(str_at(rc, "handler")), created(rc)],
};

const NAME_AGE: Cells = Cells {
    columns: &[Column::name(), Column::age()],
    cells: |obj| vec![name(obj), created(obj)],
};

const RESOURCE_CLAIM: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "State",
            "string",
            "Whether the claim is pending, allocated, reserved or deleted.",
        ),
        Column::age(),
    ],
    cells: |rc| {
        let deleting = at(rc, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null());
        let allocated = at(rc, "status.allocation").is_some_and(|v| !v.is_null());
        let mut states = Vec::new();
        if deleting {
            states.push("deleted");
        }
        if allocated {
            states.push("allocated");
            if !items(rc, "status.reservedFor").is_empty() {
                states.push("reserved");
            }
        } else if !deleting {
            states.push("pending");
        }
        vec![name(rc), json!(states.join(",")), created(rc)]
    },
};

const RESOURCE_SLICE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Node", "string", "The node whose devices the slice lists."),
        Column::new("Driver", "string", "The driver publishing the slice."),
        Column::new("Pool", "string", "The pool the slice belongs to."),
        Column::age(),
    ],
    cells: |rs| {
        vec![
            name(rs),
            json!(str_at(rs, "spec.nodeName")),
            json!(str_at(rs, "spec.driver")),
            json!(str_at(rs, "spec.pool.name")),
            created(rs),
        ]
    },
};

const STORAGE_VERSION: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "CommonEncodingVersion",
            "string",
            "The encoding every API server agrees on.",
        ),
        Column::new(
            "StorageVersions",
            "string",
            "The encoding each API server writes.",
        ),
        Column::age(),
    ],
    cells: |sv| {
        const MAX: usize = 3;
        let all = items(sv, "status.storageVersions");
        let shown: Vec<String> = all
            .iter()
            .take(MAX)
            .map(|v| {
                format!(
                    "{}={}",
                    str_at(v, "apiServerID"),
                    str_at(v, "encodingVersion")
                )
            })
            .collect();
        vec![
            name(sv),
            json!(opt_str(sv, "status.commonEncodingVersion").unwrap_or("<unset>")),
            json!(list_with_more(&shown, all.len() > MAX, all.len(), MAX)),
            created(sv),
        ]
    },
};

const STORAGE_VERSION_MIGRATION: Cells = Cells {
    columns: &[
        // Upstream leaves this Name column without the name format.
        Column::new("Name", "string", "The migration's name."),
        Column::new("Resource", "string", "Fully qualified resource to migrate"),
    ],
    cells: |m| {
        let resource = format!(
            "{}.{}.{}",
            str_at(m, "spec.resource.resource"),
            str_at(m, "spec.resource.version"),
            str_at(m, "spec.resource.group")
        );
        vec![name(m), json!(resource)]
    },
};

const API_SERVICE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Service", "string", "The service behind the API, or Local."),
        Column::new("Available", "string", "Whether the API is available."),
        Column::age(),
    ],
    cells: |svc| {
        let service = match at(svc, "spec.service").filter(|s| s.is_object()) {
            Some(s) => format!("{}/{}", str_at(s, "namespace"), str_at(s, "name")),
            None => "Local".into(),
        };
        let available = match condition(svc, "status.conditions", "Available") {
            None => "Unknown".to_string(),
            Some(c) => {
                let status = str_at(c, "status");
                let reason = str_at(c, "reason");
                if status == "True" || reason.is_empty() {
                    status.to_string()
                } else {
                    format!("{status} ({reason})")
                }
            }
        };
        vec![name(svc), json!(service), json!(available), created(svc)]
    },
};

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    Some(match (group, kind) {
        ("policy", "PodDisruptionBudget") => &POD_DISRUPTION_BUDGET,
        ("certificates.k8s.io", "CertificateSigningRequest") => &CERTIFICATE_SIGNING_REQUEST,
        ("certificates.k8s.io", "ClusterTrustBundle") => &CLUSTER_TRUST_BUNDLE,
        ("coordination.k8s.io", "Lease") => &LEASE,
        ("coordination.k8s.io", "LeaseCandidate") => &LEASE_CANDIDATE,
        ("scheduling.k8s.io", "PriorityClass") => &PRIORITY_CLASS,
        ("node.k8s.io", "RuntimeClass") => &RUNTIME_CLASS,
        ("resource.k8s.io", "DeviceClass" | "ResourceClaimTemplate") => &NAME_AGE,
        ("resource.k8s.io", "ResourceClaim") => &RESOURCE_CLAIM,
        ("resource.k8s.io", "ResourceSlice") => &RESOURCE_SLICE,
        ("internal.apiserver.k8s.io", "StorageVersion") => &STORAGE_VERSION,
        ("storagemigration.k8s.io", "StorageVersionMigration") => &STORAGE_VERSION_MIGRATION,
        ("apiregistration.k8s.io", "APIService") => &API_SERVICE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdb_values() {
        let pdb = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 2}});
        assert_eq!(
            POD_DISRUPTION_BUDGET.cells(&pdb)[1..4],
            [json!("50%"), json!("N/A"), json!(2)]
        );
        let pdb = json!({"spec": {"maxUnavailable": 1}});
        assert_eq!(
            POD_DISRUPTION_BUDGET.cells(&pdb)[1..4],
            [json!("N/A"), json!("1"), json!(0)]
        );
    }

    #[test]
    fn csr_cells() {
        let csr = json!({"spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "alice",
                                  "expirationSeconds": 86400},
                         "status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Failed"}],
                                    "certificate": "LS0t"}});
        let c = CERTIFICATE_SIGNING_REQUEST.cells(&csr);
        assert_eq!(
            c[2..],
            [
                json!("kubernetes.io/kube-apiserver-client"),
                json!("alice"),
                json!("24h"),
                json!("Approved,Failed,Issued")
            ]
        );
        let denied = json!({"status": {"conditions": [{"type": "Approved"}, {"type": "Denied"}]}});
        let c = CERTIFICATE_SIGNING_REQUEST.cells(&denied);
        assert_eq!(
            c[2..],
            [json!("<none>"), json!(""), json!("<none>"), json!("Denied")]
        );
        assert_eq!(
            CERTIFICATE_SIGNING_REQUEST.cells(&json!({}))[5],
            json!("Pending")
        );
    }

    #[test]
    fn api_service_availability() {
        let local = json!({"status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(
            API_SERVICE.cells(&local)[1..3],
            [json!("Local"), json!("True")]
        );
        let remote = json!({"spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
                            "status": {"conditions": [{"type": "Available", "status": "False",
                                                       "reason": "MissingEndpoints"}]}});
        assert_eq!(
            API_SERVICE.cells(&remote)[1..3],
            [
                json!("kube-system/metrics-server"),
                json!("False (MissingEndpoints)")
            ]
        );
        assert_eq!(API_SERVICE.cells(&json!({}))[2], json!("Unknown"));
    }

    #[test]
    fn resource_claims_and_others() {
        let rc = json!({"status": {"allocation": {}, "reservedFor": [{"name": "p"}]}});
        assert_eq!(RESOURCE_CLAIM.cells(&rc)[1], json!("allocated,reserved"));
        let rc = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}});
        assert_eq!(RESOURCE_CLAIM.cells(&rc)[1], json!("deleted"));
        assert_eq!(RESOURCE_CLAIM.cells(&json!({}))[1], json!("pending"));

        let pc = json!({"value": 1000, "globalDefault": true, "preemptionPolicy": "Never"});
        let c = PRIORITY_CLASS.cells(&pc);
        assert_eq!(
            [&c[1], &c[2], &c[4]],
            [&json!(1000), &json!(true), &json!("Never")]
        );

        let sv = json!({"status": {"commonEncodingVersion": "v1", "storageVersions": [
            {"apiServerID": "a", "encodingVersion": "v1"}, {"apiServerID": "b", "encodingVersion": "v1"},
            {"apiServerID": "c", "encodingVersion": "v1"}, {"apiServerID": "d", "encodingVersion": "v2"}]}});
        assert_eq!(
            STORAGE_VERSION.cells(&sv)[1..3],
            [json!("v1"), json!("a=v1,b=v1,c=v1 + 1 more...")]
        );

        let m = json!({"spec": {"resource": {"group": "apps", "version": "v1", "resource": "deployments"}}});
        assert_eq!(
            STORAGE_VERSION_MIGRATION.cells(&m)[1],
            json!("deployments.v1.apps")
        );
    }
}
