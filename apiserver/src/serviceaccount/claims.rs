//! The claims of a service-account token, as upstream's `serviceaccount.Claims` writes them
//! and its validator reads them back.

use serde_json::{json, Map, Value};

/// The leeway go-jose allows on `exp`, `nbf` and `iat`, and that upstream gives deleted
/// objects before their tokens stop working.
pub const LEEWAY_SECONDS: i64 = 60;

/// The expiration the ServiceAccount admission plugin asks for in projected token volumes;
/// a pod-bound token asked with it lives a year and says when to warn (`warnafter`).
pub const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: i64 = 60 * 60 + 7;
/// How long such a token really lives.
pub const EXPIRATION_EXTENSION_SECONDS: i64 = 24 * 365 * 60 * 60;

/// A named object a token is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

impl Ref {
    fn to_json(&self) -> Value {
        // Both fields are `omitempty` upstream.
        let mut m = Map::new();
        if !self.name.is_empty() {
            m.insert("name".into(), json!(self.name));
        }
        if !self.uid.is_empty() {
            m.insert("uid".into(), json!(self.uid));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Ref {
        Ref {
            name: v.get("name").and_then(Value::as_str).unwrap_or("").into(),
            uid: v.get("uid").and_then(Value::as_str).unwrap_or("").into(),
        }
    }
}

/// What a token says about its subject, under the `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Private {
    pub namespace: String,
    pub service_account: Ref,
    pub pod: Option<Ref>,
    pub secret: Option<Ref>,
    pub node: Option<Ref>,
    pub warn_after: Option<i64>,
}

/// Everything that goes into a new token.
pub struct NewToken<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub now: i64,
    pub expiration_seconds: i64,
    /// Seconds after `now` at which a use should be reported as stale; 0 for none.
    pub warn_after: i64,
    pub jti: &'a str,
    pub private: &'a Private,
}

pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The claims, with keys sorted as go-jose writes them (it marshals through a map).
pub fn build(t: &NewToken) -> Value {
    let p = t.private;
    let mut k8s = Map::new();
    k8s.insert("namespace".into(), json!(p.namespace));
    if let Some(node) = &p.node {
        k8s.insert("node".into(), node.to_json());
    }
    if let Some(pod) = &p.pod {
        k8s.insert("pod".into(), pod.to_json());
    }
    if let Some(secret) = &p.secret {
        k8s.insert("secret".into(), secret.to_json());
    }
    k8s.insert("serviceaccount".into(), p.service_account.to_json());
    if t.warn_after != 0 {
        k8s.insert("warnafter".into(), json!(t.now + t.warn_after));
    }
    let mut claims = Map::new();
    claims.insert("aud".into(), json!(t.audiences));
    claims.insert("exp".into(), json!(t.now + t.expiration_seconds));
    claims.insert("iat".into(), json!(t.now));
    claims.insert("iss".into(), json!(t.issuer));
    if !t.jti.is_empty() {
        claims.insert("jti".into(), json!(t.jti));
    }
    claims.insert("kubernetes.io".into(), Value::Object(k8s));
    claims.insert("nbf".into(), json!(t.now));
    claims.insert(
        "sub".into(),
        json!(username(&p.namespace, &p.service_account.name)),
    );
    Value::Object(claims)
}

/// A NumericDate claim: a JSON number (fractions are cut, as Go's conversion does).
fn numeric_date(payload: &Value, key: &str) -> Result<Option<i64>, String> {
    match payload.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| {
                format!("go-jose/go-jose/jwt: expected number timestamp in {key} claim")
            }),
    }
}

/// The audiences of a token: `aud` may be one string or a list.
pub fn audiences(payload: &Value) -> Result<Vec<String>, String> {
    match payload.get("aud") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience".to_string())
            })
            .collect(),
        Some(_) => Err(
            "go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience".into(),
        ),
    }
}

/// The standard time checks, with go-jose's default leeway.
pub fn check_times(payload: &Value, now: i64) -> Result<(), String> {
    let nbf = numeric_date(payload, "nbf")?;
    let exp = numeric_date(payload, "exp")?;
    let iat = numeric_date(payload, "iat")?;
    if nbf.is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err("service account token is not valid yet".into());
    }
    if exp.is_some_and(|exp| now - LEEWAY_SECONDS > exp) {
        return Err("service account token has expired".into());
    }
    if iat.is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
        return Err("service account token is issued in the future".into());
    }
    Ok(())
}

