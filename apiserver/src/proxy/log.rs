//! `pods/log`: the log of a container, streamed from the kubelet of the pod's node, as
//! upstream's LogREST (PodLogOptions from the query, its validation, LogLocation, and the
//! kubelet's errors turned into Statuses).

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::client;
use super::forward::relay;
use crate::http::Body;
use crate::meta;
use crate::server::App;
use crate::status::{ApiError, ApiResult, FieldError};

/// The most of a kubelet's error body that goes into the Status.
const MAX_ERROR_BODY: usize = 50_000;

/// `PodLogOptions` as decoded from the query.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub insecure_skip_tls_verify_backend: bool,
    pub stream: Option<String>,
}

fn first<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Query booleans as upstream decodes them: `0`/`false` are false, any other value true.
pub(crate) fn query_bool(query: &[(String, String)], key: &str) -> bool {
    first(query, key).is_some_and(|v| !(v == "0" || v.eq_ignore_ascii_case("false")))
}

fn query_int(query: &[(String, String)], key: &str) -> ApiResult<Option<i64>> {
    match first(query, key) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|e: std::num::ParseIntError| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: {why}"))
        }),
    }
}

impl LogOptions {
    pub(crate) fn parse(query: &[(String, String)]) -> ApiResult<LogOptions> {
        let since_time = match first(query, "sinceTime") {
            None | Some("") => None,
            Some(v) => Some(chrono::DateTime::parse_from_rfc3339(v).map_err(|_| {
                ApiError::bad_request(format!(
                    "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {v:?} as \"2006\""
                ))
            })?),
        };
        Ok(LogOptions {
            container: first(query, "container").unwrap_or("").to_string(),
            follow: query_bool(query, "follow"),
            previous: query_bool(query, "previous"),
            timestamps: query_bool(query, "timestamps"),
            since_seconds: query_int(query, "sinceSeconds")?,
            since_time,
            tail_lines: query_int(query, "tailLines")?,
            limit_bytes: query_int(query, "limitBytes")?,
            insecure_skip_tls_verify_backend: query_bool(query, "insecureSkipTLSVerifyBackend"),
            stream: first(query, "stream").map(str::to_string),
        })
    }

    /// Upstream's ValidatePodLogOptions, with stream selection (an alpha feature) off.
    pub(crate) fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(n) = self.tail_lines.filter(|n| *n < 0) {
            errs.push(FieldError::invalid(
                "tailLines",
                n,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(n) = self.limit_bytes.filter(|n| *n < 1) {
            errs.push(FieldError::invalid(
                "limitBytes",
                n,
                "must be greater than 0",
            ));
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => errs.push(FieldError::forbidden(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(n), None) if n < 1 => errs.push(FieldError::invalid(
                "sinceSeconds",
                n,
                "must be greater than 0",
            )),
            _ => {}
        }
        if self.stream.is_some() {
            errs.push(FieldError::forbidden("stream", "may not be specified"));
        }
        errs
    }

    /// The kubelet's query, keys sorted as Go's `url.Values.Encode` writes them.
    fn kubelet_query(&self) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        if self.follow {
            params.push(("follow", "true".into()));
        }
        if self.previous {
            params.push(("previous", "true".into()));
        }
        if self.timestamps {
            params.push(("timestamps", "true".into()));
        }
        if let Some(n) = self.since_seconds {
            params.push(("sinceSeconds", n.to_string()));
        }
        if let Some(t) = &self.since_time {
            params.push((
                "sinceTime",
                t.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            ));
        }
        if let Some(n) = self.tail_lines {
            params.push(("tailLines", n.to_string()));
        }
        if let Some(n) = self.limit_bytes {
            params.push(("limitBytes", n.to_string()));
        }
        params.sort_by(|a, b| a.0.cmp(b.0));
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            s.append_pair(k, &v);
        }
        s.finish()
    }
}

/// The names of a pod's containers in upstream's visiting order: init, regular, ephemeral.
fn container_names(pod: &Value) -> Vec<String> {
    [
        "spec.initContainers",
        "spec.containers",
        "spec.ephemeralContainers",
    ]
    .iter()
    .filter_map(|p| meta::path(pod, p).and_then(Value::as_array))
    .flatten()
    .filter_map(|c| c["name"].as_str().map(str::to_string))
    .collect()
}

/// Upstream's validateContainer: the named container must exist; without a name, the only
/// regular container is meant.
pub(crate) fn choose_container(pod: &Value, wanted: &str) -> ApiResult<String> {
    let name = meta::name(pod);
    if wanted.is_empty() {
        let regular: Vec<&Value> = meta::path(pod, "spec.containers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        return match regular.as_slice() {
            [one] => Ok(one["name"].as_str().unwrap_or("").to_string()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                container_names(pod).join(" ")
            ))),
        };
    }
    if container_names(pod).iter().any(|c| c == wanted) {
        Ok(wanted.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "container {wanted} is not valid for pod {name}"
        )))
    }
}

