//! Response bodies: whole buffers, or streams for watches.

use std::convert::Infallible;

use bytes::Bytes;
use futures::Stream;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A body that sends each item of the stream as it comes (a chunk each, over HTTP/1.1).
pub fn streaming<S>(stream: S) -> Body
where
    S: Stream<Item = Bytes> + Send + Sync + 'static,
{
    use futures::StreamExt;
    BodyExt::boxed(StreamBody::new(
        stream.map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ))
}

/// Reads a request body, refusing more than `limit` bytes.
pub async fn read_limited(
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, crate::status::ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(crate::status::ApiError::too_large())
            } else {
                Err(crate::status::ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )))
            }
        }
    }
}
