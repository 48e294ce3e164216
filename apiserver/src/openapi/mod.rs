//! OpenAPI v2 and v3 documents, generated from the k8s-openapi types and the resource table.

use http::{Request, Response};

use crate::http::Body;
use crate::resources::ResourceTable;
use crate::server::App;
use crate::status::{ApiError, ApiResult};

/// The generated documents, built once.
pub struct Documents {}

impl Documents {
    pub fn new(_table: &ResourceTable) -> Self {
        Documents {}
    }
}

pub fn serve(_app: &App, _req: &Request<hyper::body::Incoming>, _path: &str) -> ApiResult<Response<Body>> {
    Err(ApiError::path_not_found())
}
