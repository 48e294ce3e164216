//! RBAC: rules need verbs and a target, bindings a valid role reference (which never
//! changes) and well-formed subjects.

use serde_json::{json, Value};

use super::util::{self, At, Errs};
use super::{NameRule, Strategy};
use crate::status::FieldError;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Names of RBAC objects are any path segment.
fn rbac_name_errors(name: &str) -> Vec<String> {
    crate::validation::name_errors(name, NameRule::PathSegment)
}

fn rules(errs: &mut Errs, list: &At, namespaced: bool) {
    for r in list.items(errs) {
        let verbs = r.child("verbs");
        if verbs.strings(errs).is_empty() {
            errs.push(FieldError::required(
                verbs.path.clone(),
                "verbs must contain at least one value",
            ));
        }
        let urls = r.child("nonResourceURLs");
        let url_list = urls.strings(errs);
        let groups = r.child("apiGroups").strings(errs);
        let resources = r.child("resources").strings(errs);
        let names = r.child("resourceNames").strings(errs);
        if !url_list.is_empty() {
            if namespaced {
                errs.push(FieldError::invalid(
                    urls.path.clone(),
                    urls.value(),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !groups.is_empty() || !resources.is_empty() || !names.is_empty() {
                errs.push(FieldError::invalid(
                    urls.path.clone(),
                    urls.value(),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if groups.is_empty() {
            errs.push(FieldError::required(
                r.child("apiGroups").path,
                "resource rules must supply at least one api group",
            ));
        }
        if resources.is_empty() {
            errs.push(FieldError::required(
                r.child("resources").path,
                "resource rules must supply at least one resource",
            ));
        }
    }
}

pub(super) struct Role;

impl Strategy for Role {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        rules(&mut errs, &At::new(obj, "").child("rules"), true);
        errs
    }
}

pub(super) struct ClusterRole;

impl Strategy for ClusterRole {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let root = At::new(obj, "");
        rules(&mut errs, &root.child("rules"), false);
        let agg = root.child("aggregationRule");
        if agg.is_set() {
            let sels = agg.child("clusterRoleSelectors");
            let items = sels.items(&mut errs);
            if items.is_empty() {
                errs.push(FieldError::required(
                    sels.path.clone(),
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            for s in &items {
                util::label_selector(&mut errs, s, false);
            }
        }
        errs
    }
}

fn default_binding(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    if let Some(r) = util::obj_mut(map, "roleRef") {
        util::default_str(r, "apiGroup", GROUP);
    }
    util::each_obj_mut(map, "subjects", |s| {
        if s.get("apiGroup")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            match s.get("kind").and_then(Value::as_str) {
                Some("User" | "Group") => {
                    s.insert("apiGroup".into(), json!(GROUP));
                }
                Some("ServiceAccount") => {
                    s.remove("apiGroup");
                }
                _ => {}
            }
        }
    });
}

fn binding(errs: &mut Errs, obj: &Value, cluster: bool) {
    let root = At::new(obj, "");
    let rr = root.child("roleRef");
    let group = rr.child("apiGroup");
    let g = group.string(errs);
    if g != GROUP {
        errs.push(FieldError::not_supported(group.path.clone(), g, &[GROUP]));
    }
    let kind = rr.child("kind");
    let k = kind.string(errs);
    if cluster {
        if k != "ClusterRole" {
            errs.push(FieldError::not_supported(
                kind.path.clone(),
                k,
                &["ClusterRole"],
            ));
        }
    } else if k != "Role" && k != "ClusterRole" {
        errs.push(FieldError::not_supported(
            kind.path.clone(),
            k,
            &["Role", "ClusterRole"],
        ));
    }
    let name = rr.child("name");
    let n = name.string(errs);
    if n.is_empty() {
        errs.push(FieldError::required(name.path.clone(), ""));
    } else {
        for m in rbac_name_errors(n) {
            errs.push(FieldError::invalid(name.path.clone(), n, m));
        }
    }
    for s in root.child("subjects").items(errs) {
        let name = s.child("name");
        let n = name.string(errs);
        if n.is_empty() {
            errs.push(FieldError::required(name.path.clone(), ""));
        }
        let group = s.child("apiGroup");
        let g = group.string(errs);
        let kind = s.child("kind");
        match kind.string(errs) {
            "ServiceAccount" => {
                if !n.is_empty() {
                    util::dns_subdomain(errs, &name.path, n);
                }
                if !g.is_empty() {
                    errs.push(FieldError::not_supported(group.path.clone(), g, &[""]));
                }
                let ns = s.child("namespace");
                if cluster && ns.string(errs).is_empty() {
                    errs.push(FieldError::required(ns.path.clone(), ""));
                }
            }
            "User" | "Group" => {
                if g != GROUP {
                    errs.push(FieldError::not_supported(group.path.clone(), g, &[GROUP]));
                }
            }
            other => errs.push(FieldError::not_supported(
                kind.path.clone(),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

fn role_ref_unchanged(errs: &mut Errs, new: &Value, old: &Value) {
    let mut old_d = old.clone();
    default_binding(&mut old_d);
    let (n, o) = (new.get("roleRef"), old_d.get("roleRef"));
    if n != o {
        errs.push(FieldError::invalid(
            "roleRef",
            n.cloned().unwrap_or(Value::Null),
            "cannot change roleRef",
        ));
    }
}

pub(super) struct RoleBinding;

impl Strategy for RoleBinding {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn defaults(&self, obj: &mut Value) {
        default_binding(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        binding(&mut errs, obj, false);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        role_ref_unchanged(&mut errs, new, old);
        errs
    }
}

pub(super) struct ClusterRoleBinding;

impl Strategy for ClusterRoleBinding {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn defaults(&self, obj: &mut Value) {
        default_binding(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        binding(&mut errs, obj, true);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        role_ref_unchanged(&mut errs, new, old);
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn rule_shapes() {
        let r = json!({"rules": [{"apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}, {"verbs": ["get"]}]});
        let errs = msgs(&Role.validate(&r));
        assert_eq!(
            errs,
            vec![
                "rules[0].verbs: Required value: verbs must contain at least one value".to_string(),
                "rules[1].nonResourceURLs: Invalid value: [\"/x\"]: namespaced rules cannot apply to non-resource URLs".to_string(),
                "rules[2].apiGroups: Required value: resource rules must supply at least one api group".to_string(),
                "rules[2].resources: Required value: resource rules must supply at least one resource".to_string(),
            ]
        );
        let cr = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(ClusterRole.validate(&cr).is_empty());
    }

    #[test]
    fn bindings() {
        let mut b = json!({"roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "default", "namespace": "ns"}]});
        RoleBinding.defaults(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        assert!(
            RoleBinding.validate(&b).is_empty(),
            "{:?}",
            msgs(&RoleBinding.validate(&b))
        );
        let mut changed = b.clone();
        changed["roleRef"]["name"] = json!("other");
        assert_eq!(
            msgs(&RoleBinding.validate_update(&changed, &b)),
            vec![format!(
                "roleRef: Invalid value: {}: cannot change roleRef",
                changed["roleRef"]
            )]
        );
        let mut crb = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "x"}]});
        ClusterRoleBinding.defaults(&mut crb);
        let errs = msgs(&ClusterRoleBinding.validate(&crb));
        assert!(errs.contains(
            &"roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""
                .to_string()
        ));
        assert!(errs.contains(&"subjects[0].namespace: Required value".to_string()));
        assert!(errs.contains(&"subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"".to_string()));
    }
}
