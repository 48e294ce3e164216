//! Printers of storage.k8s.io kinds.

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{
    annotation, at, created, items, len_at, name, opt_bool, opt_str, quantity, str_at, str_or,
};
use super::Cells;

fn is_marked_default(obj: &Value, keys: &[&str]) -> bool {
    keys.iter().any(|k| annotation(obj, k) == Some("true"))
}

/// The name, flagged when the object is its kind's cluster default.
fn name_with_default(obj: &Value, keys: &[&str]) -> Value {
    let n = crate::meta::name(obj);
    if is_marked_default(obj, keys) {
        json!(format!("{n} (default)"))
    } else {
        json!(n)
    }
}

const STORAGE_CLASS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Provisioner",
            "string",
            "The volume plugin provisioning volumes of the class.",
        ),
        Column::new(
            "ReclaimPolicy",
            "string",
            "What happens to released volumes of the class.",
        ),
        Column::new(
            "VolumeBindingMode",
            "string",
            "When volumes of the class get bound.",
        ),
        Column::new(
            "AllowVolumeExpansion",
            "string",
            "Whether volumes of the class can grow.",
        ),
        Column::age(),
    ],
    cells: |sc| {
        vec![
            name_with_default(
                sc,
                &[
                    "storageclass.kubernetes.io/is-default-class",
                    "storageclass.beta.kubernetes.io/is-default-class",
                ],
            ),
            json!(str_at(sc, "provisioner")),
            json!(str_or(sc, "reclaimPolicy", "Delete")),
            json!(str_or(sc, "volumeBindingMode", "Immediate")),
            json!(opt_bool(sc, "allowVolumeExpansion").unwrap_or(false)),
            created(sc),
        ]
    },
};

const VOLUME_ATTRIBUTES_CLASS: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "DriverName",
            "string",
            "The CSI driver the class applies to.",
        ),
        Column::age(),
    ],
    cells: |vac| {
        vec![
            name_with_default(
                vac,
                &["volumeattributesclass.alpha.kubernetes.io/is-default-class"],
            ),
            json!(str_at(vac, "driverName")),
            created(vac),
        ]
    },
};

const CSI_DRIVER: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "AttachRequired",
            "boolean",
            "Whether volumes need an attach step.",
        ),
        Column::new(
            "PodInfoOnMount",
            "boolean",
            "Whether mounts receive pod information.",
        ),
        Column::new(
            "StorageCapacity",
            "boolean",
            "Whether the driver reports storage capacity.",
        ),
        Column::new(
            "TokenRequests",
            "string",
            "Audiences of the service account tokens the driver gets.",
        ),
        Column::new(
            "RequiresRepublish",
            "boolean",
            "Whether volumes are mounted again periodically.",
        ),
        Column::new(
            "Modes",
            "string",
            "Volume lifecycle modes the driver supports.",
        ),
        Column::age(),
    ],
    cells: |d| {
        let tokens = match at(d, "spec.tokenRequests") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|t| str_at(t, "audience"))
                .collect::<Vec<_>>()
                .join(","),
            _ => "<unset>".into(),
        };
        let modes: Vec<&str> = items(d, "spec.volumeLifecycleModes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let modes = if modes.is_empty() {
            "<none>".to_string()
        } else {
            modes.join(",")
        };
        vec![
            name(d),
            json!(opt_bool(d, "spec.attachRequired").unwrap_or(true)),
            json!(opt_bool(d, "spec.podInfoOnMount").unwrap_or(false)),
            json!(opt_bool(d, "spec.storageCapacity").unwrap_or(false)),
            json!(tokens),
            json!(opt_bool(d, "spec.requiresRepublish").unwrap_or(false)),
            json!(modes),
            created(d),
        ]
    },
};

const CSI_NODE: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Drivers",
            "integer",
            "Number of CSI drivers registered on the node.",
        ),
        Column::age(),
    ],
    cells: |n| vec![name(n), json!(len_at(n, "spec.drivers")), created(n)],
};

