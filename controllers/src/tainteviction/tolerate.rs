//! Which NoExecute taints a pod tolerates, and for how long (upstream's
//! GetMatchingTolerations and getMinTolerationTime).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};

pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// What the pod may do on a node with these NoExecute taints.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some taint is not tolerated: the pod goes now.
    EvictNow,
    /// Every taint is tolerated, the shortest toleration lasting this long.
    EvictAfter(Duration),
    /// Every taint is tolerated forever.
    Stay,
}

pub fn verdict(taints: &[&Taint], tolerations: &[Toleration]) -> Verdict {
    let mut min: Option<i64> = None;
    for taint in taints {
        let Some(t) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Verdict::EvictNow;
        };
        if let Some(secs) = t.toleration_seconds {
            min = Some(min.map_or(secs, |m| m.min(secs)));
        }
    }
    match min {
        None => Verdict::Stay,
        Some(s) if s <= 0 => Verdict::EvictNow,
        Some(s) => Verdict::EvictAfter(Duration::from_secs(s as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn shortest_toleration_wins() {
        let a = taint("a");
        let b = taint("b");
        assert_eq!(verdict(&[&a], &[]), Verdict::EvictNow);
        assert_eq!(verdict(&[&a], &[tol("a", None)]), Verdict::Stay);
        assert_eq!(
            verdict(&[&a, &b], &[tol("a", Some(30)), tol("b", Some(5))]),
            Verdict::EvictAfter(Duration::from_secs(5))
        );
        assert_eq!(verdict(&[&a, &b], &[tol("a", Some(30))]), Verdict::EvictNow);
        let any = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(verdict(&[&a, &b], &[any]), Verdict::Stay);
    }
}
