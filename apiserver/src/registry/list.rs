//! List options: selectors, resourceVersion semantics, and continue tokens.

use base64::Engine;
use ferrokube_common::{fields, labels};
use serde_json::{json, Value};

use crate::meta;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::strategy::Strategy;

/// What a list or watch asked for, parsed from the query.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub label_selector: Option<labels::Selector>,
    pub field_selector: Option<fields::FieldSelector>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub allow_bookmarks: bool,
    pub timeout_seconds: Option<u64>,
    pub send_initial_events: Option<bool>,
}

impl ListQuery {
    pub fn parse(
        query: &[(String, String)],
        res: &Resource,
        strategy: &dyn Strategy,
    ) -> ApiResult<ListQuery> {
        let mut q = ListQuery::default();
        for (k, v) in query {
            match k.as_str() {
                "labelSelector" if !v.is_empty() => {
                    q.label_selector = Some(
                        labels::Selector::parse(v)
                            .map_err(|e| ApiError::bad_request(e.message()))?,
                    );
                }
                "fieldSelector" if !v.is_empty() => {
                    let sel = fields::FieldSelector::parse(v).map_err(|e| {
                        ApiError::bad_request(format!("invalid field selector {v:?}: {e}"))
                    })?;
                    for req in sel.requirements() {
                        let field = req.field.as_str();
                        let known = field == "metadata.name"
                            || (field == "metadata.namespace" && res.namespaced)
                            || strategy.selectable_fields().contains(&field);
                        if !known {
                            return Err(ApiError::bad_request(format!(
                                "field label not supported: {field}"
                            )));
                        }
                    }
                    q.field_selector = Some(sel);
                }
                "limit" => {
                    q.limit = v
                        .parse::<i64>()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit {v:?}")))?
                        .max(0) as usize
                }
                "continue" if !v.is_empty() => q.continue_token = Some(v.clone()),
                "resourceVersion" if !v.is_empty() => q.resource_version = Some(v.clone()),
                "resourceVersionMatch" if !v.is_empty() => {
                    q.resource_version_match = Some(v.clone())
                }
                "allowWatchBookmarks" => q.allow_bookmarks = v == "true" || v == "1",
                "timeoutSeconds" => {
                    q.timeout_seconds = Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid timeoutSeconds {v:?}"))
                    })?)
                }
                "sendInitialEvents" => q.send_initial_events = Some(v == "true"),
                _ => {}
            }
        }
        if let Some(m) = &q.resource_version_match {
            if !matches!(m.as_str(), "NotOlderThan" | "Exact") {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
            if q.resource_version.is_none() {
                return Err(invalid_list_options(
                    "resourceVersionMatch",
                    m,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if q.continue_token.is_some() {
                return Err(invalid_list_options(
                    "resourceVersionMatch",
                    m,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m == "Exact" && q.resource_version.as_deref() == Some("0") {
                return Err(invalid_list_options(
                    "resourceVersionMatch",
                    m,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if q.continue_token.is_some() {
            if let Some(rv) = &q.resource_version {
                if rv != "0" {
                    return Err(invalid_list_options(
                        "resourceVersion",
                        rv,
                        "specifying resource version is not allowed when using continue",
                    ));
                }
            }
        }
        Ok(q)
    }

    /// The resourceVersion as a number, with upstream's error for garbage.
    pub fn revision(&self) -> ApiResult<Option<i64>> {
        match &self.resource_version {
            None => Ok(None),
            Some(rv) => parse_resource_version(rv).map(Some),
        }
    }

    pub fn matches(&self, obj: &Value, res: &Resource, strategy: &dyn Strategy) -> bool {
        if let Some(sel) = &self.label_selector {
            if !sel.matches(&meta::labels(obj)) {
                return false;
            }
        }
        if let Some(sel) = &self.field_selector {
            let lookup = |field: &str| -> Option<String> {
                match field {
                    "metadata.name" => Some(meta::name(obj).to_string()),
                    "metadata.namespace" if res.namespaced => {
                        Some(meta::namespace(obj).to_string())
                    }
                    other => strategy.field_value(obj, other),
                }
            };
            if !sel.matches(&lookup) {
                return false;
            }
        }
        true
    }

    pub fn has_selectors(&self) -> bool {
        self.label_selector.is_some() || self.field_selector.is_some()
    }
}

fn invalid_list_options(field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "ListOptions",
        "",
        &[crate::status::FieldError::invalid(field, value, detail)],
    )
}

pub fn parse_resource_version(rv: &str) -> ApiResult<i64> {
    rv.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// A continue token: the snapshot revision and the key (relative to the list prefix) to
/// continue after. Its layout follows upstream's so tokens look alike.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinueToken {
    /// The snapshot revision; -1 means "the latest" (an inconsistent continuation).
    pub revision: i64,
    pub start: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let body = json!({ "v": "meta.k8s.io/v1", "rv": self.revision, "start": self.start });
        base64::engine::general_purpose::URL_SAFE.encode(body.to_string())
    }

    pub fn decode(token: &str) -> ApiResult<ContinueToken> {
        let bad = || {
            ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".to_string())
        };
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(token)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
            return Err(bad());
        }
        let revision = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
        let start = v
            .get("start")
            .and_then(Value::as_str)
            .ok_or_else(bad)?
            .to_string();
        if start.contains("..") || start.starts_with('/') {
            return Err(bad());
        }
        if revision == 0 {
            return Err(bad());
        }
        Ok(ContinueToken { revision, start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = ContinueToken {
            revision: 42,
            start: "ns/name\u{0}".into(),
        };
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        assert!(ContinueToken::decode("garbage!").is_err());
    }
}
