//! `/run`: upstream's getRun, a command run to completion whose output is the answer.

use http::{header, StatusCode};

use super::{page_not_found, query_value, segments, Target};
use crate::server::{full, text, Body, Ctx, Req};

pub(super) async fn serve(ctx: &Ctx, req: Req) -> http::Response<Body> {
    let Some(target) = Target::with_container(segments(&req, "run")) else {
        return page_not_found();
    };
    let Some(pod) = ctx.node.pod(&target.namespace, &target.pod) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    // For legacy reasons `run` takes one space-separated `cmd`, not exec's `command`s.
    let cmd: Vec<String> = query_value(&req, "cmd")
        .split(' ')
        .map(str::to_string)
        .collect();
    match ctx
        .node
        .run_in_container(&pod, target.uid.as_deref(), &target.container, cmd)
        .await
    {
        // As upstream's writeJSONResponse: the output, labelled JSON whatever it is.
        Ok(output) if output.is_empty() => http::Response::builder()
            .status(StatusCode::OK)
            .body(full(""))
            .unwrap_or_else(|_| http::Response::new(full(""))),
        Ok(output) => http::Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(output))
            .unwrap_or_else(|_| http::Response::new(full(""))),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    }
}
