//! Who is asking and whether they may: upstream's kubelet authentication (x509 client
//! certificates, webhook bearer tokens through TokenReview, anonymous) and webhook
//! authorization (SubjectAccessReview on `nodes/<subresource>`), both with short caches.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{HeaderMap, Method, Response, StatusCode};

use super::{text, Body, ServerConfig};

/// An authenticated (or anonymous) user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    fn anonymous() -> UserInfo {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }

    /// Authenticated users belong to `system:authenticated`, as upstream's group adder does.
    fn authenticated(mut self) -> UserInfo {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// The user named by a client certificate the TLS layer verified: CN the name, O the groups.
pub(super) fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
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
    Some(
        UserInfo {
            name,
            groups,
            ..Default::default()
        }
        .authenticated(),
    )
}

/// `authorization.mode` of the KubeletConfiguration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizationMode {
    AlwaysAllow,
    Webhook,
}

/// `authentication` and `authorization` of the KubeletConfiguration.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `authentication.x509.clientCAFile`: client certificates signed by it authenticate.
    pub client_ca_file: Option<PathBuf>,
    /// `authentication.anonymous.enabled`.
    pub anonymous: bool,
    /// `authentication.webhook.enabled`: bearer tokens are checked with TokenReviews.
    pub webhook_authentication: bool,
    /// `authentication.webhook.cacheTTL`.
    pub authentication_cache_ttl: Duration,
    pub authorization: AuthorizationMode,
    /// `authorization.webhook.cacheAuthorizedTTL` / `cacheUnauthorizedTTL`.
    pub authorized_ttl: Duration,
    pub unauthorized_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            client_ca_file: None,
            anonymous: false,
            webhook_authentication: true,
            authentication_cache_ttl: Duration::from_secs(120),
            authorization: AuthorizationMode::Webhook,
            authorized_ttl: Duration::from_secs(300),
            unauthorized_ttl: Duration::from_secs(30),
        }
    }
}

/// What a request asks of `nodes/<name>`: a SubjectAccessReview's resourceAttributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeAttributes {
    pub verb: String,
    pub node: String,
    pub subresource: String,
}

/// The attributes to check for a request, in order: upstream's fine-grained kubelet
/// authorization (on by default since 1.33) tries the specific subresource first and, for
/// some paths, falls back to `proxy`.
pub fn attributes_for(node: &str, method: &Method, path: &str) -> Vec<NodeAttributes> {
    let verb = match *method {
        Method::POST => "create",
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let is_under = |prefix: &str| {
        let prefix = prefix.trim_end_matches('/');
        path == prefix
            || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
    };
    let subresources: &[&str] = if is_under("/stats/") {
        &["stats"]
    } else if is_under("/metrics") {
        &["metrics"]
    } else if is_under("/logs/") {
        &["log"]
    } else if is_under("/pods") || is_under("/runningpods/") {
        &["pods", "proxy"]
    } else if is_under("/healthz") {
        &["healthz", "proxy"]
    } else if is_under("/configz") {
        &["configz", "proxy"]
    } else {
        &["proxy"]
    };
    subresources
        .iter()
        .map(|s| NodeAttributes {
            verb: verb.to_string(),
            node: node.to_string(),
            subresource: s.to_string(),
        })
        .collect()
}

/// The reviews the kubelet asks the apiserver for.
#[async_trait]
pub trait ReviewApi: Send + Sync + 'static {
    /// A TokenReview: the user, or None when the token is not valid.
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String>;
    /// A SubjectAccessReview: whether `user` may act on `attrs`.
    async fn review_access(&self, user: &UserInfo, attrs: &NodeAttributes) -> Result<bool, String>;
}

/// Reviews answered by the apiserver.
pub struct KubeReviews(pub kube::Client);

