//! Authentication of service-account JWTs, as upstream's `JWTTokenAuthenticator` with its two
//! validators: bound tokens (TokenRequest, issuer `--service-account-issuer`) and legacy
//! tokens kept in `kubernetes.io/service-account-token` Secrets (issuer
//! `kubernetes/serviceaccount`).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Value};

use super::claims::{self, Private};
use super::{deleted_long_ago, jwt, lookup, now_unix, ServiceAccounts, LEGACY_ISSUER};
use crate::authn::User;
use crate::registry::{PatchKind, Registry, WriteOptions};

pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

const LEGACY_INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";
const LEGACY_LAST_USED_LABEL: &str = "kubernetes.io/legacy-token-last-used";

const INVALIDATED: &str = "service account token has been invalidated";

/// A successful authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub user: User,
    /// The audiences the token is good for among those asked for.
    pub audiences: Vec<String>,
}

/// Who the token speaks for, once validated.
#[derive(Default)]
struct Info {
    namespace: String,
    name: String,
    uid: String,
    pod_name: String,
    pod_uid: String,
    node_name: String,
    node_uid: String,
    credential_id: String,
}

impl Info {
    fn user(self) -> User {
        let mut extra = BTreeMap::new();
        if !self.pod_name.is_empty() && !self.pod_uid.is_empty() {
            extra.insert(POD_NAME_KEY.to_string(), vec![self.pod_name]);
            extra.insert(POD_UID_KEY.to_string(), vec![self.pod_uid]);
        }
        if !self.credential_id.is_empty() {
            extra.insert(CREDENTIAL_ID_KEY.to_string(), vec![self.credential_id]);
        }
        if !self.node_name.is_empty() {
            extra.insert(NODE_NAME_KEY.to_string(), vec![self.node_name]);
            if !self.node_uid.is_empty() {
                extra.insert(NODE_UID_KEY.to_string(), vec![self.node_uid]);
            }
        }
        let mut user = User::authenticated(
            claims::username(&self.namespace, &self.name),
            self.uid,
            vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{}", self.namespace),
            ],
        );
        user.extra = extra;
        user
    }
}

/// Go's `%q` of a string list: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// The audiences of `token_auds` among `requested`, in the order of `token_auds`.
fn intersect(token_auds: &[String], requested: &[String]) -> Vec<String> {
    let mut out: Vec<String> = token_auds
        .iter()
        .filter(|a| requested.contains(a))
        .cloned()
        .collect();
    out.dedup();
    out
}

