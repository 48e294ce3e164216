//! Service-account keys: PEM files of RSA or ECDSA keys (private, public or in a certificate)
//! as upstream's `keyutil` reads them, the key ID upstream derives from a public key, and
//! the JWK that the issuer's key set publishes.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use serde_json::{json, Value};

pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// --- a little DER, enough for the key structures used here ---------------------------------

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// rsaEncryption, 1.2.840.113549.1.1.1
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1, 1.3.132.0.34
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Reads one TLV, returning (tag, contents, rest).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = read_tlv(input)?;
    (t == tag).then_some((body, rest))
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(body);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der(TAG_SEQUENCE, &parts.concat())
}

/// An unsigned big-endian integer without its DER sign padding.
fn unsigned(int: &[u8]) -> Vec<u8> {
    let skip = int.iter().take_while(|b| **b == 0).count();
    let trimmed = &int[skip.min(int.len().saturating_sub(1))..];
    trimmed.to_vec()
}

// --- public keys -----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => OID_P256,
            Curve::P384 => OID_P384,
        }
    }
    fn from_oid(oid: &[u8]) -> Option<Curve> {
        match oid {
            OID_P256 => Some(Curve::P256),
            OID_P384 => Some(Curve::P384),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// A public key that verifies service-account tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// `pkcs1` is the DER RSAPublicKey; `n` and `e` its unsigned components.
    Rsa {
        pkcs1: Vec<u8>,
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// `point` is the uncompressed SEC1 point.
    Ec { curve: Curve, point: Vec<u8> },
}

impl PublicKey {
    fn from_pkcs1(pkcs1: &[u8]) -> Result<PublicKey> {
        let parse = || {
            let (body, _) = expect(pkcs1, TAG_SEQUENCE)?;
            let (n, rest) = expect(body, TAG_INTEGER)?;
            let (e, _) = expect(rest, TAG_INTEGER)?;
            Some((unsigned(n), unsigned(e)))
        };
        let (n, e) = parse().ok_or_else(|| anyhow!("malformed RSA public key"))?;
        Ok(PublicKey::Rsa {
            pkcs1: pkcs1.to_vec(),
            n,
            e,
        })
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki(spki: &[u8]) -> Result<PublicKey> {
        let parse = || {
            let (body, _) = expect(spki, TAG_SEQUENCE)?;
            let (alg, rest) = expect(body, TAG_SEQUENCE)?;
            let (bits, _) = expect(rest, TAG_BIT_STRING)?;
            let (&unused, key) = bits.split_first()?;
            if unused != 0 {
                return None;
            }
            let (oid, params) = expect(alg, TAG_OID)?;
            Some((oid.to_vec(), params.to_vec(), key.to_vec()))
        };
        let (oid, params, key) = parse().ok_or_else(|| anyhow!("malformed public key"))?;
        match oid.as_slice() {
            OID_RSA => PublicKey::from_pkcs1(&key),
            OID_EC => {
                let curve = expect(&params, TAG_OID)
                    .and_then(|(c, _)| Curve::from_oid(c))
                    .ok_or_else(|| anyhow!("unsupported elliptic curve (P-256 and P-384 are)"))?;
                if key.len() != 1 + 2 * curve.coordinate_len() || key[0] != 4 {
                    bail!("unsupported EC point encoding (uncompressed points are)");
                }
                Ok(PublicKey::Ec { curve, point: key })
            }
            _ => bail!("unsupported public key type (RSA and ECDSA are)"),
        }
    }

    /// The DER SubjectPublicKeyInfo, as Go's `x509.MarshalPKIXPublicKey` writes it.
    pub fn spki(&self) -> Vec<u8> {
        let (alg, key) = match self {
            PublicKey::Rsa { pkcs1, .. } => (
                seq(&[der(TAG_OID, OID_RSA), der(TAG_NULL, &[])]),
                pkcs1.clone(),
            ),
            PublicKey::Ec { curve, point } => (
                seq(&[der(TAG_OID, OID_EC), der(TAG_OID, curve.oid())]),
                point.clone(),
            ),
        };
        let mut bits = vec![0u8];
        bits.extend(key);
        seq(&[alg, der(TAG_BIT_STRING, &bits)])
    }

    /// Upstream's key ID: the unpadded base64url SHA-256 of the DER public key.
    pub fn kid(&self) -> String {
        b64url(ring::digest::digest(&ring::digest::SHA256, &self.spki()).as_ref())
    }

    /// The algorithm tokens signed by this key use.
    pub fn alg(&self) -> &'static str {
        match self {
            PublicKey::Rsa { .. } => "RS256",
            PublicKey::Ec {
                curve: Curve::P256, ..
            } => "ES256",
            PublicKey::Ec {
                curve: Curve::P384, ..
            } => "ES384",
        }
    }

    /// The JWK, fields in go-jose's order.
    pub fn jwk(&self) -> Value {
        match self {
            PublicKey::Rsa { n, e, .. } => json!({
                "use": "sig", "kty": "RSA", "kid": self.kid(), "alg": self.alg(),
                "n": b64url(n), "e": b64url(e),
            }),
            PublicKey::Ec { curve, point } => {
                let len = curve.coordinate_len();
                json!({
                    "use": "sig", "kty": "EC", "kid": self.kid(), "crv": curve.name(),
                    "alg": self.alg(),
                    "x": b64url(&point[1..1 + len]), "y": b64url(&point[1 + len..]),
                })
            }
        }
    }

    /// Checks a JWS signature made with `alg` over `message`.
    pub fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> bool {
        let algorithm: &dyn signature::VerificationAlgorithm = match (self, alg) {
            (PublicKey::Rsa { .. }, "RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
            (PublicKey::Rsa { .. }, "RS384") => &signature::RSA_PKCS1_2048_8192_SHA384,
            (PublicKey::Rsa { .. }, "RS512") => &signature::RSA_PKCS1_2048_8192_SHA512,
            (PublicKey::Rsa { .. }, "PS256") => &signature::RSA_PSS_2048_8192_SHA256,
            (PublicKey::Rsa { .. }, "PS384") => &signature::RSA_PSS_2048_8192_SHA384,
            (PublicKey::Rsa { .. }, "PS512") => &signature::RSA_PSS_2048_8192_SHA512,
            (
                PublicKey::Ec {
                    curve: Curve::P256, ..
                },
                "ES256",
            ) => &signature::ECDSA_P256_SHA256_FIXED,
            (
                PublicKey::Ec {
                    curve: Curve::P384, ..
                },
                "ES384",
            ) => &signature::ECDSA_P384_SHA384_FIXED,
            _ => return false,
        };
        let key = match self {
            PublicKey::Rsa { pkcs1, .. } => pkcs1.as_slice(),
            PublicKey::Ec { point, .. } => point.as_slice(),
        };
        UnparsedPublicKey::new(algorithm, key)
            .verify(message, sig)
            .is_ok()
    }
}

// --- private keys ----------------------------------------------------------------------------

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// The key that signs tokens, with its public half.
pub struct SigningKey {
    signer: Signer,
    pub public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, kid {})", self.alg(), self.public.kid())
    }
}

impl SigningKey {
    fn rsa(pair: RsaKeyPair) -> Result<SigningKey> {
        let public = PublicKey::from_pkcs1(pair.public().as_ref())?;
        Ok(SigningKey {
            signer: Signer::Rsa(pair),
            public,
        })
    }

    fn ec(pair: EcdsaKeyPair, curve: Curve) -> SigningKey {
        let public = PublicKey::Ec {
            curve,
            point: pair.public_key().as_ref().to_vec(),
        };
        SigningKey {
            signer: Signer::Ec(pair),
            public,
        }
    }

    fn ec_alg(curve: Curve) -> &'static signature::EcdsaSigningAlgorithm {
        match curve {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey> {
        if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
            return SigningKey::rsa(pair);
        }
        let rng = SystemRandom::new();
        for curve in [Curve::P256, Curve::P384] {
            if let Ok(pair) = EcdsaKeyPair::from_pkcs8(Self::ec_alg(curve), der, &rng) {
                return Ok(SigningKey::ec(pair, curve));
            }
        }
        bail!("unsupported PKCS#8 private key (RSA, ECDSA P-256 and P-384 are)")
    }

    /// An `EC PRIVATE KEY` (SEC 1), which must carry its public key.
    fn from_sec1(der: &[u8]) -> Result<SigningKey> {
        let parse = || {
            let (body, _) = expect(der, TAG_SEQUENCE)?;
            let (_version, rest) = expect(body, TAG_INTEGER)?;
            let (private, mut rest) = expect(rest, TAG_OCTET_STRING)?;
            let (mut curve, mut public) = (None, None);
            while let Some((tag, inner, next)) = read_tlv(rest) {
                match tag {
                    0xa0 => curve = expect(inner, TAG_OID).and_then(|(o, _)| Curve::from_oid(o)),
                    0xa1 => {
                        public = expect(inner, TAG_BIT_STRING)
                            .and_then(|(b, _)| b.split_first().map(|(_, p)| p.to_vec()))
                    }
                    _ => {}
                }
                rest = next;
            }
            Some((private.to_vec(), curve, public))
        };
        let (private, curve, public) =
            parse().ok_or_else(|| anyhow!("malformed EC private key"))?;
        let curve = curve
            .or(match private.len() {
                32 => Some(Curve::P256),
                48 => Some(Curve::P384),
                _ => None,
            })
            .ok_or_else(|| anyhow!("unsupported elliptic curve (P-256 and P-384 are)"))?;
        let public =
            public.ok_or_else(|| anyhow!("the EC private key does not carry its public key"))?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            Self::ec_alg(curve),
            &private,
            &public,
            &SystemRandom::new(),
        )
        .map_err(|e| anyhow!("invalid EC private key: {e}"))?;
        Ok(SigningKey::ec(pair, curve))
    }

    /// Reads the first private key in PEM text.
    pub fn from_pem(text: &str) -> Result<SigningKey> {
        for (label, der) in pem_blocks(text) {
            match label.as_str() {
                "RSA PRIVATE KEY" => {
                    let pair = RsaKeyPair::from_der(&der)
                        .map_err(|e| anyhow!("invalid RSA private key: {e}"))?;
                    return SigningKey::rsa(pair);
                }
                "PRIVATE KEY" => return SigningKey::from_pkcs8(&der),
                "EC PRIVATE KEY" => return SigningKey::from_sec1(&der),
                _ => {}
            }
        }
        bail!("no private key found (RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)")
    }

    pub fn load(path: &Path) -> Result<SigningKey> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        SigningKey::from_pem(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn alg(&self) -> &'static str {
        self.public.alg()
    }

    /// A JWS signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| anyhow!("RSA signing failed"))?;
                Ok(sig)
            }
            Signer::Ec(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| anyhow!("ECDSA signing failed")),
        }
    }
}

