//! `/exec` and `/attach`: upstream's getExec and getAttach.

use http::StatusCode;

use super::{page_not_found, proxy, query_values, segments, stream_options, Target};
use crate::server::{text, Body, Ctx, Req};

pub(super) async fn exec(ctx: &Ctx, req: Req) -> http::Response<Body> {
    let Some(target) = Target::with_container(segments(&req, "exec")) else {
        return page_not_found();
    };
    let opts = match stream_options(&req) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let Some(pod) = ctx.node.pod(&target.namespace, &target.pod) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let command = query_values(&req, "command");
    match ctx
        .node
        .exec_url(
            &pod,
            target.uid.as_deref(),
            &target.container,
            command,
            opts,
        )
        .await
    {
        Ok(url) => proxy::proxy_stream(req, &url).await,
        Err(e) => e.response(),
    }
}

pub(super) async fn attach(ctx: &Ctx, req: Req) -> http::Response<Body> {
    let Some(target) = Target::with_container(segments(&req, "attach")) else {
        return page_not_found();
    };
    let opts = match stream_options(&req) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let Some(pod) = ctx.node.pod(&target.namespace, &target.pod) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    match ctx
        .node
        .attach_url(&pod, target.uid.as_deref(), &target.container, opts)
        .await
    {
        Ok(url) => proxy::proxy_stream(req, &url).await,
        Err(e) => e.response(),
    }
}
