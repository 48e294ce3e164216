//! ServiceAccount tokens: the issuer's keys and settings (`--service-account-*`,
//! `--api-audiences`), the `token` subresource (TokenRequest), the authenticator of bearer
//! JWTs (bound and legacy secret-based tokens), the OIDC discovery documents, and the
//! ServiceAccount admission plugin.

pub mod admission;
pub mod authenticator;
pub mod claims;
pub mod jwt;
pub mod keys;
pub mod oidc;
pub mod token;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::registry::Registry;
use crate::status::ApiResult;
use keys::{PublicKey, SigningKey};

/// The issuer kubeadm configures, and so ferrokube's default.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The issuer of legacy secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// The flags, as upstream names them.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--service-account-issuer` (repeatable): the first signs, all are accepted.
    pub issuers: Vec<String>,
    /// `--service-account-key-file` (repeatable): keys that verify tokens.
    pub key_files: Vec<PathBuf>,
    /// `--service-account-signing-key-file`: the private key that signs tokens.
    pub signing_key_file: Option<PathBuf>,
    /// `--service-account-max-token-expiration`; zero for no limit.
    pub max_token_expiration: Duration,
    /// `--service-account-extend-token-expiration`.
    pub extend_token_expiration: bool,
    /// `--service-account-jwks-uri`.
    pub jwks_uri: Option<String>,
    /// `--api-audiences`; empty means the issuers.
    pub api_audiences: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            issuers: vec![DEFAULT_ISSUER.to_string()],
            key_files: Vec::new(),
            signing_key_file: None,
            max_token_expiration: Duration::ZERO,
            extend_token_expiration: true,
            jwks_uri: None,
            api_audiences: Vec::new(),
        }
    }
}

/// The issuer at run time.
#[derive(Debug)]
pub struct ServiceAccounts {
    pub issuers: Vec<String>,
    pub api_audiences: Vec<String>,
    signing: Option<SigningKey>,
    public_keys: Vec<PublicKey>,
    max_expiration_seconds: i64,
    extend_expiration: bool,
    discovery: Option<oidc::Documents>,
}

/// A key file next to the serving key, as `kube-apiserver pki` writes them.
fn beside(tls_key: &Path, name: &str) -> Option<PathBuf> {
    let p = tls_key.parent()?.join(name);
    p.is_file().then_some(p)
}

impl ServiceAccounts {
    /// Loads the keys. Without key flags, `sa.key` beside the serving key signs (and verifies);
    /// with neither, the serving key verifies, as upstream falls back to it.
    pub fn new(opts: &Options, tls_key: &Path, external_address: &str) -> Result<Self> {
        if opts.issuers.is_empty() || opts.issuers.iter().any(String::is_empty) {
            bail!("--service-account-issuer must not be empty");
        }
        for iss in &opts.issuers {
            if iss.contains(':') && !looks_like_url(iss) {
                bail!("--service-account-issuer {iss:?} contained a ':' but was not a valid URL");
            }
        }
        let max = opts.max_token_expiration;
        if !max.is_zero() && (max < Duration::from_secs(3600) || max.as_secs() > 1 << 32) {
            bail!(
                "the service-account-max-token-expiration must be between 1 hour and 2^32 seconds"
            );
        }
        let signing_file = opts
            .signing_key_file
            .clone()
            .or_else(|| beside(tls_key, "sa.key"));
        let signing = signing_file
            .as_deref()
            .map(|p| SigningKey::load(p).context("--service-account-signing-key-file"))
            .transpose()?;
        let key_files: Vec<PathBuf> = if !opts.key_files.is_empty() {
            opts.key_files.clone()
        } else if let Some(p) = &signing_file {
            vec![p.clone()]
        } else {
            vec![tls_key.to_path_buf()]
        };
        let mut public_keys = Vec::new();
        for f in &key_files {
            match keys::load_public_keys(f) {
                Ok(k) => public_keys.extend(k),
                // Only the implicit fallback to the serving key may fail quietly.
                Err(e) if opts.key_files.is_empty() && signing_file.is_none() => {
                    tracing::warn!("no service-account keys: {e:#}");
                }
                Err(e) => return Err(e.context("--service-account-key-file")),
            }
        }
        if let Some(s) = &signing {
            if !public_keys.contains(&s.public) {
                tracing::warn!(
                    "the service-account signing key's public key is not among the verification keys; \
                     tokens it signs will not authenticate"
                );
            }
        }
        let api_audiences = if opts.api_audiences.is_empty() {
            opts.issuers.clone()
        } else {
            opts.api_audiences.clone()
        };
        let discovery = match oidc::Documents::new(
            &opts.issuers[0],
            opts.jwks_uri.as_deref(),
            external_address,
            &public_keys,
        ) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!("not serving the service-account issuer discovery documents: {e}");
                None
            }
        };
        Ok(ServiceAccounts {
            issuers: opts.issuers.clone(),
            api_audiences,
            signing,
            public_keys,
            max_expiration_seconds: max.as_secs() as i64,
            extend_expiration: opts.extend_token_expiration,
            discovery,
        })
    }

    /// The keys to try for a token naming `kid`: those with that ID, or all when none has it.
    fn keys_for(&self, kid: &str) -> Vec<&PublicKey> {
        let matching: Vec<&PublicKey> = self
            .public_keys
            .iter()
            .filter(|k| !kid.is_empty() && k.kid() == kid)
            .collect();
        if matching.is_empty() {
            self.public_keys.iter().collect()
        } else {
            matching
        }
    }

    pub fn discovery(&self) -> Option<&oidc::Documents> {
        self.discovery.as_ref()
    }
}

fn looks_like_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
        }
        None => false,
    }
}

/// Reads an object the way upstream's token getters do: from the cache, then from the store
/// when the cache does not have it (yet).
pub(crate) async fn lookup(
    reg: &Registry,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let res = reg
        .table
        .lookup("", "v1", plural)
        .ok_or_else(|| crate::status::ApiError::internal(format!("{plural} are not served")))?;
    match reg.get(&res, namespace, name, Some("0")).await {
        Err(e) if e.code == 404 => reg.get(&res, namespace, name, None).await,
        other => other,
    }
}

/// The current Unix time in seconds.
pub(crate) fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Whether a deletion timestamp lies more than the leeway in the past.
pub(crate) fn deleted_long_ago(obj: &Value, now: i64) -> bool {
    crate::meta::deletion_timestamp(obj)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() < now - claims::LEEWAY_SECONDS)
}