// --- PEM ---------------------------------------------------------------------------------------

/// The blocks of a PEM file as (label, DER). Malformed blocks are skipped.
pub fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if let Some((begun, body)) = current.take() {
                if begun == label {
                    if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&body) {
                        out.push((begun, der));
                    }
                }
            }
        } else if let Some((_, body)) = current.as_mut() {
            // Headers such as `Proc-Type:` belong to encrypted keys, which are not supported.
            if !line.contains(':') {
                body.push_str(line);
            }
        }
    }
    out
}

/// Every public key in PEM text: public keys, certificates' keys and private keys' public
/// halves, as upstream's `--service-account-key-file` accepts them.
pub fn public_keys_from_pem(text: &str) -> Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    for (label, der) in pem_blocks(text) {
        let key = match label.as_str() {
            "PUBLIC KEY" => PublicKey::from_spki(&der)?,
            "RSA PUBLIC KEY" => PublicKey::from_pkcs1(&der)?,
            "CERTIFICATE" => {
                let (_, cert) = x509_parser::parse_x509_certificate(&der)
                    .map_err(|e| anyhow!("invalid certificate: {e}"))?;
                PublicKey::from_spki(cert.public_key().raw)?
            }
            "RSA PRIVATE KEY" | "PRIVATE KEY" | "EC PRIVATE KEY" => {
                let block = format!(
                    "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                    base64::engine::general_purpose::STANDARD.encode(&der)
                );
                SigningKey::from_pem(&block)?.public
            }
            _ => continue,
        };
        keys.push(key);
    }
    if keys.is_empty() {
        bail!("data does not contain any valid RSA or ECDSA public keys");
    }
    Ok(keys)
}

