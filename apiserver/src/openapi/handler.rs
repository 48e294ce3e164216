//! Serving a built document: content negotiation, ETags and the immutable `?hash=` URLs of v3,
//! as kube-openapi's handlers do.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};

use super::Served;
use crate::http::{full, Body};

/// What a request accepts, among the encodings a document has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

/// The media types a document is offered in, as `(type, subtype)`, in preference order.
pub const V2_MEDIA: &[(&str, &str, Encoding)] = &[
    ("application", "json", Encoding::Json),
    (
        "application",
        "com.github.proto-openapi.spec.v2@v1.0+protobuf",
        Encoding::Protobuf,
    ),
    (
        "application",
        "com.github.proto-openapi.spec.v2.v1.0+protobuf",
        Encoding::Protobuf,
    ),
];
pub const V3_MEDIA: &[(&str, &str, Encoding)] = &[
    ("application", "json", Encoding::Json),
    (
        "application",
        "com.github.proto-openapi.spec.v3.v1.0+protobuf",
        Encoding::Protobuf,
    ),
    (
        "application",
        "com.github.proto-openapi.spec.v3@v1.0+protobuf",
        Encoding::Protobuf,
    ),
];

/// Picks the first encoding, in the client's order of preference, that is both acceptable and
/// `available`; None when nothing fits (406).
pub fn negotiate(
    accept: Option<&str>,
    offered: &[(&str, &str, Encoding)],
    available: impl Fn(Encoding) -> bool,
) -> Option<Encoding> {
    let accept = accept
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("*/*");
    let mut clauses: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (position, clause) in accept.split(',').enumerate() {
        let mut parts = clause.split(';');
        let media = parts.next().unwrap_or("").trim();
        let mut q = 1.0f32;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim() == "q" {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
        }
        if q <= 0.0 {
            continue;
        }
        let (type_, subtype) = media.split_once('/').unwrap_or((media, "*"));
        clauses.push((q, position, type_.trim(), subtype.trim()));
    }
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, type_, subtype) in clauses {
        for (t, s, encoding) in offered {
            let type_ok = type_ == "*" || type_.eq_ignore_ascii_case(t);
            let subtype_ok = subtype == "*" || subtype.eq_ignore_ascii_case(s);
            if type_ok && subtype_ok && available(*encoding) {
                return Some(*encoding);
            }
        }
    }
    None
}

/// 406 with an empty body, as upstream answers.
pub fn not_acceptable() -> Response<Body> {
    status_only(StatusCode::NOT_ACCEPTABLE)
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// Whether the request's `If-None-Match` names this ETag.
fn not_modified<B>(req: &Request<B>, etag: &str) -> bool {
    let quoted = quoted(etag);
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == quoted)
}

/// Serves `doc`: 304 when the client has it, the bytes otherwise. With `immutable`, the URL
/// names this exact content (`?hash=`), so caches may keep it for good.
pub fn respond<B>(
    req: &Request<B>,
    doc: &Served,
    content_type: &str,
    vary_accept: bool,
    immutable: bool,
) -> Response<Body> {
    let mut resp = if not_modified(req, &doc.etag) {
        status_only(StatusCode::NOT_MODIFIED)
    } else {
        let mut r = Response::new(full(doc.bytes.clone()));
        set(&mut r, header::CONTENT_TYPE, content_type);
        r
    };
    set(&mut resp, header::ETAG, &quoted(&doc.etag));
    set(
        &mut resp,
        header::LAST_MODIFIED,
        &httpdate::fmt_http_date(doc.last_modified),
    );
    if vary_accept {
        set(&mut resp, header::VARY, "Accept");
    }
    if immutable {
        set(
            &mut resp,
            header::CACHE_CONTROL,
            "public, immutable, max-age=31536000",
        );
        let expires = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
        set(
            &mut resp,
            header::EXPIRES,
            &httpdate::fmt_http_date(expires),
        );
    } else {
        set(&mut resp, header::CACHE_CONTROL, "no-cache, private");
    }
    resp
}

/// Sends the client to the URL of the current content when it asked for an older hash.
pub fn moved(location: &str) -> Response<Body> {
    let mut resp = status_only(StatusCode::MOVED_PERMANENTLY);
    set(&mut resp, header::LOCATION, location);
    set(&mut resp, header::CACHE_CONTROL, "no-cache, private");
    resp
}

fn set(resp: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_accept_header() {
        let json_only = |e: Encoding| e == Encoding::Json;
        let both = |_: Encoding| true;
        assert_eq!(negotiate(None, V2_MEDIA, json_only), Some(Encoding::Json));
        assert_eq!(
            negotiate(Some("*/*"), V2_MEDIA, json_only),
            Some(Encoding::Json)
        );
        assert_eq!(
            negotiate(Some("application/json"), V2_MEDIA, json_only),
            Some(Encoding::Json)
        );
        let proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
        assert_eq!(negotiate(Some(proto), V2_MEDIA, json_only), None);
        assert_eq!(
            negotiate(Some(proto), V2_MEDIA, both),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            negotiate(
                Some(&format!("{proto}, application/json;q=0.5")),
                V2_MEDIA,
                json_only
            ),
            Some(Encoding::Json)
        );
        assert_eq!(negotiate(Some("text/html"), V3_MEDIA, both), None);
        assert_eq!(
            negotiate(Some("application/*"), V3_MEDIA, both),
            Some(Encoding::Json)
        );
    }
}
