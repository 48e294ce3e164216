//! The generic registry: reads, lists and watches of any resource in the table, on JSON
//! objects, served from the watch cache where upstream serves them from its cacher.

pub mod list;
mod write;

use std::sync::Arc;
use std::time::Duration;

use ferrokube_storage::{ListOptions, Store};
use serde_json::Value;

pub use list::{ContinueToken, ListQuery};
pub use write::{DeleteOutcome, PatchKind, WriteOptions};

use crate::alloc::Allocators;
use crate::meta;
use crate::resources::{Resource, ResourceTable};
use crate::status::{ApiError, ApiResult, Subject};
use crate::strategy::{self, Strategy};
use crate::watchcache::{CachedObject, EventType, WatchCache};

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub table: Arc<ResourceTable>,
    pub cache: Arc<WatchCache>,
    pub alloc: Allocators,
    /// The admission plugins turned on.
    pub admission: crate::admission::Plugins,
}

/// One page of a list.
pub struct ListPage {
    pub items: Vec<Arc<CachedObject>>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

pub fn not_found(res: &Resource, name: &str) -> ApiError {
    ApiError::not_found(Subject {
        group: &res.group,
        resource: &res.plural,
        name,
    })
}

pub fn strategy_of(res: &Resource) -> &'static dyn Strategy {
    strategy::for_kind(&res.group, &res.kind)
}

/// Namespace for storage keys: only namespaced resources have one.
fn scope<'a>(res: &Resource, namespace: Option<&'a str>) -> Option<&'a str> {
    if res.namespaced {
        namespace
    } else {
        None
    }
}

impl Registry {
    fn key(&self, res: &Resource, namespace: Option<&str>, name: &str) -> ApiResult<String> {
        res.key(scope(res, namespace), name)
            .ok_or_else(ApiError::method_not_allowed)
    }

    fn cache_of(&self, res: &Resource) -> ApiResult<Arc<crate::watchcache::Cache>> {
        let prefix = res
            .key_prefix(None)
            .ok_or_else(ApiError::method_not_allowed)?;
        self.cache
            .cache(&prefix)
            .ok_or_else(|| ApiError::internal(format!("no watch cache for {prefix}")))
    }

    /// Reads one object; `resource_version` "0" may be served from the cache.
    pub async fn get(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        resource_version: Option<&str>,
    ) -> ApiResult<Value> {
        let key = self.key(res, namespace, name)?;
        let obj = match resource_version {
            Some(rv) if !rv.is_empty() => {
                let wanted = list::parse_resource_version(rv)?;
                if wanted > 0 {
                    self.cache.wait_for(wanted).await?;
                }
                self.cache_of(res)?.get(&key).map(|o| o.value.clone())
            }
            _ => {
                let kv = self.store.get(&key).await?;
                kv.and_then(|kv| {
                    let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
                    meta::set_resource_version(&mut v, kv.mod_revision);
                    Some(v)
                })
            }
        };
        let obj = obj.ok_or_else(|| not_found(res, name))?;
        Ok(self.convert_out(res, obj))
    }

