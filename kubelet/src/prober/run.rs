//! Running one probe against a container: exec through the runtime, HTTP GET, TCP connect or
//! gRPC health check, with upstream's outcomes, outputs and Unhealthy event texts.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};

use super::gofmt::{self, quote};
use super::http::{request_for_action, GetError, HttpGetter, MAX_BODY};
use super::net::dial;
use super::{Outcome, ProbeKind, ProbeResult};
use crate::runtime::{api, Runtime};

/// Upstream retries a probe that errored (as opposed to failed) this many times in a row.
const MAX_PROBE_RETRIES: usize = 3;

/// How long past the exec's own timeout the runtime is given to answer, as upstream's CRI
/// client allows (its default request timeout).
const EXEC_GRACE: Duration = Duration::from_secs(120);

/// Upstream's API defaults, for probes that reach the kubelet without them.
pub(crate) const DEFAULT_TIMEOUT_SECONDS: i32 = 1;

/// One run of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub outcome: Outcome,
    pub output: String,
    /// Set when the probe could not be run at all (as opposed to having failed).
    pub error: Option<String>,
}

impl Attempt {
    fn done(outcome: Outcome, output: impl Into<String>) -> Attempt {
        Attempt {
            outcome,
            output: output.into(),
            error: None,
        }
    }

    fn errored(error: impl Into<String>) -> Attempt {
        Attempt {
            outcome: Outcome::Unknown,
            output: String::new(),
            error: Some(error.into()),
        }
    }
}

/// What the worker makes of a probe run: the result to count (`None` when the run errored and
/// upstream throws it away) and the event upstream records for it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub result: Option<ProbeResult>,
    pub event: Option<(&'static str, String)>,
}

/// What a probe is run against.
pub(crate) struct Target<'a> {
    pub runtime: &'a dyn Runtime,
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub container_id: &'a str,
    pub pod_ip: &'a str,
}

/// Upstream's `prober.probe`: the run (retried while it errors) and its event.
pub(crate) async fn probe(kind: ProbeKind, spec: &Probe, target: &Target<'_>) -> Verdict {
    let mut attempt = run(spec, target).await;
    for _ in 1..MAX_PROBE_RETRIES {
        if attempt.error.is_none() {
            break;
        }
        attempt = run(spec, target).await;
    }
    if let Some(error) = attempt.error {
        return Verdict {
            result: None,
            event: Some((
                "Unhealthy",
                format!(
                    "{kind} probe errored and resulted in {} state: {error}",
                    attempt.outcome.as_str()
                ),
            )),
        };
    }
    match attempt.outcome {
        Outcome::Success => Verdict {
            result: Some(ProbeResult::Success),
            event: None,
        },
        Outcome::Warning => Verdict {
            result: Some(ProbeResult::Success),
            event: Some((
                "ProbeWarning",
                format!("{kind} probe warning: {}", attempt.output),
            )),
        },
        Outcome::Failure => Verdict {
            result: Some(ProbeResult::Failure),
            event: Some((
                "Unhealthy",
                format!("{kind} probe failed: {}", attempt.output),
            )),
        },
        Outcome::Unknown => Verdict {
            result: Some(ProbeResult::Failure),
            event: None,
        },
    }
}

