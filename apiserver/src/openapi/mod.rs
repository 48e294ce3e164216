//! OpenAPI v2 and v3 documents, generated from the k8s-openapi types and the resource table.
//!
//! `schemas` derives the definitions (from `catalog`'s `k8s-openapi` types, with upstream's
//! extensions), `paths` the operations (from the resource table, with `parameters`); `v2` and
//! `v3` render both into documents and `handler` serves them. Everything is built on the first
//! request and kept, serialised and hashed, until the table changes or `invalidate` is called.

mod catalog;
mod handler;
mod parameters;
mod paths;
mod protobuf;
mod schemas;
mod v2;
mod v3;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, Request, Response};
use serde_json::{json, Value};

use crate::http::Body;
use crate::resources::{Resource, ResourceTable};
use crate::server::App;
use crate::status::{ApiError, ApiResult};
use handler::Encoding;

const INFO_TITLE: &str = "Kubernetes";
const INFO_VERSION: &str = "v1.33.0";
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn security_scheme() -> Value {
    json!({
        "type": "apiKey",
        "name": "authorization",
        "in": "header",
        "description": "Bearer token authentication",
    })
}

/// One serialised document.
pub struct Served {
    pub bytes: Bytes,
    /// Upper-case hex SHA-512 of `bytes`, as upstream's ETags and v3 `hash`es are.
    pub etag: String,
    pub last_modified: SystemTime,
}

impl Served {
    fn new(value: &mut Value) -> Self {
        sort_keys(value);
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA512, &bytes);
        let etag = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Served {
            bytes: Bytes::from(bytes),
            etag,
            last_modified: SystemTime::now(),
        }
    }
}

/// Object keys in lexical order, as upstream (Go) writes them, so the bytes and their hash
/// depend only on the content.
fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// The v3 documents and their index.
pub struct V3 {
    pub index: Served,
    pub documents: HashMap<String, Served>,
}

/// Everything derived from one state of the resource table.
struct Built {
    generation: u64,
    fingerprint: u64,
    definitions: schemas::Definitions,
    routes: Vec<paths::Route>,
    v2: OnceLock<V2>,
    v3: OnceLock<V3>,
}

/// The swagger document, as JSON and as protobuf; both carry the ETag of the JSON, as
/// upstream's do.
pub struct V2 {
    pub json: Served,
    pub protobuf: Served,
}

impl Built {
    fn new(generation: u64, fingerprint: u64, rows: &[Arc<Resource>]) -> Self {
        let start = Instant::now();
        let mut definitions = schemas::build(rows);
        for row in rows {
            // Rows without a typed schema (custom resources) still get a definition, so that
            // no path refers to nothing; their own schema replaces it when they bring one.
            if !definitions.contains_key(&row.definition) {
                definitions.insert(row.definition.clone(), open_definition(row));
            }
        }
        let routes = paths::build(rows);
        tracing::debug!(
            "openapi: {} definitions, {} paths in {:?}",
            definitions.len(),
            routes.len(),
            start.elapsed()
        );
        Built {
            generation,
            fingerprint,
            definitions,
            routes,
            v2: OnceLock::new(),
            v3: OnceLock::new(),
        }
    }

    fn v2(&self) -> &V2 {
        self.v2.get_or_init(|| {
            let start = Instant::now();
            let mut doc = v2::document(&self.definitions, &self.routes);
            let json = Served::new(&mut doc);
            let protobuf = Served {
                bytes: Bytes::from(protobuf::document(&doc)),
                etag: json.etag.clone(),
                last_modified: json.last_modified,
            };
            tracing::debug!(
                "openapi v2: {} bytes of JSON, {} of protobuf in {:?}",
                json.bytes.len(),
                protobuf.bytes.len(),
                start.elapsed()
            );
            V2 { json, protobuf }
        })
    }