impl ServiceAccounts {
    /// Authenticates a bearer token if it is a service-account token: None when the token is
    /// not one (not a JWT, or from another issuer), an error when it is one but is not valid.
    /// `requested` are the audiences the caller wants (the API audiences for requests).
    pub async fn authenticate(
        &self,
        reg: &Registry,
        token: &str,
        requested: &[String],
    ) -> Option<Result<Authenticated, String>> {
        let issuer = jwt::peek_issuer(token)?;
        let legacy = issuer == LEGACY_ISSUER;
        if !legacy && !self.issuers.contains(&issuer) {
            return None;
        }
        let parsed = jwt::parse(token)?;
        if self.public_keys.is_empty() || !parsed.verified_by(&self.keys_for(&parsed.kid)) {
            return Some(Err(
                "go-jose/go-jose: error in cryptographic primitive".to_string()
            ));
        }
        let payload = &parsed.payload;
        let token_auds = match claims::audiences(payload) {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        let token_auds = if token_auds.is_empty() {
            // Only the API audiences are allowed for tokens without any (legacy tokens).
            self.api_audiences.clone()
        } else {
            token_auds
        };
        let auds = intersect(&token_auds, requested);
        if auds.is_empty() && !self.api_audiences.is_empty() {
            return Some(Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_quoted(&token_auds),
                go_quoted(requested)
            )));
        }
        let info = if legacy {
            self.validate_legacy(reg, token, payload).await
        } else {
            validate_bound(reg, payload).await
        };
        Some(info.map(|info| Authenticated {
            user: info.user(),
            audiences: auds,
        }))
    }

    async fn validate_legacy(
        &self,
        reg: &Registry,
        token: &str,
        payload: &Value,
    ) -> Result<Info, String> {
        let claim = |key: &str| {
            payload
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let subject = claim("sub");
        let namespace = claim("kubernetes.io/serviceaccount/namespace");
        let secret_name = claim("kubernetes.io/serviceaccount/secret.name");
        let sa_name = claim("kubernetes.io/serviceaccount/service-account.name");
        let sa_uid = claim("kubernetes.io/serviceaccount/service-account.uid");
        for (value, what) in [
            (&subject, "sub claim is missing"),
            (&namespace, "namespace claim is missing"),
            (&secret_name, "secretName claim is missing"),
            (&sa_name, "serviceAccountName claim is missing"),
            (&sa_uid, "serviceAccountUID claim is missing"),
        ] {
            if value.is_empty() {
                return Err(what.to_string());
            }
        }
        if subject != claims::username(&namespace, &sa_name) {
            return Err("sub claim is invalid".into());
        }
        let secret = lookup(reg, "secrets", Some(&namespace), &secret_name)
            .await
            .map_err(|_| "Token has been invalidated".to_string())?;
        if crate::meta::deletion_timestamp(&secret).is_some() {
            return Err("Token has been invalidated".into());
        }
        let stored = secret["data"]["token"]
            .as_str()
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .unwrap_or_default();
        if !constant_time_eq(&stored, token.as_bytes()) {
            return Err("Token does not match server's copy".into());
        }
        let sa = lookup(reg, "serviceaccounts", Some(&namespace), &sa_name)
            .await
            .map_err(|e| e.message.clone())?;
        if crate::meta::deletion_timestamp(&sa).is_some() {
            return Err(format!(
                "ServiceAccount {namespace}/{sa_name} has been deleted"
            ));
        }
        if crate::meta::uid(&sa) != sa_uid {
            return Err(format!(
                "ServiceAccount UID ({}) does not match claim ({sa_uid})",
                crate::meta::uid(&sa)
            ));
        }
        let labels = crate::meta::labels(&secret);
        if labels
            .get(LEGACY_INVALID_SINCE_LABEL)
            .is_some_and(|v| !v.is_empty())
        {
            mark_used(reg, &secret, &labels).await;
            return Err(format!(
                "the token in secret {namespace}/{secret_name} for service account {namespace}/{sa_name} \
                 has been marked invalid. Use tokens from the TokenRequest API or manually created \
                 secret-based tokens, or remove the '{LEGACY_INVALID_SINCE_LABEL}' label from the secret \
                 to temporarily allow use of this token"
            ));
        }
        mark_used(reg, &secret, &labels).await;
        Ok(Info {
            namespace,
            name: sa_name,
            uid: sa_uid,
            ..Default::default()
        })
    }
}

/// Compares without stopping at the first difference, as `subtle.ConstantTimeCompare`.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Records the day a legacy token was used, as upstream's `legacy-token-last-used` label.
async fn mark_used(reg: &Registry, secret: &Value, labels: &BTreeMap<String, String>) {
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap_or(today);
    let last = labels.get(LEGACY_LAST_USED_LABEL).map(String::as_str);
    let (today, tomorrow) = (today.to_string(), tomorrow.to_string());
    if last == Some(today.as_str()) || last == Some(tomorrow.as_str()) {
        return;
    }
    let Some(res) = reg.table.lookup("", "v1", "secrets") else {
        return;
    };
    let patch = json!({"metadata": {
        "uid": crate::meta::uid(secret),
        "labels": {LEGACY_LAST_USED_LABEL: today},
    }});
    if let Err(e) = reg
        .patch(
            &res,
            Some(crate::meta::namespace(secret)),
            crate::meta::name(secret),
            None,
            PatchKind::Merge,
            &patch,
            &WriteOptions::default(),
        )
        .await
    {
        tracing::warn!(
            "labelling legacy service account token {}/{} with its last-used date: {}",
            crate::meta::namespace(secret),
            crate::meta::name(secret),
            e.message
        );
    }
}

