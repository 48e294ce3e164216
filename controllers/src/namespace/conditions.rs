//! The deletion conditions upstream's namespace controller keeps on a terminating namespace:
//! each of the five types is always present, True with a failure reason while something is
//! wrong and False with upstream's "ok" reason and message otherwise.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// Upstream's order, which is also the order the conditions appear in the status.
const TYPES: [&str; 5] = [
    DISCOVERY_FAILURE,
    GV_PARSING_FAILURE,
    CONTENT_FAILURE,
    CONTENT_REMAINING,
    FINALIZERS_REMAINING,
];

fn ok_reason_and_message(kind: &str) -> (&'static str, &'static str) {
    match kind {
        DISCOVERY_FAILURE => (
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        GV_PARSING_FAILURE => (
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        CONTENT_FAILURE => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        CONTENT_REMAINING => ("ContentRemoved", "All content successfully removed"),
        _ => (
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    }
}

/// What one pass over a namespace's content found.
#[derive(Default, Debug)]
pub struct Findings {
    pub discovery_error: Option<String>,
    pub parsing_error: Option<String>,
    pub delete_errors: Vec<String>,
    /// `resource.group` → objects still present.
    pub remaining: BTreeMap<String, usize>,
    /// finalizer → objects still carrying it.
    pub finalizers: BTreeMap<String, usize>,
}

impl Findings {
    fn failing(&self, kind: &str) -> Option<(&'static str, String)> {
        match kind {
            DISCOVERY_FAILURE => self.discovery_error.clone().map(|e| ("DiscoveryFailed", e)),
            GV_PARSING_FAILURE => self
                .parsing_error
                .clone()
                .map(|e| ("GroupVersionParsingFailed", e)),
            CONTENT_FAILURE if !self.delete_errors.is_empty() => {
                let mut msgs = self.delete_errors.clone();
                msgs.sort();
                Some((
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        msgs.len(),
                        msgs.join(", ")
                    ),
                ))
            }
            CONTENT_REMAINING if !self.remaining.is_empty() => {
                // BTreeMap iteration keeps the message stable between passes, so an unchanged
                // namespace is not rewritten.
                let parts: Vec<String> = self
                    .remaining
                    .iter()
                    .map(|(gr, n)| format!("{gr} has {n} resource instances"))
                    .collect();
                Some((
                    "SomeResourcesRemain",
                    format!("Some resources are remaining: {}", parts.join(", ")),
                ))
            }
            FINALIZERS_REMAINING if !self.finalizers.is_empty() => {
                let parts: Vec<String> = self
                    .finalizers
                    .iter()
                    .map(|(f, n)| format!("{f} in {n} resource instances"))
                    .collect();
                Some((
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        parts.join(", ")
                    ),
                ))
            }
            _ => None,
        }
    }
}

/// Brings `status.conditions` in line with `findings`; true when anything changed.
pub fn apply(status: &mut NamespaceStatus, findings: &Findings) -> bool {
    let now = || Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let mut changed = false;
    for kind in TYPES {
        let (state, reason, message) = match findings.failing(kind) {
            Some((reason, message)) => ("True", reason.to_string(), message),
            None => {
                let (r, m) = ok_reason_and_message(kind);
                ("False", r.to_string(), m.to_string())
            }
        };
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            None => {
                conditions.push(NamespaceCondition {
                    type_: kind.to_string(),
                    status: state.to_string(),
                    reason: Some(reason),
                    message: Some(message),
                    last_transition_time: Some(now()),
                });
                changed = true;
            }
            Some(c) => {
                if c.status != state
                    || c.reason.as_deref() != Some(&reason)
                    || c.message.as_deref() != Some(&message)
                {
                    if c.status != state {
                        c.last_transition_time = Some(now());
                    }
                    c.status = state.to_string();
                    c.reason = Some(reason);
                    c.message = Some(message);
                    changed = true;
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_then_failing_then_unchanged() {
        let mut status = NamespaceStatus::default();
        assert!(apply(&mut status, &Findings::default()));
        let c = status.conditions.as_ref().unwrap();
        assert_eq!(c.len(), 5);
        assert!(c.iter().all(|c| c.status == "False"));

        let mut f = Findings::default();
        f.remaining.insert("configmaps.".into(), 1);
        f.finalizers.insert("example.com/x".into(), 1);
        assert!(apply(&mut status, &f));
        let c = status.conditions.as_ref().unwrap();
        let fin = c.iter().find(|c| c.type_ == FINALIZERS_REMAINING).unwrap();
        assert_eq!(fin.reason.as_deref(), Some("SomeFinalizersRemain"));
        assert_eq!(
            fin.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances")
        );
        assert!(!apply(&mut status, &f));
    }
}