const CSI_STORAGE_CAPACITY: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "StorageClassName",
            "string",
            "The storage class the capacity is for.",
        ),
        Column::new("Capacity", "string", "The capacity available."),
    ],
    cells: |c| {
        let capacity = match c.get("capacity") {
            Some(v @ (Value::String(_) | Value::Number(_))) => quantity(Some(v)),
            _ => "<unset>".into(),
        };
        vec![
            name(c),
            json!(str_at(c, "storageClassName")),
            json!(capacity),
        ]
    },
};

const VOLUME_ATTACHMENT: Cells = Cells {
    columns: &[
        Column::name(),
        Column {
            format: "name",
            ..Column::new("Attacher", "string", "The driver attaching the volume.")
        },
        Column::new("PV", "string", "The persistent volume being attached."),
        Column::new("Node", "string", "The node the volume is attached to."),
        Column::new("Attached", "boolean", "Whether the attach succeeded."),
        Column::age(),
    ],
    cells: |va| {
        vec![
            name(va),
            json!(str_at(va, "spec.attacher")),
            json!(opt_str(va, "spec.source.persistentVolumeName").unwrap_or("")),
            json!(str_at(va, "spec.nodeName")),
            json!(opt_bool(va, "status.attached").unwrap_or(false)),
            created(va),
        ]
    },
};

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    if group != "storage.k8s.io" {
        return None;
    }
    Some(match kind {
        "StorageClass" => &STORAGE_CLASS,
        "VolumeAttributesClass" => &VOLUME_ATTRIBUTES_CLASS,
        "CSIDriver" => &CSI_DRIVER,
        "CSINode" => &CSI_NODE,
        "CSIStorageCapacity" => &CSI_STORAGE_CAPACITY,
        "VolumeAttachment" => &VOLUME_ATTACHMENT,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_class_default_marker() {
        let sc = json!({"metadata": {"name": "standard", "annotations": {
                            "storageclass.kubernetes.io/is-default-class": "true"}},
                        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        let c = STORAGE_CLASS.cells(&sc);
        assert_eq!(
            c[..5],
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
        let beta = json!({"metadata": {"name": "old", "annotations": {
            "storageclass.beta.kubernetes.io/is-default-class": "true"}}, "reclaimPolicy": "Retain",
            "allowVolumeExpansion": true});
        assert_eq!(
            STORAGE_CLASS.cells(&beta)[..5],
            [
                json!("old (default)"),
                json!(""),
                json!("Retain"),
                json!("Immediate"),
                json!(true)
            ]
        );
        let off = json!({"metadata": {"name": "x", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "false"}}});
        assert_eq!(STORAGE_CLASS.cells(&off)[0], json!("x"));
    }

    #[test]
    fn csi_kinds() {
        let d = json!({"spec": {"attachRequired": false, "tokenRequests": [{"audience": "a"}, {"audience": "b"}],
                                "volumeLifecycleModes": ["Persistent", "Ephemeral"]}});
        assert_eq!(
            CSI_DRIVER.cells(&d)[1..7],
            [
                json!(false),
                json!(false),
                json!(false),
                json!("a,b"),
                json!(false),
                json!("Persistent,Ephemeral")
            ]
        );
        assert_eq!(
            CSI_DRIVER.cells(&json!({}))[1..7],
            [
                json!(true),
                json!(false),
                json!(false),
                json!("<unset>"),
                json!(false),
                json!("<none>")
            ]
        );
        let cap = json!({"storageClassName": "fast", "capacity": "2048Mi"});
        assert_eq!(
            CSI_STORAGE_CAPACITY.cells(&cap)[1..],
            [json!("fast"), json!("2Gi")]
        );
        assert_eq!(CSI_STORAGE_CAPACITY.cells(&json!({}))[2], json!("<unset>"));
        let va = json!({"spec": {"attacher": "csi.x", "nodeName": "n1", "source": {"persistentVolumeName": "pv"}},
                        "status": {"attached": true}});
        assert_eq!(
            VOLUME_ATTACHMENT.cells(&va)[1..5],
            [json!("csi.x"), json!("pv"), json!("n1"), json!(true)]
        );
        assert_eq!(VOLUME_ATTACHMENT.columns()[1].format, "name");
    }
}