/// A kubelet's error answer as the Status upstream's GenericHttpResponseChecker makes of it.
pub(crate) fn kubelet_error(code: u16, body: &str, resource: &str, name: &str) -> ApiError {
    let generic = |reason: &'static str, message: String| {
        let mut e = ApiError::new(code, reason, format!("{message} ( {resource} {name})"));
        let mut details = json!({"name": name, "kind": resource});
        if !body.is_empty() {
            details["causes"] = json!([{"reason": "UnexpectedServerResponse", "message": body}]);
        }
        e.details = Some(Box::new(details));
        e
    };
    match code {
        500 => {
            let mut e = ApiError::new(500, "InternalError", format!("Internal error occurred: {body}"));
            e.details = Some(Box::new(json!({"causes": [{"message": body}]})));
            e
        }
        400 => ApiError::bad_request(body.to_string()),
        404 => generic("NotFound", "the server could not find the requested resource".into()),
        401 => generic(
            "Unauthorized",
            "the server has asked for the client to provide credentials".into(),
        ),
        403 => generic("Forbidden", body.to_string()),
        405 => generic(
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
        ),
        406 => generic("NotAcceptable", body.to_string()),
        409 => generic("Conflict", "the server reported a conflict".into()),
        415 => generic("UnsupportedMediaType", body.to_string()),
        422 => generic(
            "Invalid",
            "the server rejected our request due to an error in our request".into(),
        ),
        429 => generic(
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later"
                .into(),
        ),
        503 => generic(
            "ServiceUnavailable",
            "the server is currently unable to handle the request".into(),
        ),
        504 => generic(
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request".into(),
        ),
        c if c >= 500 => generic(
            "InternalError",
            format!("an error on the server ({body:?}) has prevented the request from succeeding"),
        ),
        c => generic(
            "",
            format!("the server responded with the status code {c} but did not return more information"),
        ),
    }
}

pub(crate) async fn serve(
    app: &App,
    namespace: Option<&str>,
    name: &str,
    query: &[(String, String)],
) -> ApiResult<Response<Body>> {
    let opts = LogOptions::parse(query)?;
    let errs = opts.validate();
    if !errs.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", name, &errs));
    }
    let pods = app
        .table
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = app.registry.get(&pods, namespace, name, None).await?;
    let container = choose_container(&pod, &opts.container)?;
    let node = meta::path(&pod, "spec.nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        // Not scheduled yet: no log, and no content.
        return Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(crate::http::full(Bytes::new()))
            .unwrap_or_else(|_| Response::new(crate::http::full(Bytes::new()))));
    }
    let target = super::locate::kubelet(app, node, opts.insecure_skip_tls_verify_backend).await?;
    let enc = |s: &str| super::segment(s);
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        enc(meta::namespace(&pod)),
        enc(meta::name(&pod)),
        enc(&container)
    );
    let q = opts.kubelet_query();
    if !q.is_empty() {
        path.push('?');
        path.push_str(&q);
    }
    let req = Request::builder()
        .method("GET")
        .uri(&path)
        .header(header::HOST, target.authority())
        .header(header::USER_AGENT, "kube-apiserver")
        .body(client::empty_body())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let failed = |e: String| ApiError::new(500, "", format!("Get {:?}: {e}", target.url(&path)));
    let mut conn = client::connect::<client::OutBody>(&target)
        .await
        .map_err(failed)?;
    let resp = conn
        .send_request(req)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let code = resp.status().as_u16();
    if !(200..=206).contains(&code) {
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(kubelet_error(
            code,
            &String::from_utf8_lossy(&body),
            "pods/log",
            name,
        ));
    }
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(relay(resp.into_body()))
        .unwrap_or_else(|_| Response::new(crate::http::full(Bytes::new()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes()).into_owned().collect()
    }

    #[test]
    fn options_and_validation() {
        let o = LogOptions::parse(&q("container=a&follow=true&tailLines=5&timestamps=1")).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.kubelet_query(), "follow=true&tailLines=5&timestamps=true");
        let e = LogOptions::parse(&q("tailLines=x")).unwrap_err();
        assert_eq!(e.message, "strconv.ParseInt: parsing \"x\": invalid syntax");
        let o = LogOptions::parse(&q("tailLines=-1&limitBytes=0&sinceSeconds=0")).unwrap();
        let msgs: Vec<String> = o.validate().iter().map(|e| e.message()).collect();
        assert_eq!(
            msgs,
            [
                "tailLines: Invalid value: -1: must be greater than or equal to 0",
                "limitBytes: Invalid value: 0: must be greater than 0",
                "sinceSeconds: Invalid value: 0: must be greater than 0",
            ]
        );
        let o = LogOptions::parse(&q("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z")).unwrap();
        assert_eq!(o.validate().len(), 1);
    }

    #[test]
    fn containers_as_upstream_chooses() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            choose_container(&pod, "").unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        assert_eq!(choose_container(&pod, "init").unwrap(), "init");
        assert_eq!(
            choose_container(&pod, "c").unwrap_err().message,
            "container c is not valid for pod p"
        );
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(choose_container(&one, "").unwrap(), "a");
    }

    #[test]
    fn kubelet_errors_as_statuses() {
        let e = kubelet_error(404, "pod \"p\" does not exist", "pods/log", "p");
        assert_eq!(e.reason, "NotFound");
        assert_eq!(
            e.message,
            "the server could not find the requested resource ( pods/log p)"
        );
        let e = kubelet_error(
            400,
            "container \"c\" in pod \"p\" is not available",
            "pods/log",
            "p",
        );
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (
                400,
                "BadRequest",
                "container \"c\" in pod \"p\" is not available"
            )
        );
    }
}