    fn v3(&self) -> &V3 {
        self.v3.get_or_init(|| {
            let start = Instant::now();
            let schemas = v3::convert_definitions(&self.definitions);
            let documents: HashMap<String, Served> = v3::documents(&schemas, &self.routes)
                .into_iter()
                .map(|(key, mut doc)| (key, Served::new(&mut doc)))
                .collect();
            let hashes: BTreeMap<&String, &String> =
                documents.iter().map(|(k, d)| (k, &d.etag)).collect();
            let index = Served::new(&mut v3::index(hashes));
            tracing::debug!(
                "openapi v3: {} documents, {} bytes in {:?}",
                documents.len(),
                documents.values().map(|d| d.bytes.len()).sum::<usize>(),
                start.elapsed()
            );
            V3 { index, documents }
        })
    }
}

fn open_definition(row: &Resource) -> Value {
    json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-group-version-kind": [{ "group": row.group, "kind": row.kind, "version": row.version }],
    })
}

/// What the table looks like, cheaply: rows added or removed change it.
fn fingerprint(rows: &[Arc<Resource>]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for row in rows {
        (
            &row.group,
            &row.version,
            &row.plural,
            &row.kind,
            &row.definition,
            row.namespaced,
        )
            .hash(&mut hasher);
        row.verbs.hash(&mut hasher);
        for sub in &row.subresources {
            (sub.name, sub.kind, sub.verbs).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// The generated documents, built on first use.
pub struct Documents {
    generation: AtomicU64,
    built: Mutex<Option<Arc<Built>>>,
}

impl Documents {
    pub fn new(_table: &ResourceTable) -> Self {
        Documents {
            generation: AtomicU64::new(0),
            built: Mutex::new(None),
        }
    }

    /// Drops the built documents; the next request rebuilds them. Rows added to or removed
    /// from the table are noticed without this; a schema that changes under an unchanged row
    /// (a custom resource's new version of its schema) is not.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self, table: &ResourceTable) -> Arc<Built> {
        let rows = table.all();
        let generation = self.generation.load(Ordering::SeqCst);
        let fingerprint = fingerprint(&rows);
        // A poisoned lock only means a build panicked; the slot is still usable.
        let mut slot = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(built) = slot.as_ref() {
            if built.generation == generation && built.fingerprint == fingerprint {
                return built.clone();
            }
        }
        let built = Arc::new(Built::new(generation, fingerprint, &rows));
        *slot = Some(built.clone());
        built
    }
}

pub fn serve(
    app: &App,
    req: &Request<hyper::body::Incoming>,
    path: &str,
) -> ApiResult<Response<Body>> {
    serve_from(&app.openapi, &app.table, req, path).ok_or_else(ApiError::path_not_found)
}

/// The response for an OpenAPI path; None when there is no such document.
fn serve_from<B>(
    docs: &Documents,
    table: &ResourceTable,
    req: &Request<B>,
    path: &str,
) -> Option<Response<Body>> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let built = docs.current(table);
    if path == "/openapi/v2" {
        let v2 = built.v2();
        return Some(
            match handler::negotiate(accept, handler::V2_MEDIA, |_| true) {
                Some(Encoding::Json) => {
                    handler::respond(req, &v2.json, "application/json", true, false)
                }
                Some(Encoding::Protobuf) => {
                    handler::respond(req, &v2.protobuf, V2_PROTOBUF, true, false)
                }
                None => handler::not_acceptable(),
            },
        );
    }
    if path == "/openapi/v3" {
        return Some(handler::respond(
            req,
            &built.v3().index,
            "application/json",
            false,
            false,
        ));
    }
    let key = path.strip_prefix("/openapi/v3/")?;
    let v3 = built.v3();
    let doc = v3.documents.get(key)?;
    // The protobuf form of v3 is not generated: clients read v3 as JSON.
    if handler::negotiate(accept, handler::V3_MEDIA, |e| e == Encoding::Json).is_none() {
        return Some(handler::not_acceptable());
    }
    let hash = req
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "hash"))
        .map(|(_, v)| v.into_owned())
        .filter(|h| !h.is_empty());
    Some(match hash {
        Some(h) if h != doc.etag => handler::moved(&v3::server_relative_url(key, &doc.etag)),
        Some(_) => handler::respond(req, doc, "application/json", true, true),
        None => handler::respond(req, doc, "application/json", true, false),
    })
}

#[cfg(test)]
mod tests;