/// Reads the `kubernetes.io` claim.
pub fn private(payload: &Value) -> Result<Private, String> {
    let k8s = match payload.get("kubernetes.io") {
        None | Some(Value::Null) => return Ok(Private::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(
                "json: cannot unmarshal the kubernetes.io claim into Go struct field privateClaims.kubernetes.io"
                    .into(),
            )
        }
    };
    let opt_ref = |key: &str| k8s.get(key).filter(|v| v.is_object()).map(Ref::from_json);
    Ok(Private {
        namespace: k8s
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        service_account: k8s
            .get("serviceaccount")
            .map(Ref::from_json)
            .unwrap_or_default(),
        pod: opt_ref("pod"),
        secret: opt_ref("secret"),
        node: opt_ref("node"),
        warn_after: numeric_date(k8s, "warnafter").ok().flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound_private() -> Private {
        Private {
            namespace: "ns".into(),
            service_account: Ref {
                name: "sa".into(),
                uid: "sa-uid".into(),
            },
            pod: Some(Ref {
                name: "p".into(),
                uid: "pod-uid".into(),
            }),
            secret: None,
            node: Some(Ref {
                name: "n1".into(),
                uid: String::new(),
            }),
            warn_after: None,
        }
    }

    #[test]
    fn claims_have_upstream_shape() {
        let private = bound_private();
        let auds = vec!["https://kubernetes.default.svc.cluster.local".to_string()];
        let claims = build(&NewToken {
            issuer: "https://kubernetes.default.svc.cluster.local",
            audiences: &auds,
            now: 1_000,
            expiration_seconds: EXPIRATION_EXTENSION_SECONDS,
            warn_after: WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS,
            jti: "abc",
            private: &private,
        });
        // Key order is go-jose's: sorted at every level.
        assert_eq!(
            serde_json::to_string(&claims).unwrap(),
            concat!(
                r#"{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":31537000,"iat":1000,"#,
                r#""iss":"https://kubernetes.default.svc.cluster.local","jti":"abc","#,
                r#""kubernetes.io":{"namespace":"ns","node":{"name":"n1"},"pod":{"name":"p","uid":"pod-uid"},"#,
                r#""serviceaccount":{"name":"sa","uid":"sa-uid"},"warnafter":4607},"#,
                r#""nbf":1000,"sub":"system:serviceaccount:ns:sa"}"#
            )
        );
        let back = super::private(&claims).unwrap();
        assert_eq!(back.pod, private.pod);
        assert_eq!(back.node, private.node);
        assert_eq!(back.warn_after, Some(4607));
        assert_eq!(audiences(&claims).unwrap(), auds);
    }

    #[test]
    fn unbound_claims_carry_only_the_account() {
        let private = Private {
            namespace: "default".into(),
            service_account: Ref {
                name: "default".into(),
                uid: "u".into(),
            },
            ..Default::default()
        };
        let claims = build(&NewToken {
            issuer: "iss",
            audiences: &["x".to_string()],
            now: 10,
            expiration_seconds: 600,
            warn_after: 0,
            jti: "j",
            private: &private,
        });
        let k8s = claims["kubernetes.io"].as_object().unwrap();
        assert_eq!(
            k8s.keys().collect::<Vec<_>>(),
            vec!["namespace", "serviceaccount"]
        );
        assert_eq!(claims["exp"], 610);
        assert_eq!(claims["aud"], json!(["x"]));
    }

    #[test]
    fn time_checks_allow_a_minute() {
        let c = json!({"exp": 1000, "nbf": 500, "iat": 500});
        assert!(check_times(&c, 1000).is_ok());
        assert!(check_times(&c, 1060).is_ok());
        assert_eq!(
            check_times(&c, 1061).unwrap_err(),
            "service account token has expired"
        );
        assert_eq!(
            check_times(&c, 439).unwrap_err(),
            "service account token is not valid yet"
        );
        assert_eq!(
            check_times(&json!({"iat": 500}), 439).unwrap_err(),
            "service account token is issued in the future"
        );
        assert!(check_times(&json!({}), 0).is_ok());
    }

    #[test]
    fn audience_may_be_a_string() {
        assert_eq!(audiences(&json!({"aud": "a"})).unwrap(), vec!["a"]);
        assert!(audiences(&json!({})).unwrap().is_empty());
        assert!(audiences(&json!({"aud": 5})).is_err());
    }
}
