//! The three patch formats a client may send with `PATCH`:
//!
//! * [`json_patch`]: RFC 6902 operation lists (`application/json-patch+json`);
//! * [`merge_patch`]: RFC 7386 merge documents (`application/merge-patch+json`);
//! * [`strategic_merge_patch`]: Kubernetes' strategic merge patch
//!   (`application/strategic-merge-patch+json`), which kubectl uses for `apply`, `edit` and
//!   `patch`; it needs the object's schema facts to know how lists merge.
//!
//! All three work on `serde_json::Value` and follow the upstream apiserver's behaviour,
//! including its deviations from the RFCs. A failed patch never leaves a half-applied
//! result behind, and errors carry the HTTP status the apiserver answers them with.

mod json_patch;
mod merge_patch;
mod strategic;

use serde_json::Value;

pub use json_patch::{json_patch, MAX_JSON_PATCH_OPERATIONS};
pub use merge_patch::merge_patch;
pub use strategic::strategic_merge_patch;

/// How deep a patch document may nest. The JSON parser already refuses anything deeper than
/// 128 levels, so this only stops hand-built values from exhausting the stack.
pub const MAX_PATCH_DEPTH: usize = 256;

/// How the apiserver classifies a patch failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchErrorKind {
    /// The patch document itself is malformed: 400 Bad Request.
    BadRequest,
    /// The patch is well formed but cannot be applied to this object: 422 Unprocessable
    /// Entity.
    Unprocessable,
    /// Upstream passes these through as plain errors, which clients see as a 500 whose
    /// Status has no reason.
    Internal,
}

/// A patch that could not be applied; the target is left untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatchError {
    kind: PatchErrorKind,
    message: String,
}

impl PatchError {
    pub fn new(kind: PatchErrorKind, message: impl Into<String>) -> Self {
        PatchError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(PatchErrorKind::BadRequest, message)
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(PatchErrorKind::Unprocessable, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(PatchErrorKind::Internal, message)
    }

    pub fn kind(&self) -> PatchErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status code of the Status the apiserver answers with.
    pub fn status_code(&self) -> u16 {
        match self.kind {
            PatchErrorKind::BadRequest => 400,
            PatchErrorKind::Unprocessable => 422,
            PatchErrorKind::Internal => 500,
        }
    }
}

/// Rejects values nested deeper than [`MAX_PATCH_DEPTH`]. It walks with an explicit stack
/// because the point is to run before any recursive code sees the value.
pub(crate) fn check_depth(value: &Value) -> Result<(), PatchError> {
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > MAX_PATCH_DEPTH {
            return Err(PatchError::bad_request(format!(
                "patch is nested more than {MAX_PATCH_DEPTH} levels deep"
            )));
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

/// A short rendering of a value for error messages, so that a huge object in a bad patch
/// does not turn into a huge error.
pub(crate) fn describe(value: &Value) -> String {
    const LIMIT: usize = 256;
    let text = value.to_string();
    if text.len() <= LIMIT {
        return text;
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The JSON type name of a value, for error messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!("leaf");
        for _ in 0..depth {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn depth_limit() {
        assert!(check_depth(&nested(MAX_PATCH_DEPTH)).is_ok());
        let err = check_depth(&nested(MAX_PATCH_DEPTH + 1)).unwrap_err();
        assert_eq!(err.kind(), PatchErrorKind::BadRequest);
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn describe_truncates_on_char_boundary() {
        let long = Value::String("é".repeat(400));
        let text = describe(&long);
        assert!(text.ends_with("..."));
        assert!(text.len() < 300);
    }
}
