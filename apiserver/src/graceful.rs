//! Graceful deletion: how long an object may take to go away after a delete.
//!
//! Only pods have a grace period upstream: the kubelet stops their containers and then
//! deletes them for good. A pod that never reached a node, or has already finished, goes at
//! once.

use serde_json::Value;

use crate::meta;
use crate::resources::Resource;

const DEFAULT_POD_GRACE: i64 = 30;

/// The grace period of a delete, or None when the resource has no graceful deletion.
pub fn grace_period(res: &Resource, obj: &Value, options: &Value) -> Option<i64> {
    if !(res.group.is_empty() && res.kind == "Pod") {
        return None;
    }
    let requested = options.get("gracePeriodSeconds").and_then(Value::as_i64);
    let scheduled = meta::path(obj, "spec.nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        meta::path(obj, "status.phase").and_then(Value::as_str),
        Some("Succeeded") | Some("Failed")
    );
    if !scheduled || finished {
        return Some(0);
    }
    let grace = requested.unwrap_or_else(|| {
        meta::path(obj, "spec.terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_POD_GRACE)
    });
    // A negative request means "as short as possible"; upstream turns it into one second.
    Some(if grace < 0 { 1 } else { grace })
}
