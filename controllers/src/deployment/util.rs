//! Deployment arithmetic shared by the strategies: surge and unavailability bounds, replica
//! sums, revision numbers and the annotations upstream keeps on replica sets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations never copied onto its replica sets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn scaled(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let x = p * i64::from(total);
            let r = if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            };
            r as i32
        }
    }
}

/// (maxSurge, maxUnavailable) resolved against the replica count; both zero would stall a
/// rollout, so upstream turns that into one unavailable pod. Recreate has neither.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    if is_recreate(d) {
        return (0, 0);
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let n = replicas(d);
    let quarter = IntOrString::String("25%".into());
    let surge = scaled(
        ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter),
        n,
        true,
    );
    let unavail = scaled(
        ru.and_then(|r| r.max_unavailable.as_ref())
            .unwrap_or(&quarter),
        n,
        false,
    );
    let unavail = unavail.min(n);
    if surge == 0 && unavail == 0 {
        return (0, 1);
    }
    (surge.max(0), unavail.max(0))
}

pub fn revision_of(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn rs_revision(rs: &ReplicaSet) -> i64 {
    revision_of(rs.metadata.annotations.as_ref())
}

/// The deployment's annotations an RS should carry (change-cause among them).
pub fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .collect()
}

/// Upstream's SafeEncodeString alphabet: no vowels, no confusable characters.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The pod-template-hash: FNV-1a (32 bit) over the template's canonical JSON and the
/// collision count, spelt as upstream spells its hashes.
pub fn template_hash(template: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x01000193);
        }
    };
    feed(template.to_string().as_bytes());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// The template with the hash label taken out, for comparing a deployment with its RSes.
pub fn template_without_hash(
    t: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            if let Some(m) = v.pointer_mut("/metadata").and_then(|m| m.as_object_mut()) {
                m.remove("labels");
            }
        }
    }
    if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.retain(|_, x| !x.is_null());
        if m.is_empty() {
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percentages_round_as_upstream() {
        let d: Deployment = serde_json::from_value(json!({
            "spec": {"replicas": 10, "selector": {}, "template": {},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}
        }))
        .unwrap();
        assert_eq!(surge_and_unavailable(&d), (3, 2));
        let hash = template_hash(&json!({"a": 1}), None);
        assert!(hash.bytes().all(|b| ALPHABET.contains(&b)));
    }
}
