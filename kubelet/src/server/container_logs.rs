//! `/containerLogs/{namespace}/{pod}/{container}`: a container's log, with the query read as
//! `PodLogOptions` and upstream's answers for bad queries, unknown pods and containers.

use chrono::{DateTime, Utc};
use http::StatusCode;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::{streaming, text, Ctx, LogLookupError, Req};
use crate::logs::{LogOptions, LogStream};

/// The query as upstream decodes it into `PodLogOptions`.
#[derive(Debug, Default, PartialEq)]
struct Query {
    follow: bool,
    previous: bool,
    timestamps: bool,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
    since_seconds: Option<i64>,
    since_time: Option<DateTime<Utc>>,
    stream: Option<String>,
}

/// Upstream's query booleans: absent is false, `0` and `false` (any case) are false, any
/// other value (even empty) is true.
fn boolean(v: Option<&str>) -> bool {
    match v {
        None => false,
        Some(s) => !(s == "0" || s.eq_ignore_ascii_case("false")),
    }
}

fn integer(v: Option<&str>) -> Result<Option<i64>, ()> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| ()),
    }
}

fn parse_query(raw: Option<&str>) -> Result<Query, ()> {
    let mut pairs: Vec<(String, String)> = raw
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    // The old `tail` parameter: a number of lines, or `all`.
    if let Some(tail) = pairs
        .iter()
        .find(|(k, _)| k == "tail")
        .map(|(_, v)| v.clone())
        .filter(|t| !t.is_empty())
    {
        pairs.retain(|(k, _)| k != "tailLines");
        if tail != "all" {
            pairs.push(("tailLines".into(), tail));
        }
    }
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let since_time = match get("sinceTime") {
        None | Some("") => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| ())?
                .with_timezone(&Utc),
        ),
    };
    Ok(Query {
        follow: boolean(get("follow")),
        previous: boolean(get("previous")),
        timestamps: boolean(get("timestamps")),
        tail_lines: integer(get("tailLines"))?,
        limit_bytes: integer(get("limitBytes"))?,
        since_seconds: integer(get("sinceSeconds"))?,
        since_time,
        stream: get("stream").map(str::to_string),
    })
}

/// Upstream's ValidatePodLogOptions, with stream selection on.
fn valid(q: &Query) -> Option<LogStream> {
    if q.tail_lines.is_some_and(|n| n < 0)
        || q.limit_bytes.is_some_and(|n| n < 1)
        || (q.since_seconds.is_some() && q.since_time.is_some())
        || q.since_seconds.is_some_and(|n| n < 1)
    {
        return None;
    }
    let stream = match q.stream.as_deref() {
        None => LogStream::All,
        Some(s) => LogStream::parse(s)?,
    };
    if stream != LogStream::All && q.tail_lines.is_some() {
        return None;
    }
    Some(stream)
}

fn has_container(pod: &Pod, name: &str) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    spec.containers.iter().any(|c| c.name == name)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
}

/// Which instance of a container the log of is wanted, from the pod's status, with
/// upstream's errors (validateContainerLogStatus): the ID of the running container, or the
/// last terminated one (always with `previous`).
pub fn select_container_status(
    pod: &Pod,
    container: &str,
    previous: bool,
) -> Result<String, LogLookupError> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let err = |what: &str| {
        LogLookupError(format!(
            "container {container:?} in pod {pod_name:?} {what}"
        ))
    };
    let status = pod.status.as_ref();
    fn find<'a>(list: Option<&'a Vec<ContainerStatus>>, name: &str) -> Option<&'a ContainerStatus> {
        list.and_then(|l| l.iter().find(|s| s.name == name))
    }
    let Some(cs) = find(
        status.and_then(|s| s.container_statuses.as_ref()),
        container,
    )
    .or_else(|| {
        find(
            status.and_then(|s| s.init_container_statuses.as_ref()),
            container,
        )
    })
    .or_else(|| {
        find(
            status.and_then(|s| s.ephemeral_container_statuses.as_ref()),
            container,
        )
    }) else {
        return Err(err("is not available"));
    };
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.container_id.clone())
        .filter(|id| !id.is_empty());
    let state = cs.state.as_ref();
    if previous {
        return last.ok_or_else(|| {
            LogLookupError(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ))
        });
    }
    if state.and_then(|s| s.running.as_ref()).is_some() {
        return Ok(cs.container_id.clone().unwrap_or_default());
    }
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        return match t.container_id.clone().filter(|id| !id.is_empty()) {
            Some(id) => Ok(id),
            None => last.ok_or_else(|| err("is terminated")),
        };
    }
    if cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some()
    {
        return last.ok_or_else(|| err("is terminated"));
    }
    if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = w.reason.as_deref().unwrap_or("");
        return Err(match reason {
            "ErrImagePull" => err("is waiting to start: image can't be pulled"),
            "ImagePullBackOff" => err("is waiting to start: trying and failing to pull image"),
            r => err(&format!("is waiting to start: {r}")),
        });
    }
    Err(err("is waiting to start - no logs yet"))
}