    /// Reads one object that some other component is about to create, waiting for it up to
    /// `within`; NotFound if it has not appeared by then.
    pub async fn wait_for_object(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        within: Duration,
    ) -> ApiResult<Value> {
        let key = self.key(res, namespace, name)?;
        let cache = self.cache_of(res)?;
        // Subscribed before the store is read, so a creation landing in between still arrives
        // as an event. Only live events matter: whatever a replay holds was applied before the
        // read, and the store already answered for it.
        let mut live = match cache.subscribe(self.cache.revision(), false) {
            Ok(sub) => sub.live,
            // The cache's history moved past that revision meanwhile; a full subscription
            // cannot fail that way.
            Err(_) => {
                cache
                    .subscribe(0, true)
                    .map_err(|_| ApiError::internal("watch cache unavailable"))?
                    .live
            }
        };
        match self.get(res, namespace, name, None).await {
            Err(e) if e.code == 404 => {}
            other => return other,
        }
        let appeared = async {
            loop {
                match live.recv().await {
                    Ok(ev) if ev.object.key == key && ev.kind != EventType::Deleted => {
                        return Ok(self.convert_out(res, ev.object.value.clone()));
                    }
                    Ok(_) => {}
                    // Events were dropped, maybe the one awaited: the store knows.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        match self.get(res, namespace, name, None).await {
                            Err(e) if e.code == 404 => {}
                            other => return other,
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(ApiError::internal("watch cache closed"));
                    }
                }
            }
        };
        tokio::time::timeout(within, appeared)
            .await
            .unwrap_or_else(|_| Err(not_found(res, name)))
    }

    /// Lists objects, from the cache unless the request needs an exact snapshot.
    pub async fn list(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        q: &ListQuery,
    ) -> ApiResult<ListPage> {
        let strategy = strategy_of(res);
        let prefix = res
            .key_prefix(scope(res, namespace))
            .ok_or_else(ApiError::method_not_allowed)?;
        let exact = q.resource_version_match.as_deref() == Some("Exact");
        let paged = q.limit > 0 || q.continue_token.is_some();
        let rv = q.revision()?;

        let needs_snapshot = exact || (paged && rv != Some(0));
        if !needs_snapshot {
            // From the cache: "0" is any state, none is the latest (wait for the cache to catch
            // up with the store), a number is at least that state.
            let revision = match rv {
                Some(0) => self.cache.revision(),
                Some(r) => {
                    self.cache.wait_for(r).await?;
                    self.cache.revision()
                }
                None => self.cache.sync().await?,
            };
            let items = self
                .cache_of(res)?
                .list(&prefix)
                .into_iter()
                .filter(|o| q.matches(&o.value, res, strategy))
                .collect();
            return Ok(ListPage {
                items,
                revision,
                continue_token: None,
                remaining: None,
            });
        }
        self.list_from_store(res, &prefix, q, strategy).await
    }

    /// A paginated or exact list read straight from the store at one revision.
    async fn list_from_store(
        &self,
        res: &Resource,
        prefix: &str,
        q: &ListQuery,
        strategy: &dyn Strategy,
    ) -> ApiResult<ListPage> {
        let (mut revision, mut start) = match &q.continue_token {
            Some(token) => {
                let t = ContinueToken::decode(token)?;
                let rev = if t.revision == -1 {
                    None
                } else {
                    Some(t.revision)
                };
                (rev, Some(format!("{prefix}{}", t.start)))
            }
            None => (q.revision()?.filter(|r| *r > 0), None),
        };
        if q.continue_token.is_none() && q.resource_version_match.as_deref() != Some("Exact") {
            // NotOlderThan (or none) with a limit: the latest state is never older.
            revision = None;
        }
        let mut items = Vec::new();
        let want = q.limit;
        let mut snapshot;
        let mut remaining;
        loop {
            let ask = if want == 0 { 0 } else { want + 1 - items.len() };
            let page = self
                .store
                .list(
                    prefix,
                    ListOptions {
                        start_after: start.clone(),
                        limit: ask,
                        revision,
                    },
                )
                .await
                .map_err(|e| match e {
                    ferrokube_storage::Error::Compacted { .. } if q.continue_token.is_some() => {
                        self.inconsistent_continue(start.as_deref(), prefix)
                    }
                    other => ApiError::from(other),
                })?;
            snapshot = page.revision;
            revision = Some(page.revision);
            remaining = page.remaining;
            for kv in &page.items {
                start = Some(kv.key.clone());
                if let Some(obj) = decode(kv) {
                    if q.matches(&obj.value, res, strategy) {
                        items.push(Arc::new(obj));
                    }
                }
            }
            // With a selector a page may match fewer items than asked for: read on.
            if want == 0 || items.len() > want || !page.more() {
                break;
            }
        }
        let mut continue_token = None;
        let mut remaining_count = None;
        if want > 0 && items.len() > want {
            items.truncate(want);
            let last = &items[want - 1].key;
            continue_token = Some(
                ContinueToken {
                    revision: snapshot,
                    start: format!("{}\u{0}", &last[prefix.len()..]),
                }
                .encode(),
            );
            if !q.has_selectors() {
                remaining_count = Some(remaining + 1);
            }
        }
        Ok(ListPage {
            items,
            revision: snapshot,
            continue_token,
            remaining: remaining_count,
        })
    }

    /// The 410 upstream answers when a continue token's snapshot was compacted, carrying a
    /// token that continues from the same key at the latest revision.
    fn inconsistent_continue(&self, start: Option<&str>, prefix: &str) -> ApiError {
        let rest = start.and_then(|s| s.strip_prefix(prefix)).unwrap_or("");
        let token = ContinueToken {
            revision: -1,
            start: rest.to_string(),
        }
        .encode();
        let mut e = ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.");
        e.continue_token = Some(token);
        e
    }

    /// Converts an object read from storage into the version the request addressed.
    pub fn convert_out(&self, res: &Resource, obj: Value) -> Value {
        crate::convert::to_version(obj, res)
    }
}

fn decode(kv: &ferrokube_storage::KeyValue) -> Option<CachedObject> {
    let value: Value = serde_json::from_slice(&kv.value).ok()?;
    Some(CachedObject::new(kv.key.clone(), kv.mod_revision, value))
}
