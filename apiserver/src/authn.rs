//! Authentication: who is asking. x509 client certificates (CN is the user, O entries the
//! groups), a static token file as upstream's `--token-auth-file`, and service-account
//! tokens (`crate::serviceaccount`), tried in upstream's order.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use http::HeaderMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes, as `user.Info.GetExtra()`.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    pub(crate) fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> User {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User {
            name,
            uid,
            groups,
            extra: BTreeMap::new(),
        }
    }

    /// The user as `UserInfo` (SelfSubjectReview, TokenReview): empty fields left out.
    pub fn to_user_info(&self) -> serde_json::Value {
        let mut info = serde_json::Map::new();
        info.insert("username".into(), self.name.clone().into());
        if !self.uid.is_empty() {
            info.insert("uid".into(), self.uid.clone().into());
        }
        if !self.groups.is_empty() {
            info.insert("groups".into(), serde_json::json!(self.groups));
        }
        if !self.extra.is_empty() {
            info.insert("extra".into(), serde_json::json!(self.extra));
        }
        serde_json::Value::Object(info)
    }
}

/// The user named by a verified client certificate (DER).
pub fn from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User::authenticated(name, String::new(), groups))
}

/// Bearer tokens from a CSV file: `token,user,uid,"group1,group2"`.
#[derive(Default)]
pub struct TokenFile {
    tokens: HashMap<String, User>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                anyhow::bail!("{}:{}: want at least token,user,uid", path.display(), i + 1);
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                fields[0].clone(),
                User::authenticated(fields[1].clone(), fields[2].clone(), groups),
            );
        }
        Ok(TokenFile { tokens })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Option<User> {
        self.lookup(bearer_token(headers)?)
    }

    pub fn lookup(&self, token: &str) -> Option<User> {
        self.tokens.get(token).cloned()
    }
}

/// The bearer token of the `Authorization` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        return (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token);
    }
    None
}

/// The token in a WebSocket subprotocol (`base64url.bearer.authorization.k8s.io.<token>`).
fn websocket_token(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None;
    }
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix("base64url.bearer.authorization.k8s.io.")
        })
        .and_then(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .ok()
        })
        .and_then(|t| String::from_utf8(t).ok())
        .filter(|t| !t.is_empty())
}

/// The outcome of a token authentication: the user and the audiences it is good for, or the
/// error upstream's authenticator chain reports.
pub type TokenResult = Result<crate::serviceaccount::authenticator::Authenticated, String>;

/// Authenticates a bearer token with every token authenticator, for the audiences asked for
/// (the API audiences when the caller names none), as upstream's union does.
pub async fn authenticate_token(
    app: &crate::server::App,
    token: &str,
    audiences: Option<&[String]>,
) -> TokenResult {
    let sa = &app.service_accounts;
    let requested: Vec<String> = match audiences {
        Some(a) if !a.is_empty() => a.to_vec(),
        _ => sa.api_audiences.clone(),
    };
    let mut errors: Vec<String> = Vec::new();
    // Static tokens know no audience: they are good for the API audiences only.
    if let Some(user) = app.tokens.lookup(token) {
        let auds: Vec<String> = requested
            .iter()
            .filter(|a| sa.api_audiences.contains(a))
            .cloned()
            .collect();
        if !auds.is_empty() || sa.api_audiences.is_empty() {
            return Ok(crate::serviceaccount::authenticator::Authenticated {
                user,
                audiences: auds,
            });
        }
    }
    match sa.authenticate(&app.registry, token, &requested).await {
        Some(Ok(a)) => return Ok(a),
        Some(Err(e)) => errors.push(e),
        None => {}
    }
    errors.dedup();
    Err(if errors.is_empty() {
        "invalid bearer token".to_string()
    } else {
        format!("[invalid bearer token, {}]", errors.join(", "))
    })
}

/// Authenticates a request that brought no client certificate: None for an anonymous one.
/// A token that does not authenticate leaves the request anonymous too (answered 401 where
/// anonymous access is not allowed), and is logged as upstream logs it.
pub async fn authenticate_request(app: &crate::server::App, headers: &HeaderMap) -> Option<User> {
    let token = match bearer_token(headers) {
        Some(t) => t.to_string(),
        None => websocket_token(headers)?,
    };
    match authenticate_token(app, &token, None).await {
        Ok(a) => Some(a.user),
        Err(e) => {
            tracing::debug!("Unable to authenticate the request: {e}");
            None
        }
    }
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quoted_groups() {
        assert_eq!(
            split_csv(r#"abc,alice,1,"dev,ops""#),
            vec!["abc", "alice", "1", "dev,ops"]
        );
    }
}
