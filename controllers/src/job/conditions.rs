//! Job conditions, set the way upstream's job controller sets them.

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub fn find<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn is_true(status: &JobStatus, type_: &str) -> bool {
    find(status, type_).is_some_and(|c| c.status == "True")
}

/// Whether the job reached a terminal condition; nothing but finalizer clean-up follows.
pub fn finished(status: &JobStatus) -> bool {
    is_true(status, "Complete") || is_true(status, "Failed")
}

/// Appends a True condition unless one of that type is already True.
pub fn add_true(
    status: &mut JobStatus,
    type_: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if is_true(status, type_) {
        return false;
    }
    let conds = status.conditions.get_or_insert_with(Vec::new);
    conds.retain(|c| c.type_ != type_);
    conds.push(JobCondition {
        type_: type_.to_string(),
        status: "True".into(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
    true
}

/// Sets an existing condition's status; a condition that was never added stays absent, as
/// upstream only flips Suspended to False once the job has been suspended.
pub fn flip_existing(
    status: &mut JobStatus,
    type_: &str,
    to: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let Some(c) = status
        .conditions
        .as_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c.type_ == type_))
    else {
        return false;
    };
    if c.status == to {
        return false;
    }
    c.status = to.to_string();
    c.reason = Some(reason.to_string());
    c.message = Some(message.to_string());
    c.last_probe_time = Some(Time(now));
    c.last_transition_time = Some(Time(now));
    true
}