pub(super) async fn serve(ctx: &Ctx, req: &Req) -> http::Response<super::Body> {
    let parts: Vec<String> = req
        .uri()
        .path()
        .trim_start_matches("/containerLogs")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let [namespace, pod_name, container] = parts.as_slice() else {
        return text(StatusCode::NOT_FOUND, "404: Page Not Found");
    };
    let Ok(query) = parse_query(req.uri().query()) else {
        return text(
            StatusCode::BAD_REQUEST,
            r#"{"message": "Unable to decode query."}"#,
        );
    };
    let Some(stream) = valid(&query) else {
        return text(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"message": "Invalid request."}"#,
        );
    };
    let Some(pod) = ctx.node.pod(namespace, pod_name) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("pod {pod_name:?} does not exist"),
        );
    };
    if !has_container(&pod, container) {
        return text(
            StatusCode::NOT_FOUND,
            &format!("container {container:?} not found in pod {pod_name:?}"),
        );
    }
    let log = match ctx
        .node
        .container_log(&pod, container, query.previous)
        .await
    {
        Ok(l) => l,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.0),
    };
    let opts = LogOptions {
        tail_lines: query.tail_lines,
        limit_bytes: query.limit_bytes,
        since: None,
        follow: query.follow,
        timestamps: query.timestamps,
        stream,
    }
    .with_since(query.since_seconds, query.since_time, Utc::now());
    let output = crate::logs::read_logs(log.path, opts, log.exited);
    http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(streaming(output))
        .unwrap_or_else(|_| http::Response::new(super::full("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodStatus,
    };

    #[test]
    fn query_as_upstream_decodes_it() {
        let q = parse_query(Some("follow=&previous=0&timestamps=TRUE&tailLines=3")).unwrap();
        assert!(q.follow && !q.previous && q.timestamps);
        assert_eq!(q.tail_lines, Some(3));
        let q = parse_query(Some("tail=all&tailLines=5")).unwrap();
        assert_eq!(q.tail_lines, None);
        let q = parse_query(Some("tail=7")).unwrap();
        assert_eq!(q.tail_lines, Some(7));
        assert!(parse_query(Some("limitBytes=x")).is_err());
        assert!(parse_query(Some("sinceTime=yesterday")).is_err());
        let q = parse_query(Some("sinceTime=2024-01-01T00:00:00Z")).unwrap();
        assert!(q.since_time.is_some());
    }

    #[test]
    fn validation_as_upstream() {
        let ok = |s: &str| valid(&parse_query(Some(s)).unwrap());
        assert_eq!(ok(""), Some(LogStream::All));
        assert_eq!(ok("tailLines=-1"), None);
        assert_eq!(ok("limitBytes=0"), None);
        assert_eq!(ok("sinceSeconds=0"), None);
        assert_eq!(ok("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z"), None);
        assert_eq!(ok("stream=Stderr"), Some(LogStream::Stderr));
        assert_eq!(ok("stream=stderr"), None);
        assert_eq!(ok("stream=Stdout&tailLines=1"), None);
    }

    fn pod_with(status: ContainerStatus) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.status = Some(PodStatus {
            container_statuses: Some(vec![status]),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn container_status_choice() {
        let running = ContainerStatus {
            name: "app".into(),
            container_id: Some("containerd://new".into()),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            last_state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some("containerd://old".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = pod_with(running.clone());
        assert_eq!(
            select_container_status(&pod, "app", false).unwrap(),
            "containerd://new"
        );
        assert_eq!(
            select_container_status(&pod, "app", true).unwrap(),
            "containerd://old"
        );
        assert_eq!(
            select_container_status(&pod, "other", false).unwrap_err().0,
            r#"container "other" in pod "web" is not available"#
        );
        let fresh = ContainerStatus {
            last_state: None,
            ..running
        };
        assert_eq!(
            select_container_status(&pod_with(fresh), "app", true)
                .unwrap_err()
                .0,
            r#"previous terminated container "app" in pod "web" not found"#
        );
        let waiting = ContainerStatus {
            name: "app".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            select_container_status(&pod_with(waiting), "app", false)
                .unwrap_err()
                .0,
            r#"container "app" in pod "web" is waiting to start: ContainerCreating"#
        );
    }
}
