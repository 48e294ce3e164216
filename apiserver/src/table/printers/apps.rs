//! Printers of apps/v1 kinds.

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{
    at, containers, created, format_labels, format_selector, int_at, items, name, opt_bool,
    opt_int, selector_string, str_at,
};
use super::Cells;

const CONTAINERS: Column = Column::new(
    "Containers",
    "string",
    "Names of the template's containers.",
)
.wide();
const IMAGES: Column =
    Column::new("Images", "string", "Images of the template's containers.").wide();
const SELECTOR: Column =
    Column::new("Selector", "string", "Labels the controlled pods carry.").wide();

/// spec.replicas, which the API defaults to 1.
fn desired(obj: &Value) -> i64 {
    opt_int(obj, "spec.replicas").unwrap_or(1)
}

fn template_cells(obj: &Value) -> [Value; 2] {
    let (names, images) = containers(at(obj, "spec.template.spec"));
    [json!(names), json!(images)]
}

const DEPLOYMENT: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Ready", "string", "Ready pods out of the wanted replicas."),
        Column::new("Up-to-date", "string", "Pods running the latest template."),
        Column::new("Available", "string", "Pods available to serve."),
        Column::age(),
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: |d| {
        // Unlike the other workloads, an empty selector shows as nothing at all here.
        let selector =
            selector_string(at(d, "spec.selector")).unwrap_or_else(|()| "<invalid>".into());
        let [names, images] = template_cells(d);
        vec![
            name(d),
            json!(format!(
                "{}/{}",
                int_at(d, "status.readyReplicas"),
                desired(d)
            )),
            json!(int_at(d, "status.updatedReplicas")),
            json!(int_at(d, "status.availableReplicas")),
            created(d),
            names,
            images,
            json!(selector),
        ]
    },
};

const REPLICA_SET: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Desired", "integer", "Number of replicas wanted."),
        Column::new("Current", "integer", "Number of replicas that exist."),
        Column::new("Ready", "integer", "Number of ready replicas."),
        Column::age(),
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: |rs| {
        let [names, images] = template_cells(rs);
        vec![
            name(rs),
            json!(desired(rs)),
            json!(int_at(rs, "status.replicas")),
            json!(int_at(rs, "status.readyReplicas")),
            created(rs),
            names,
            images,
            json!(format_selector(at(rs, "spec.selector"))),
        ]
    },
};

const STATEFUL_SET: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Ready", "string", "Ready pods out of the wanted replicas."),
        Column::age(),
        CONTAINERS,
        IMAGES,
    ],
    cells: |ss| {
        let [names, images] = template_cells(ss);
        vec![
            name(ss),
            json!(format!(
                "{}/{}",
                int_at(ss, "status.readyReplicas"),
                desired(ss)
            )),
            created(ss),
            names,
            images,
        ]
    },
};

const DAEMON_SET: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Desired",
            "integer",
            "Nodes that should run the daemon pod.",
        ),
        Column::new(
            "Current",
            "integer",
            "Nodes running at least one daemon pod.",
        ),
        Column::new("Ready", "integer", "Nodes whose daemon pod is ready."),
        Column::new(
            "Up-to-date",
            "integer",
            "Nodes running the latest template.",
        ),
        Column::new(
            "Available",
            "integer",
            "Nodes whose daemon pod is available.",
        ),
        Column::new(
            "Node Selector",
            "string",
            "Labels a node needs to run the daemon pod.",
        ),
        Column::age(),
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: |ds| {
        let [names, images] = template_cells(ds);
        vec![
            name(ds),
            json!(int_at(ds, "status.desiredNumberScheduled")),
            json!(int_at(ds, "status.currentNumberScheduled")),
            json!(int_at(ds, "status.numberReady")),
            json!(int_at(ds, "status.updatedNumberScheduled")),
            json!(int_at(ds, "status.numberAvailable")),
            json!(format_labels(at(ds, "spec.template.spec.nodeSelector"))),
            created(ds),
            names,
            images,
            json!(format_selector(at(ds, "spec.selector"))),
        ]
    },
};

