//! Pod failure policies and success policies: which rule a failed pod matches, and whether
//! the succeeded indexes satisfy a success rule.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{PodFailurePolicy, SuccessPolicy};
use k8s_openapi::api::core::v1::Pod;

/// What a failed pod's matching rule decided, with the text upstream puts in the condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No rule matched, or the rule said Count: the failure counts against the backoff limit.
    Count,
    /// The failure is not counted at all.
    Ignore,
    /// The whole job fails, with this message.
    FailJob(String),
    /// The pod's index fails without further retries.
    FailIndex,
}

/// Which rule of `policy` the failed `pod` matches first.
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (i, rule) in policy.rules.iter().enumerate() {
        let why = if let Some(req) = &rule.on_exit_codes {
            exit_code_match(pod, req.container_name.as_deref(), &req.operator, &req.values).map(|(c, code)| {
                format!(
                    "Container {c} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                    rule.action
                )
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
            patterns.iter().find_map(|p| {
                let want = p.status.as_str();
                conds?
                    .iter()
                    .any(|c| c.type_ == p.type_ && c.status == want)
                    .then(|| {
                        format!(
                            "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                            p.type_, rule.action
                        )
                    })
            })
        } else {
            None
        };
        let Some(why) = why else { continue };
        return match rule.action.as_str() {
            "Ignore" => Verdict::Ignore,
            "FailJob" => Verdict::FailJob(why),
            "FailIndex" => Verdict::FailIndex,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

/// The first terminated container (init containers included) whose non-zero exit code
/// satisfies the operator; a zero exit never matches, as upstream.
fn exit_code_match(
    pod: &Pod,
    container: Option<&str>,
    op: &str,
    values: &[i32],
) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    let all = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten());
    for cs in all {
        let Some(code) = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
        else {
            continue;
        };
        if code == 0 || container.is_some_and(|c| c != cs.name) {
            continue;
        }
        let inside = values.contains(&code);
        if (op == "In" && inside) || (op == "NotIn" && !inside) {
            return Some((cs.name.clone(), code));
        }
    }
    None
}

/// The index of the first success rule the succeeded indexes satisfy.
pub fn success_rule(
    policy: Option<&SuccessPolicy>,
    succeeded: &BTreeSet<i32>,
    completions: i32,
) -> Option<usize> {
    let policy = policy?;
    policy
        .rules
        .iter()
        .position(|rule| match &rule.succeeded_indexes {
            Some(text) => {
                let wanted = super::indexes::parse(Some(text), completions);
                let done = wanted.intersection(succeeded).count();
                match rule.succeeded_count {
                    Some(n) => done as i64 >= n as i64,
                    None => done == wanted.len(),
                }
            }
            None => rule
                .succeeded_count
                .is_some_and(|n| succeeded.len() as i64 >= n as i64),
        })
}