/// The checks of upstream's bound-token validator: times, then the account and the objects
/// the token is bound to, which must still exist with the same UIDs.
async fn validate_bound(reg: &Registry, payload: &Value) -> Result<Info, String> {
    let now = now_unix();
    claims::check_times(payload, now)?;
    let Private {
        namespace,
        service_account,
        pod,
        secret,
        node,
        warn_after: _,
    } = claims::private(payload)?;

    let sa = lookup(
        reg,
        "serviceaccounts",
        Some(&namespace),
        &service_account.name,
    )
    .await
    .map_err(|e| e.message.clone())?;
    if crate::meta::uid(&sa) != service_account.uid {
        return Err(format!(
            "service account UID ({}) does not match claim ({})",
            crate::meta::uid(&sa),
            service_account.uid
        ));
    }
    if deleted_long_ago(&sa, now) {
        return Err(format!(
            "service account {namespace}/{} has been deleted",
            service_account.name
        ));
    }

    if let Some(r) = &secret {
        let obj = lookup(reg, "secrets", Some(&namespace), &r.name)
            .await
            .map_err(|_| INVALIDATED.to_string())?;
        if crate::meta::uid(&obj) != r.uid {
            return Err(format!(
                "secret UID ({}) does not match service account secret ref claim ({})",
                crate::meta::uid(&obj),
                r.uid
            ));
        }
        if deleted_long_ago(&obj, now) {
            return Err(INVALIDATED.into());
        }
    }

    let mut info = Info {
        namespace: namespace.clone(),
        name: service_account.name.clone(),
        uid: service_account.uid.clone(),
        credential_id: payload
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty())
            .map(|j| format!("JTI={j}"))
            .unwrap_or_default(),
        ..Default::default()
    };
    if let Some(r) = &pod {
        let obj = lookup(reg, "pods", Some(&namespace), &r.name)
            .await
            .map_err(|_| INVALIDATED.to_string())?;
        if crate::meta::uid(&obj) != r.uid {
            return Err(format!(
                "pod UID ({}) does not match service account pod ref claim ({})",
                crate::meta::uid(&obj),
                r.uid
            ));
        }
        if deleted_long_ago(&obj, now) {
            return Err(INVALIDATED.into());
        }
        info.pod_name = r.name.clone();
        info.pod_uid = r.uid.clone();
    }
    if let Some(r) = &node {
        if pod.is_none() {
            let obj = lookup(reg, "nodes", None, &r.name)
                .await
                .map_err(|_| INVALIDATED.to_string())?;
            if crate::meta::uid(&obj) != r.uid {
                return Err(format!(
                    "node UID ({}) does not match service account node ref claim ({})",
                    crate::meta::uid(&obj),
                    r.uid
                ));
            }
            if deleted_long_ago(&obj, now) {
                return Err(INVALIDATED.into());
            }
        }
        info.node_name = r.name.clone();
        info.node_uid = r.uid.clone();
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_of_a_pod_bound_token() {
        let user = Info {
            namespace: "ns".into(),
            name: "sa".into(),
            uid: "u".into(),
            pod_name: "p".into(),
            pod_uid: "pu".into(),
            node_name: "n".into(),
            node_uid: String::new(),
            credential_id: "JTI=j".into(),
        }
        .user();
        assert_eq!(user.name, "system:serviceaccount:ns:sa");
        assert_eq!(user.uid, "u");
        assert_eq!(
            user.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ]
        );
        assert_eq!(
            user.extra.keys().collect::<Vec<_>>(),
            vec![CREDENTIAL_ID_KEY, NODE_NAME_KEY, POD_NAME_KEY, POD_UID_KEY]
        );
    }

    #[test]
    fn audiences_intersect_and_quote_as_go() {
        let a = vec!["x".to_string(), "y".to_string()];
        assert_eq!(intersect(&a, &["y".to_string()]), vec!["y"]);
        assert_eq!(go_quoted(&a), r#"["x" "y"]"#);
    }
}
