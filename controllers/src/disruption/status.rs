//! The arithmetic of a PodDisruptionBudget's status, apart from any API access, as upstream's
//! disruption controller computes it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How long an eviction's entry in `disruptedPods` keeps its pod out of the healthy count;
/// after this the pod is presumed not to be going away after all.
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

/// Scales an int-or-percent against `total`, rounding a percentage up as upstream does.
pub fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid type: string is not a percentage: {s:?}"))?;
            let v = (pct * i64::from(total) + 99) / 100;
            Ok(v.clamp(0, i64::from(i32::MAX)) as i32)
        }
    }
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The evictions still in flight: pods listed in `disruptedPods` that exist, are not yet
/// being deleted, and whose entry has not timed out. Also returns the earliest moment an
/// entry times out, when the budget must be looked at again, and the pods whose entry timed
/// out (upstream reports them in a NotDeleted event).
pub struct Disrupted {
    pub pods: BTreeMap<String, Time>,
    pub recheck_at: Option<Timestamp>,
    pub overdue: Vec<String>,
}

pub fn disrupted_pods(pdb: &PodDisruptionBudget, pods: &[&Pod], now: Timestamp) -> Disrupted {
    let mut out = Disrupted {
        pods: BTreeMap::new(),
        recheck_at: None,
        overdue: Vec::new(),
    };
    let Some(listed) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return out;
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(when) = listed.get(&name) else {
            continue;
        };
        let deadline = when.0 + DELETION_TIMEOUT;
        if deadline < now {
            out.overdue.push(name);
        } else {
            out.recheck_at = Some(out.recheck_at.map_or(deadline, |r| r.min(deadline)));
            out.pods.insert(name, when.clone());
        }
    }
    out
}

/// Ready pods that are neither being deleted nor about to be evicted.
pub fn current_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("");
            disrupted
                .get(name)
                .is_none_or(|t| t.0 + DELETION_TIMEOUT <= now)
        })
        .filter(|p| is_ready(p))
        .count() as i32
}

/// Sets the DisruptionAllowed condition to follow `disruptionsAllowed`, moving its
/// transition time only when its status flips.
pub fn set_allowed_condition(status: &mut PodDisruptionBudgetStatus, now: Timestamp) {
    let (state, reason) = if status.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    set_condition(status, state, reason, String::new(), now);
}

/// The condition upstream leaves when a budget's status cannot be worked out: nothing may
/// be disrupted until it can.
pub fn set_sync_failed(status: &mut PodDisruptionBudgetStatus, message: String, now: Timestamp) {
    status.disruptions_allowed = 0;
    set_condition(status, "False", "SyncFailed", message, now);
}

fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    state: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let observed = status.observed_generation;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let fresh = Condition {
        type_: "DisruptionAllowed".into(),
        status: state.into(),
        reason: reason.into(),
        message,
        observed_generation: observed,
        last_transition_time: Time(now),
    };
    match conditions
        .iter_mut()
        .find(|c| c.type_ == "DisruptionAllowed")
    {
        Some(c) => {
            let keep_time = c.status == fresh.status;
            let then = c.last_transition_time.clone();
            *c = fresh;
            if keep_time {
                c.last_transition_time = then;
            }
        }
        None => conditions.push(fresh),
    }
}

/// The status a budget should have, given its counts.
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    healthy: i32,
    desired_healthy: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    // A budget over no expected pods allows nothing: its first pods may appear before the
    // next sync, and they must not be evictable on stale numbers.
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired_healthy).max(0)
    };
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: Some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: pdb.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    set_allowed_condition(&mut status, now);
    status
}

/// Whether two statuses differ in anything but condition timestamps.
pub fn differs(old: Option<&PodDisruptionBudgetStatus>, new: &PodDisruptionBudgetStatus) -> bool {
    let Some(old) = old else {
        return true;
    };
    let norm = |s: &PodDisruptionBudgetStatus| {
        let mut s = s.clone();
        if s.disrupted_pods.as_ref().is_some_and(|m| m.is_empty()) {
            s.disrupted_pods = None;
        }
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    norm(old) != norm(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("0%".into()), 3), Ok(0));
        assert_eq!(scaled(&IntOrString::Int(2), 10), Ok(2));
        assert!(scaled(&IntOrString::String("x".into()), 3).is_err());
    }

    #[test]
    fn nothing_allowed_without_expected_pods() {
        let pdb = PodDisruptionBudget::default();
        let s = desired_status(&pdb, 3, 0, 0, BTreeMap::new(), Timestamp::now());
        assert_eq!(s.disruptions_allowed, 0);
        let s = desired_status(&pdb, 3, 1, 3, BTreeMap::new(), Timestamp::now());
        assert_eq!(s.disruptions_allowed, 2);
        let c = &s.conditions.unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
    }
}
