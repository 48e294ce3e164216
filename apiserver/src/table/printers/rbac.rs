//! Printers of rbac.authorization.k8s.io kinds. Roles and ClusterRoles have none upstream,
//! so they keep the default Name/Created At table.

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{created, items, name, str_at};
use super::Cells;

fn binding_cells(binding: &Value) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut accounts = Vec::new();
    for subject in items(binding, "subjects") {
        let subject_name = str_at(subject, "name");
        match str_at(subject, "kind") {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => {
                accounts.push(format!("{}/{subject_name}", str_at(subject, "namespace")))
            }
            _ => {}
        }
    }
    vec![
        name(binding),
        json!(format!(
            "{}/{}",
            str_at(binding, "roleRef.kind"),
            str_at(binding, "roleRef.name")
        )),
        created(binding),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(accounts.join(", ")),
    ]
}

const ROLE_BINDING: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Role", "string", "The role the binding grants."),
        Column::age(),
        Column::new("Users", "string", "Users in the roleBinding").wide(),
        Column::new("Groups", "string", "Groups in the roleBinding").wide(),
        Column::new(
            "ServiceAccounts",
            "string",
            "ServiceAccounts in the roleBinding",
        )
        .wide(),
    ],
    cells: binding_cells,
};

const CLUSTER_ROLE_BINDING: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Role", "string", "The cluster role the binding grants."),
        Column::age(),
        Column::new("Users", "string", "Users in the clusterRoleBinding").wide(),
        Column::new("Groups", "string", "Groups in the clusterRoleBinding").wide(),
        Column::new(
            "ServiceAccounts",
            "string",
            "ServiceAccounts in the clusterRoleBinding",
        )
        .wide(),
    ],
    cells: binding_cells,
};

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    Some(match (group, kind) {
        ("rbac.authorization.k8s.io", "RoleBinding") => &ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &CLUSTER_ROLE_BINDING,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_split_by_kind() {
        let rb = json!({
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                {"kind": "Group", "name": "devs"},
                {"kind": "User", "name": "bob"},
                {"kind": "Robot", "name": "r2"}
            ]
        });
        let c = ROLE_BINDING.cells(&rb);
        assert_eq!(c[1], json!("ClusterRole/view"));
        assert_eq!(c[3..], [json!("alice, bob"), json!("devs"), json!("ns/sa")]);
        let c = CLUSTER_ROLE_BINDING.cells(&json!({}));
        assert_eq!(c[1], json!("/"));
        assert_eq!(c[3..], [json!(""), json!(""), json!("")]);
    }
}
