//! Watches: a stream of JSON events, one per line, served from the watch cache.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{body, Body};
use crate::encoding::{Negotiated, Shape};
use crate::registry::{strategy_of, ListQuery};
use crate::resources::Resource;
use crate::server::App;
use crate::status::{ApiError, ApiResult};
use crate::watchcache::{CachedEvent, CachedObject, EventType};

/// Upstream closes a watch after a random time between its minimum request timeout and twice
/// that, so that clients spread their reconnections.
const MIN_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

struct Watcher {
    app: Arc<App>,
    res: Arc<Resource>,
    query: ListQuery,
    prefix: String,
    shape: Shape,
    include_object: String,
    converting: bool,
}

pub async fn serve(
    app: Arc<App>,
    res: Arc<Resource>,
    namespace: Option<&str>,
    query: &[(String, String)],
    n: Negotiated,
) -> ApiResult<Response<Body>> {
    let strategy = strategy_of(&res);
    let q = ListQuery::parse(query, &res, strategy)?;
    let prefix = res
        .key_prefix(if res.namespaced { namespace } else { None })
        .ok_or_else(ApiError::method_not_allowed)?;
    let cache_prefix = res
        .key_prefix(None)
        .ok_or_else(ApiError::method_not_allowed)?;
    let cache = app
        .registry
        .cache
        .cache(&cache_prefix)
        .ok_or_else(|| ApiError::internal("no watch cache"))?;
    let timeout = match q.timeout_seconds {
        Some(s) => Duration::from_secs(s),
        None => MIN_TIMEOUT + Duration::from_secs(rand::random::<u64>() % MIN_TIMEOUT.as_secs()),
    };

    let rv = q.revision()?;
    // Without a resourceVersion (or from "0") a watch starts with the current state.
    let initial = matches!(
        (rv, q.send_initial_events),
        (_, Some(true)) | (None | Some(0), None)
    );
    if q.send_initial_events.is_some() {
        if q.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[crate::status::FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )],
            ));
        }
        if !q.allow_bookmarks {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[crate::status::FieldError::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                )],
            ));
        }
    }
    let from = match rv {
        Some(r) if r > 0 => {
            app.registry.cache.wait_for(r).await?;
            r
        }
        _ => {
            if rv.is_none() && initial {
                app.registry.cache.sync().await?;
            }
            app.registry.cache.revision()
        }
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let watcher = Watcher {
        converting: crate::convert::storage_version(&res) != res.api_version(),
        app: app.clone(),
        res: res.clone(),
        query: q,
        prefix,
        shape: n.shape,
        include_object: super::query_value(query, "includeObject")
            .unwrap_or("Metadata")
            .to_string(),
    };
    match cache.subscribe(from, initial) {
        Err(oldest) => {
            // Upstream answers a watch from a forgotten revision with an error event.
            let e = ApiError::too_old(from, oldest);
            let line = event_line("ERROR", &e.to_status());
            let _ = tx.try_send(line);
        }
        Ok(sub) => {
            let send_initial_end = watcher.query.send_initial_events == Some(true);
            tokio::spawn(async move { watcher.run(sub, tx, timeout, send_initial_end).await });
        }
    }
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("cache-control", "no-cache, private")
        .body(body::streaming(ReceiverStream::new(rx)))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(resp)
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut s = serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

impl Watcher {
    async fn run(
        self,
        mut sub: crate::watchcache::Subscription,
        tx: mpsc::Sender<Bytes>,
        timeout: Duration,
        send_initial_end: bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_rv = sub.after;
        for ev in std::mem::take(&mut sub.replay) {
            if let Some(line) = self.render(&ev) {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
        if send_initial_end {
            let line = self.bookmark(last_rv, true);
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let mut bookmarks =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                ev = sub.live.recv() => match ev {
                    Ok(ev) => {
                        if ev.revision <= sub.after {
                            continue;
                        }
                        last_rv = ev.revision;
                        if let Some(line) = self.render(&ev) {
                            if tx.send(line).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Fell too far behind: end the watch; the client resumes from its last event.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = bookmarks.tick(), if self.query.allow_bookmarks => {
                    last_rv = last_rv.max(self.app.registry.cache.revision());
                    if tx.send(self.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.query.allow_bookmarks {
                        let rv = last_rv.max(self.app.registry.cache.revision());
                        let _ = tx.send(self.bookmark(rv, false)).await;
                    }
                    return;
                }
                _ = tx.closed() => return,
            }
        }
    }

    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let obj = json!({
            "kind": self.res.kind,
            "apiVersion": self.res.api_version(),
            "metadata": metadata,
        });
        event_line("BOOKMARK", &obj)
    }

    fn matches(&self, obj: &CachedObject) -> bool {
        obj.key.starts_with(&self.prefix)
            && self
                .query
                .matches(&obj.value, &self.res, strategy_of(&self.res))
    }

    /// The line for one event, or None when the watcher's selectors filter it out. A change
    /// that moves an object into or out of the selection is an addition or a deletion.
    fn render(&self, ev: &CachedEvent) -> Option<Bytes> {
        let now = self.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
        let (kind, obj): (EventType, &CachedObject) = match ev.kind {
            EventType::Added if now => (EventType::Added, &ev.object),
            EventType::Modified if now && before => (EventType::Modified, &ev.object),
            EventType::Modified if now => (EventType::Added, &ev.object),
            EventType::Modified if before => {
                let prev = ev.prev.as_ref()?;
                let shown = CachedObject::new(prev.key.clone(), ev.revision, prev.value.clone());
                return Some(self.line(EventType::Deleted, &shown));
            }
            EventType::Deleted if now || before => (EventType::Deleted, &ev.object),
            _ => return None,
        };
        Some(self.line(kind, obj))
    }

    fn line(&self, kind: EventType, obj: &CachedObject) -> Bytes {
        match self.shape {
            Shape::Object if !self.converting => {
                let mut out = Vec::with_capacity(obj.json().len() + 32);
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(kind.as_str().as_bytes());
                out.extend_from_slice(b"\",\"object\":");
                out.extend_from_slice(obj.json());
                out.extend_from_slice(b"}\n");
                Bytes::from(out)
            }
            Shape::Object => {
                let v = self.app.registry.convert_out(&self.res, obj.value.clone());
                event_line(kind.as_str(), &v)
            }
            Shape::Metadata => {
                event_line(kind.as_str(), &crate::table::partial_metadata(&obj.value))
            }
            Shape::Table => {
                let v = self.app.registry.convert_out(&self.res, obj.value.clone());
                let table = crate::table::to_table(
                    &self.res,
                    &[&v],
                    &json!({"resourceVersion": obj.revision.to_string()}),
                    &self.include_object,
                    true,
                );
                event_line(kind.as_str(), &table)
            }
        }
    }
}
