//! The request path: authenticate, find what the request is about, and hand it on.

mod body;
mod nonresource;
mod resource;
mod watch;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use serde_json::Value;

pub use body::{full, Body};
pub use resource::{
    read_checked, read_object as resource_body, read_patch as patch_body, with_warnings,
    write_options,
};

use crate::authn::User;
use crate::encoding::{self, Format};
use crate::request::{self, Target};
use crate::server::App;
use crate::status::ApiError;

/// The largest request body accepted, as upstream's limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The query string as ordered pairs.
pub fn query_pairs(req: &Request<hyper::body::Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Answers one request.
pub async fn handle(
    app: Arc<App>,
    req: Request<hyper::body::Incoming>,
    user: Option<User>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = query_pairs(&req);
    let watch = matches!(query_value(&query, "watch"), Some("true") | Some("1"));
    let target = request::parse(req.method(), &path, watch);

    // Health and version are public, as upstream's system:public-info-viewer role allows.
    let public = matches!(&target, Target::NonResource(p) if nonresource::is_public(p));
    let Some(user) = user.or_else(|| public.then(User::anonymous)) else {
        return error_response(&ApiError::unauthorized(), Format::Json);
    };

    let result = match target {
        Target::NonResource(path) => nonresource::serve(&app, &req, &path, &query).await,
        Target::Discovery {
            legacy,
            group,
            version,
        } => crate::discovery::serve(&app, &req, legacy, group.as_deref(), version.as_deref()),
        Target::Resource(info) => resource::serve(app.clone(), req, info, query, user).await,
    };
    match result {
        Ok(resp) => resp,
        Err(e) => error_response(&e, Format::Json),
    }
}

/// A JSON or YAML response with the given status.
pub fn respond(status: StatusCode, value: &Value, format: Format) -> Response<Body> {
    bytes_response(
        status,
        Bytes::from(encoding::encode(value, format)),
        format.content_type(),
    )
}

pub fn bytes_response(status: StatusCode, bytes: Bytes, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("cache-control", "no-cache, private")
        .body(full(bytes))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

pub fn error_response(e: &ApiError, format: Format) -> Response<Body> {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(status, &e.to_status(), format)
}