#[async_trait]
impl ReviewApi for KubeReviews {
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        let api: kube::Api<TokenReview> = kube::Api::all(self.0.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let out = api
            .create(&Default::default(), &review)
            .await
            .map_err(|e| e.to_string())?;
        let Some(status) = out.status else {
            return Ok(None);
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }

    async fn review_access(&self, user: &UserInfo, attrs: &NodeAttributes) -> Result<bool, String> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
        };
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.0.clone());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.clone()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.clone()),
                    name: Some(attrs.node.clone()),
                    namespace: Some(String::new()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let out = api
            .create(&Default::default(), &review)
            .await
            .map_err(|e| e.to_string())?;
        // Denied and no-opinion answers alike leave the request forbidden.
        Ok(out.status.is_some_and(|s| s.allowed))
    }
}

/// Answers that expire.
struct Cache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= 4096 {
            let now = Instant::now();
            entries.retain(|_, (expires, _)| *expires > now);
        }
        entries.insert(key, (Instant::now() + ttl, value));
    }
}

pub(super) struct Auth {
    config: AuthConfig,
    reviews: Arc<dyn ReviewApi>,
    tokens: Cache<String, Option<UserInfo>>,
    decisions: Cache<(UserInfo, NodeAttributes), bool>,
}

impl Auth {
    pub(super) fn new(config: &ServerConfig, reviews: Arc<dyn ReviewApi>) -> Auth {
        Auth {
            config: config.auth.clone(),
            reviews,
            tokens: Cache::new(),
            decisions: Cache::new(),
        }
    }

    /// The user: from the verified client certificate, else the bearer token (with webhook
    /// authentication on), else anonymous when allowed. Ok(None) is a 401; a token that
    /// does not check out is a 401 even with anonymous access on, as upstream does.
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        cert_user: Option<UserInfo>,
    ) -> Result<Option<UserInfo>, String> {
        if let Some(u) = cert_user {
            return Ok(Some(u));
        }
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_string())
            })
            .filter(|t| !t.is_empty());
        if let (Some(token), true) = (&token, self.config.webhook_authentication) {
            let user = match self.tokens.get(token) {
                Some(u) => u,
                None => {
                    let u = self.reviews.review_token(token).await?;
                    self.tokens.put(
                        token.clone(),
                        u.clone(),
                        self.config.authentication_cache_ttl,
                    );
                    u
                }
            };
            return Ok(user.map(UserInfo::authenticated));
        }
        // Without token authentication a token proves nothing: the request is anonymous.
        Ok(self.config.anonymous.then(UserInfo::anonymous))
    }

    /// Allowed when any of the attributes is; otherwise upstream's 403 (or 500 when the
    /// review itself failed).
    pub(super) async fn authorize(
        &self,
        user: &UserInfo,
        attrs: &[NodeAttributes],
    ) -> Result<(), Response<Body>> {
        if self.config.authorization == AuthorizationMode::AlwaysAllow {
            return Ok(());
        }
        for a in attrs {
            let key = (user.clone(), a.clone());
            let allowed = match self.decisions.get(&key) {
                Some(d) => d,
                None => match self.reviews.review_access(user, a).await {
                    Ok(d) => {
                        let ttl = if d {
                            self.config.authorized_ttl
                        } else {
                            self.config.unauthorized_ttl
                        };
                        self.decisions.put(key, d, ttl);
                        d
                    }
                    Err(e) => {
                        tracing::warn!(
                            "kubelet authorization error (user={}, verb={}, resource=nodes, subresource={}): {e}",
                            user.name, a.verb, a.subresource
                        );
                        return Err(text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &format!(
                                "Authorization error (user={}, verb={}, resource=nodes, subresource={})",
                                user.name, a.verb, a.subresource
                            ),
                        ));
                    }
                },
            };
            if allowed {
                return Ok(());
            }
        }
        let Some(first) = attrs.first() else {
            return Err(text(
                StatusCode::FORBIDDEN,
                "Authorization error: could not determine attributes for request",
            ));
        };
        let subresources: Vec<&str> = attrs.iter().map(|a| a.subresource.as_str()).collect();
        Err(text(
            StatusCode::FORBIDDEN,
            &format!(
                "Forbidden (user={}, verb={}, resource=nodes, subresource(s)=[{}])\n",
                user.name,
                first.verb,
                subresources.join(" ")
            ),
        ))
    }
}