/// Upstream's `runProbe`.
pub(crate) async fn run(spec: &Probe, target: &Target<'_>) -> Attempt {
    let seconds = spec
        .timeout_seconds
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
        .max(0);
    let timeout = Duration::from_secs(seconds as u64);
    if let Some(exec) = &spec.exec {
        let command = expand_static(
            exec.command.as_deref().unwrap_or_default(),
            target.container,
        );
        return exec_probe(target.runtime, target.container_id, command, timeout).await;
    }
    if let Some(action) = &spec.http_get {
        let req = match request_for_action(action, target.container, target.pod_ip, "probe") {
            Ok(r) => r,
            Err(e) => return Attempt::errored(e),
        };
        return match HttpGetter::new(Some(timeout)).get(&req).await {
            Ok(resp) => http_outcome(resp.status, &resp.body),
            Err(GetError::Transport(m)) => Attempt::done(Outcome::Failure, m),
            Err(GetError::Body(m)) => Attempt::errored(m),
        };
    }
    if let Some(tcp) = &spec.tcp_socket {
        let port = match super::resolve_port(&tcp.port, target.container) {
            Ok(p) => p,
            Err(e) => return Attempt::errored(e),
        };
        let host = match tcp.host.as_deref() {
            Some(h) if !h.is_empty() => h,
            _ => target.pod_ip,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        return match dial(host, port, Some(deadline)).await {
            Ok(_) => Attempt::done(Outcome::Success, ""),
            Err(e) => Attempt::done(Outcome::Failure, e.message()),
        };
    }
    if let Some(grpc) = &spec.grpc {
        let service = grpc.service.as_deref().unwrap_or("");
        let (outcome, output) =
            super::grpc::probe(target.pod_ip, grpc.port, service, timeout).await;
        return Attempt::done(outcome, output);
    }
    Attempt::errored(format!(
        "missing probe handler for {}:{}",
        pod_display(target.pod),
        target.container.name
    ))
}

/// Upstream's `DoHTTPProbe` on a response.
fn http_outcome(status: u16, body: &[u8]) -> Attempt {
    let body = String::from_utf8_lossy(body);
    match status {
        200..=299 => Attempt::done(Outcome::Success, body),
        300..=399 => Attempt::done(
            Outcome::Warning,
            format!("Probe terminated redirects, Response body: {body}"),
        ),
        // The body is left out on purpose upstream: it may carry secrets into events.
        _ => Attempt::done(
            Outcome::Failure,
            format!("HTTP probe failed with statuscode: {status}"),
        ),
    }
}

/// Upstream's exec prober over `RunInContainer`: exit 0 succeeds, any other exit fails with
/// the command's output, a runtime timeout fails with `command "..." timed out`, and any other
/// runtime error makes the run error.
pub(crate) async fn exec_probe(
    runtime: &dyn Runtime,
    container_id: &str,
    cmd: Vec<String>,
    timeout: Duration,
) -> Attempt {
    let joined = cmd.join(" ");
    match exec_sync(runtime, container_id, cmd, timeout).await {
        Ok(resp) => {
            let mut output = resp.stdout;
            output.extend_from_slice(&resp.stderr);
            output.truncate(MAX_BODY);
            let output = String::from_utf8_lossy(&output).into_owned();
            if resp.exit_code == 0 {
                Attempt::done(Outcome::Success, output)
            } else {
                Attempt::done(Outcome::Failure, output)
            }
        }
        Err(ExecError::TimedOut) => Attempt::done(
            Outcome::Failure,
            format!("command {} timed out", quote(&joined)),
        ),
        Err(ExecError::Runtime(m)) => Attempt::errored(m),
    }
}

#[derive(Debug)]
pub(crate) enum ExecError {
    TimedOut,
    /// A runtime error, as upstream's CRI client reports it.
    Runtime(String),
}

/// `ExecSync` as upstream's CRI client makes it: with a timeout the runtime is given that long
/// plus [`EXEC_GRACE`], and a `DeadlineExceeded` answer means the command timed out. A zero
/// timeout waits as long as the command runs.
pub(crate) async fn exec_sync(
    runtime: &dyn Runtime,
    container_id: &str,
    cmd: Vec<String>,
    timeout: Duration,
) -> Result<api::ExecSyncResponse, ExecError> {
    let req = api::ExecSyncRequest {
        container_id: container_id.to_string(),
        cmd,
        timeout: timeout.as_secs() as i64,
    };
    let call = runtime.exec_sync(req);
    let result = if timeout.is_zero() {
        call.await
    } else {
        match tokio::time::timeout(timeout + EXEC_GRACE, call).await {
            Ok(r) => r,
            Err(_) => return Err(ExecError::TimedOut),
        }
    };
    result.map_err(|status| {
        if status.code() == tonic::Code::DeadlineExceeded {
            ExecError::TimedOut
        } else {
            ExecError::Runtime(gofmt::grpc_error(&status))
        }
    })
}

/// Upstream's `ExpandContainerCommandOnlyStatic`: `$(VAR)` from the container's literal env
/// values only (a `valueFrom` variable expands to the empty string).
fn expand_static(command: &[String], container: &Container) -> Vec<String> {
    let env: HashMap<&str, &str> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
        .collect();
    command
        .iter()
        .map(|c| crate::container::env::expand(c, |name| env.get(name).map(|v| v.to_string())))
        .collect()
}

/// Upstream's `format.Pod`: `name_namespace(uid)`.
pub(crate) fn pod_display(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}
