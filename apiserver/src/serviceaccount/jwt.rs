//! Compact JWS, as go-jose writes and reads the service-account tokens: a header of `alg` and
//! `kid`, a JSON payload, and a signature from one of the configured keys.

use anyhow::Result;
use base64::Engine;
use serde_json::{json, Value};

use super::keys::{b64url, PublicKey, SigningKey};

/// Signs `claims` into a compact JWS.
pub fn sign(key: &SigningKey, claims: &Value) -> Result<String> {
    let header = json!({"alg": key.alg(), "kid": key.public.kid()});
    let input = format!(
        "{}.{}",
        b64url(serde_json::to_string(&header)?.as_bytes()),
        b64url(serde_json::to_string(claims)?.as_bytes())
    );
    let sig = key.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64url(&sig)))
}

fn decode_part(part: &str) -> Option<Vec<u8>> {
    // go-jose tolerates trailing padding; so do we.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

/// A token split into its parts; its signature is not checked yet.
pub struct Parsed<'a> {
    pub alg: String,
    pub kid: String,
    pub payload: Value,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl Parsed<'_> {
    /// Whether one of `keys` signed the token.
    pub fn verified_by(&self, keys: &[&PublicKey]) -> bool {
        keys.iter()
            .any(|k| k.verify(&self.alg, self.signing_input.as_bytes(), &self.signature))
    }
}

/// Splits and decodes a compact JWS; None for anything that is not one.
pub fn parse(token: &str) -> Option<Parsed<'_>> {
    let mut parts = token.splitn(4, '.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&decode_part(header)?).ok()?;
    let payload: Value = serde_json::from_slice(&decode_part(payload)?).ok()?;
    if !payload.is_object() {
        return None;
    }
    let signing_input = &token[..token.rfind('.')?];
    Some(Parsed {
        alg: header.get("alg")?.as_str()?.to_string(),
        kid: header
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        payload,
        signing_input,
        signature: decode_part(signature)?,
    })
}

/// The unverified `iss` of a token, used to pick the authenticator that owns it.
pub fn peek_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let payload: Value = serde_json::from_slice(&decode_part(payload)?).ok()?;
    payload.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_parse() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let key = SigningKey::from_pem(&pair.serialize_pem()).unwrap();
        let token = sign(&key, &json!({"iss": "me", "sub": "you"})).unwrap();
        assert_eq!(token.split('.').count(), 3);
        let header: Value =
            serde_json::from_slice(&decode_part(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": key.public.kid()}));
        // go-jose writes the header with exactly these two fields, in this order.
        assert_eq!(
            String::from_utf8(decode_part(token.split('.').next().unwrap()).unwrap()).unwrap(),
            format!("{{\"alg\":\"ES256\",\"kid\":\"{}\"}}", key.public.kid())
        );
        assert_eq!(peek_issuer(&token).as_deref(), Some("me"));
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.payload["sub"], "you");
        assert_eq!(parsed.kid, key.public.kid());
        assert!(parsed.verified_by(&[&key.public]));

        let other =
            SigningKey::from_pem(&rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(!parsed.verified_by(&[&other.public]));

        // A changed payload no longer verifies.
        let mut pieces: Vec<&str> = token.split('.').collect();
        let forged = b64url(br#"{"iss":"me","sub":"admin"}"#);
        pieces[1] = &forged;
        let forged = pieces.join(".");
        assert!(!parse(&forged).unwrap().verified_by(&[&key.public]));
    }

    #[test]
    fn garbage_is_not_a_token() {
        assert!(parse("abc").is_none());
        assert!(parse("a.b.c").is_none());
        assert!(parse("a.b.c.d").is_none());
        assert!(peek_issuer("not-a-jwt").is_none());
    }
}
