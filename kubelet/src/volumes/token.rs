//! Service account tokens for projected volumes, requested through the TokenRequest API and
//! cached like upstream's kubelet token manager: a token is reused until it is older than 80%
//! of its lifetime or than 24 hours, and a failed refresh keeps serving the cached token
//! until it actually expires.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::Api;

const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const MAX_JITTER: Duration = Duration::from_secs(10);

/// Where tokens come from; the real one is the apiserver's TokenRequest subresource.
#[async_trait]
pub trait TokenFetcher: Send + Sync {
    /// POST `/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token`.
    async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, String>;
}

/// Fetches tokens from the apiserver.
pub struct ApiTokenFetcher {
    client: kube::Client,
}

impl ApiTokenFetcher {
    pub fn new(client: kube::Client) -> Self {
        ApiTokenFetcher { client }
    }
}

#[async_trait]
impl TokenFetcher for ApiTokenFetcher {
    async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        api.create_subresource("token", service_account, &PostParams::default(), request)
            .await
            .map_err(super::api_error)
    }
}

/// Cache key: everything that makes two requests ask for different tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    namespace: String,
    audiences: Vec<String>,
    expiration_seconds: i64,
    bound_kind: String,
    bound_api_version: String,
    bound_name: String,
    bound_uid: String,
}

impl Key {
    fn new(namespace: &str, name: &str, tr: &TokenRequest) -> Key {
        let bound = tr.spec.bound_object_ref.clone().unwrap_or_default();
        Key {
            name: name.to_string(),
            namespace: namespace.to_string(),
            audiences: tr.spec.audiences.clone(),
            expiration_seconds: tr.spec.expiration_seconds.unwrap_or(0),
            bound_kind: bound.kind.unwrap_or_default(),
            bound_api_version: bound.api_version.unwrap_or_default(),
            bound_name: bound.name.unwrap_or_default(),
            bound_uid: bound.uid.unwrap_or_default(),
        }
    }

    /// Safe to log: no token in it.
    fn describe(&self) -> String {
        format!(
            "{:?}/{:?}/{:?}/{}/{}/{}",
            self.name,
            self.namespace,
            self.audiences,
            self.expiration_seconds,
            self.bound_kind,
            self.bound_uid
        )
    }
}

/// The kubelet's service account token cache.
pub struct TokenManager {
    fetcher: Arc<dyn TokenFetcher>,
    cache: Mutex<HashMap<Key, TokenRequest>>,
}