const CONTROLLER_REVISION: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new(
            "Controller",
            "string",
            "The object controlling the revision.",
        ),
        Column::new("Revision", "string", "The revision number."),
        Column::age(),
    ],
    cells: |cr| {
        vec![
            name(cr),
            json!(controller_of(cr)),
            json!(int_at(cr, "revision")),
            created(cr),
        ]
    },
};

/// The controlling owner as `kind.group/name` in lower case, or "<none>".
fn controller_of(obj: &Value) -> String {
    let Some(owner) = items(obj, "metadata.ownerReferences")
        .iter()
        .find(|r| opt_bool(r, "controller") == Some(true))
    else {
        return "<none>".into();
    };
    let api_version = str_at(owner, "apiVersion");
    let group = match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let kind = str_at(owner, "kind");
    let owner_name = str_at(owner, "name");
    let group_kind = match (group.is_empty(), kind.is_empty()) {
        (true, true) => return owner_name.to_string(),
        (true, false) => kind.to_string(),
        (false, _) => format!("{kind}.{group}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    if group != "apps" {
        return None;
    }
    Some(match kind {
        "Deployment" => &DEPLOYMENT,
        "ReplicaSet" => &REPLICA_SET,
        "StatefulSet" => &STATEFUL_SET,
        "DaemonSet" => &DAEMON_SET,
        "ControllerRevision" => &CONTROLLER_REVISION,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(kind: &str, obj: Value) -> Vec<Value> {
        lookup("apps", kind).expect("printer").cells(&obj)
    }

    fn template() -> Value {
        json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}],
                        "nodeSelector": {"disk": "ssd"}}})
    }

    #[test]
    fn deployment_counts() {
        let d = json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 1}
        });
        let c = cells("Deployment", d);
        assert_eq!(c[1..4], [json!("2/3"), json!(3), json!(1)]);
        assert_eq!(
            c[5..],
            [json!("web,log"), json!("nginx:1,busybox"), json!("app=web")]
        );

        let fresh = json!({"spec": {"selector": {}}});
        let c = cells("Deployment", fresh);
        assert_eq!(c[1..4], [json!("0/1"), json!(0), json!(0)]);
        assert_eq!(c[7], json!(""));
        let bad = json!({"spec": {"replicas": 0, "selector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}});
        let c = cells("Deployment", bad);
        assert_eq!(c[1], json!("0/0"));
        assert_eq!(c[7], json!("<invalid>"));
    }

    #[test]
    fn replica_and_stateful_sets() {
        let rs = json!({"spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}}, "template": template()},
                        "status": {"replicas": 2, "readyReplicas": 1}});
        let c = cells("ReplicaSet", rs);
        assert_eq!(c[1..4], [json!(2), json!(2), json!(1)]);
        assert_eq!(c[7], json!("app=x"));
        let c = cells("ReplicaSet", json!({}));
        assert_eq!(c[7], json!("<none>"));

        let ss = json!({"spec": {"replicas": 5, "template": template()}, "status": {"readyReplicas": 4}});
        let c = cells("StatefulSet", ss);
        assert_eq!(c[1], json!("4/5"));
        assert_eq!(c[3..], [json!("web,log"), json!("nginx:1,busybox")]);
    }

    #[test]
    fn daemon_set() {
        let ds = json!({"spec": {"template": template(), "selector": {"matchLabels": {"app": "d"}}},
                        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                                   "updatedNumberScheduled": 1, "numberAvailable": 2}});
        let c = cells("DaemonSet", ds);
        assert_eq!(
            c[1..7],
            [
                json!(3),
                json!(3),
                json!(2),
                json!(1),
                json!(2),
                json!("disk=ssd")
            ]
        );
        assert_eq!(c[10], json!("app=d"));
    }

    #[test]
    fn controller_revisions() {
        let cr = json!({"revision": 3, "metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "Pod", "name": "p"},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}});
        assert_eq!(
            cells("ControllerRevision", cr)[1..3],
            [json!("statefulset.apps/db"), json!(3)]
        );
        let core = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": true}]}});
        assert_eq!(cells("ControllerRevision", core)[1], json!("pod/p"));
        assert_eq!(cells("ControllerRevision", json!({}))[1], json!("<none>"));
    }
}
