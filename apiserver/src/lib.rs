//! ferrokube's kube-apiserver.
//!
//! A request goes `http` (find the target) → `authn` → registry (`registry`, with per-kind
//! `strategy`, `validation` and `admission`) → `storage`, with the `watchcache` serving reads
//! and watches. The `resources` table says what is served.

pub mod admission;
pub mod alloc;
pub mod authn;
pub mod bootstrap;
pub mod convert;
pub mod discovery;
pub mod encoding;
pub mod eventttl;
pub mod eviction;
pub mod fieldvalidation;
pub mod graceful;
pub mod http;
pub mod meta;
pub mod openapi;
pub mod pki;
pub mod proxy;
pub mod registry;
pub mod request;
pub mod resources;
pub mod server;
pub mod serviceaccount;
pub mod status;
pub mod strategy;
pub mod subresources;
pub mod table;
pub mod typed;
pub mod validation;
pub mod virtual_resources;
pub mod watchcache;