impl TokenManager {
    pub fn new(fetcher: Arc<dyn TokenFetcher>) -> Self {
        TokenManager {
            fetcher,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A token for `tr`, from the cache while it is fresh enough.
    pub async fn get_service_account_token(
        &self,
        namespace: &str,
        name: &str,
        tr: &TokenRequest,
    ) -> Result<TokenRequest, String> {
        self.get_at(namespace, name, tr, SystemTime::now(), random_jitter())
            .await
    }

    async fn get_at(
        &self,
        namespace: &str,
        name: &str,
        tr: &TokenRequest,
        now: SystemTime,
        jitter: Duration,
    ) -> Result<TokenRequest, String> {
        let key = Key::new(namespace, name, tr);
        let cached = {
            let mut cache = self.lock();
            // Expired tokens of other requests go; this one's stays to word the error below.
            cache.retain(|k, t| *k == key || !expired(t, now));
            cache.get(&key).cloned()
        };
        if let Some(ctr) = &cached {
            if !requires_refresh(ctr, now, jitter) {
                return Ok(ctr.clone());
            }
        }
        match self.fetcher.request_token(namespace, name, tr).await {
            Ok(fresh) => {
                self.lock().insert(key, fresh.clone());
                Ok(fresh)
            }
            Err(e) => match cached {
                None => Err(format!("failed to fetch token: {e}")),
                Some(ctr) if expired(&ctr, now) => Err(format!(
                    "token {} expired and refresh failed: {e}",
                    key.describe()
                )),
                Some(ctr) => {
                    tracing::warn!(key = %key.describe(), error = %e, "couldn't update token");
                    Ok(ctr)
                }
            },
        }
    }

    /// Forgets the tokens bound to a pod that is gone.
    pub fn delete_service_account_token(&self, pod_uid: &str) {
        self.lock().retain(|k, _| k.bound_uid != pod_uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, TokenRequest>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn random_jitter() -> Duration {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    let fraction = (h.finish() % 1_000_000) as f64 / 1_000_000.0;
    Duration::from_secs((fraction * MAX_JITTER.as_secs_f64()) as u64)
}

fn expiry(tr: &TokenRequest) -> Option<SystemTime> {
    let ts = tr.status.as_ref()?.expiration_timestamp.0;
    let secs = u64::try_from(ts.as_second()).ok()?;
    Some(
        UNIX_EPOCH
            + Duration::from_secs(secs)
            + Duration::from_nanos(ts.subsec_nanosecond().max(0) as u64),
    )
}

fn expired(tr: &TokenRequest, now: SystemTime) -> bool {
    expiry(tr).is_none_or(|exp| now > exp)
}

/// Upstream's rule: refresh once the token is older than 24h or within 20% of its lifetime
/// (less a random jitter, so that many pods do not refresh at once) of expiring.
pub(crate) fn requires_refresh(tr: &TokenRequest, now: SystemTime, jitter: Duration) -> bool {
    let Some(ttl) = tr.spec.expiration_seconds else {
        tracing::error!("expiration seconds was nil for token request");
        return false;
    };
    let Some(exp) = expiry(tr) else {
        return true;
    };
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
    let issued = exp.checked_sub(ttl).unwrap_or(UNIX_EPOCH);
    if now > issued + MAX_TTL.saturating_sub(jitter) {
        return true;
    }
    let margin = Duration::from_secs(ttl.as_secs() * 20 / 100) + jitter;
    now > exp.checked_sub(margin).unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{
        BoundObjectReference, TokenRequestSpec, TokenRequestStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn issued(ttl: i64, exp_secs: i64) -> TokenRequest {
        TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(ttl),
                ..Default::default()
            },
            status: Some(TokenRequestStatus {
                token: format!("tok-{exp_secs}"),
                expiration_timestamp: Time(
                    k8s_openapi::jiff::Timestamp::from_second(exp_secs).unwrap(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn refresh_at_80_percent_or_24_hours() {
        let base = 1_000_000u64;
        // One hour token issued at `base`.
        let t = issued(3600, (base + 3600) as i64);
        let none = Duration::ZERO;
        assert!(!requires_refresh(&t, at(base), none));
        assert!(!requires_refresh(&t, at(base + 2880), none));
        assert!(requires_refresh(&t, at(base + 2881), none));
        // Jitter brings the refresh forward.
        assert!(requires_refresh(
            &t,
            at(base + 2875),
            Duration::from_secs(10)
        ));
        // A one-year token is refreshed after a day, long before 80% of its life.
        let year = 365 * 24 * 3600;
        let long = issued(year, (base + year as u64) as i64);
        assert!(!requires_refresh(&long, at(base + 86_400), none));
        assert!(requires_refresh(&long, at(base + 86_401), none));
        // No TTL: never refreshed (upstream logs and keeps it).
        let mut no_ttl = t.clone();
        no_ttl.spec.expiration_seconds = None;
        assert!(!requires_refresh(&no_ttl, at(base + 4000), none));
    }

    struct Fake {
        calls: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
        now: u64,
    }

    #[async_trait]
    impl TokenFetcher for Fake {
        async fn request_token(
            &self,
            _namespace: &str,
            _sa: &str,
            request: &TokenRequest,
        ) -> Result<TokenRequest, String> {
            if self.fail.load(Ordering::SeqCst) {
                return Err("apiserver down".into());
            }
            let n = self.calls.fetch_add(1, Ordering::SeqCst) as u64;
            let ttl = request.spec.expiration_seconds.unwrap_or(3600);
            let mut t = issued(ttl, (self.now + n * 1000) as i64 + ttl);
            t.spec = request.spec.clone();
            Ok(t)
        }
    }

    fn request(pod_uid: &str, audience: &str) -> TokenRequest {
        TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.into()],
                expiration_seconds: Some(3600),
                bound_object_ref: Some(BoundObjectReference {
                    kind: Some("Pod".into()),
                    api_version: Some("v1".into()),
                    name: Some("p".into()),
                    uid: Some(pod_uid.into()),
                }),
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn manager_caches_refreshes_and_survives_failed_refresh() {
        let base = 2_000_000u64;
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
            fail: false.into(),
            now: base,
        });
        let m = TokenManager::new(fake.clone());
        let tr = request("uid-1", "api");
        let none = Duration::ZERO;
        let first = m.get_at("ns", "sa", &tr, at(base), none).await.unwrap();
        let again = m
            .get_at("ns", "sa", &tr, at(base + 60), none)
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);

        // Another audience is another token.
        m.get_at("ns", "sa", &request("uid-1", "vault"), at(base), none)
            .await
            .unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);

        // Past 80% of the TTL a refresh happens...
        let refreshed = m
            .get_at("ns", "sa", &tr, at(base + 3000), none)
            .await
            .unwrap();
        assert_ne!(refreshed, first);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3);

        // ...and if it fails, the cached token serves until it expires.
        fake.fail.store(true, Ordering::SeqCst);
        let exp = refreshed
            .status
            .as_ref()
            .unwrap()
            .expiration_timestamp
            .0
            .as_second() as u64;
        let stale = m
            .get_at("ns", "sa", &tr, at(exp - 100), none)
            .await
            .unwrap();
        assert_eq!(stale, refreshed);
        let err = m
            .get_at("ns", "sa", &tr, at(exp + 1), none)
            .await
            .unwrap_err();
        assert!(
            err.contains("expired and refresh failed: apiserver down"),
            "{err}"
        );
        let other = request("uid-2", "api");
        let err = m
            .get_at("ns", "sa", &other, at(exp + 1), none)
            .await
            .unwrap_err();
        assert_eq!(err, "failed to fetch token: apiserver down");

        fake.fail.store(false, Ordering::SeqCst);
        m.get_at("ns", "sa", &tr, at(base), none).await.unwrap();
        m.delete_service_account_token("uid-1");
        assert!(m.lock().is_empty());
    }
}