pub fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    public_keys_from_pem(&text).with_context(|| format!("in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public key of upstream's key-ID stability test, with the ID upstream derives.
    const UPSTREAM_RSA: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA249XwEo9k4tM8fMxV7zx
OhcrP+WvXn917koM5Qr2ZXs4vo26e4ytdlrV0bQ9SlcLpQVSYjIxNfhTZdDt+ecI
zshKuv1gKIxbbLQMOuK1eA/4HALyEkFgmS/tleLJrhc65tKPMGD+pKQ/xhmzRuCG
51RoiMgbQxaCyYxGfNLpLAZK9L0Tctv9a0mJmGIYnIOQM4kC1A1I1n3EsXMWmeJU
j7OTh/AjjCnMnkgvKT2tpKxYQ59PgDgU8Ssc7RDSmSkLxnrv+OrN80j6xrw0OjEi
B4Ycr0PqfzZcvy8efTtFQ/Jnc4Bp1zUtFXt7+QeevePtQ2EcyELXE0i63T1CujRM
WwIDAQAB
-----END PUBLIC KEY-----
";

    #[test]
    fn key_id_matches_upstream() {
        let keys = public_keys_from_pem(UPSTREAM_RSA).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid(), "JHJehTTTZlsspKHT-GaJxK7Kd1NQgZJu3fyK6K_QDYU");
        let jwk = keys[0].jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["e"], "AQAB");
        // The modulus is 2048 bits: 256 bytes, 342 base64url characters.
        assert_eq!(jwk["n"].as_str().unwrap().len(), 342);
    }

    #[test]
    fn ec_key_round_trip() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let signing = SigningKey::from_pem(&pair.serialize_pem()).unwrap();
        let public = public_keys_from_pem(&pair.public_key_pem()).unwrap();
        assert_eq!(public[0], signing.public);
        assert_eq!(signing.alg(), "ES256");
        // Our DER public key is the one rcgen writes, so the key ID is over the same bytes.
        assert_eq!(
            signing.public.spki(),
            pem_blocks(&pair.public_key_pem())[0].1
        );
        let sig = signing.sign(b"message").unwrap();
        assert!(public[0].verify("ES256", b"message", &sig));
        assert!(!public[0].verify("ES256", b"other", &sig));
        assert!(!public[0].verify("RS256", b"message", &sig));
        let jwk = public[0].jwk();
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn private_key_files_give_their_public_key() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let keys = public_keys_from_pem(&pair.serialize_pem()).unwrap();
        assert_eq!(keys[0].spki(), pem_blocks(&pair.public_key_pem())[0].1);
        assert!(public_keys_from_pem("nothing here").is_err());
    }
}
