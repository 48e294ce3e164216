//! Service-account issuer discovery, as upstream's: `/.well-known/openid-configuration` and
//! the key set at `/openid/v1/jwks`, rendered once at start.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use serde_json::json;

use super::keys::PublicKey;
use crate::http::{full, Body};

pub const OPENID_CONFIG_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// Upstream's cache lifetime for static keys.
const MAX_AGE_SECONDS: u32 = 3600;

#[derive(Debug)]
pub struct Documents {
    config: Bytes,
    jwks: Bytes,
}

/// Splits `https://host[:port]/path?query#fragment` loosely; enough to apply upstream's checks.
fn url_parts(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some((scheme, rest))
}

impl Documents {
    pub fn new(
        issuer: &str,
        jwks_uri: Option<&str>,
        external_address: &str,
        keys: &[PublicKey],
    ) -> Result<Documents, String> {
        let (scheme, rest) = url_parts(issuer)
            .ok_or_else(|| format!("issuer URL must use https scheme, got: {issuer}"))?;
        if scheme != "https" {
            return Err(format!("issuer URL must use https scheme, got: {issuer}"));
        }
        if rest.contains('?') {
            return Err(format!("issuer URL may not include a query, got: {issuer}"));
        }
        if rest.contains('#') {
            return Err(format!(
                "issuer URL may not include a fragment, got: {issuer}"
            ));
        }
        let jwks_uri = match jwks_uri {
            Some(uri) => {
                if url_parts(uri).map(|(s, _)| s) != Some("https") {
                    return Err(format!("jwksURI requires https scheme, parsed as: {uri}"));
                }
                uri.to_string()
            }
            None if external_address.is_empty() => {
                return Err(
                    "either the JWKS URI or the default external address, or both, must be set"
                        .into(),
                )
            }
            None => format!("https://{external_address}{}", JWKS_PATH),
        };
        if keys.is_empty() {
            return Err("no keys provided for validating keyset".into());
        }
        let mut algs: Vec<&str> = keys.iter().map(PublicKey::alg).collect();
        algs.sort();
        algs.dedup();
        let config = json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
        });
        let jwks = json!({ "keys": keys.iter().map(PublicKey::jwk).collect::<Vec<_>>() });
        Ok(Documents {
            config: Bytes::from(serde_json::to_vec(&config).unwrap_or_default()),
            jwks: Bytes::from(serde_json::to_vec(&jwks).unwrap_or_default()),
        })
    }

    pub fn config(&self) -> &Bytes {
        &self.config
    }

    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }
}

fn document(body: Bytes, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CACHE_CONTROL,
            format!("public, max-age={MAX_AGE_SECONDS}"),
        )
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// Answers the two discovery paths; None for any other path, or when discovery is off.
pub fn serve(app: &crate::server::App, path: &str) -> Option<Response<Body>> {
    let docs = app.service_accounts.discovery()?;
    match path {
        OPENID_CONFIG_PATH => Some(document(docs.config.clone(), "application/json")),
        JWKS_PATH => Some(document(docs.jwks.clone(), "application/jwk-set+json")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn documents_as_upstream() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let keys =
            crate::serviceaccount::keys::public_keys_from_pem(&pair.public_key_pem()).unwrap();
        let docs = Documents::new(
            "https://kubernetes.default.svc.cluster.local",
            None,
            "10.0.0.1:6443",
            &keys,
        )
        .unwrap();
        let config: Value = serde_json::from_slice(docs.config()).unwrap();
        assert_eq!(
            config,
            json!({
                "issuer": "https://kubernetes.default.svc.cluster.local",
                "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            })
        );
        let jwks: Value = serde_json::from_slice(docs.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], json!(keys[0].kid()));
        assert_eq!(jwks["keys"][0]["kty"], "EC");
    }

    #[test]
    fn issuer_must_be_https() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let keys =
            crate::serviceaccount::keys::public_keys_from_pem(&pair.public_key_pem()).unwrap();
        let err = Documents::new("kubernetes/serviceaccount", None, "a:1", &keys).unwrap_err();
        assert!(err.contains("https"), "{err}");
        let err = Documents::new("https://x", Some("http://y/jwks"), "a:1", &keys).unwrap_err();
        assert!(err.contains("jwksURI requires https"), "{err}");
    }
}
