//! Container lifecycle hooks (`postStart`, `preStop`), run as upstream's handler runner runs
//! them:
//! - `exec` through the runtime's `ExecSync`, with no timeout of its own; a non-zero exit fails.
//! - `httpGet` with the probes' request (host defaulting to the pod IP, `User-Agent:
//!   kube-lifecycle/1.33`), certificates not verified, same-host redirects only, and no
//!   timeout. Only a failed exchange fails the hook: the response's status does not matter.
//!   An HTTPS hook answered in plain HTTP is retried over HTTP, with a `LifecycleHTTPFallback`
//!   event on the pod when that works.
//! - `sleep` waits its seconds.
//! - `tcpSocket` is not a hook upstream runs: the API keeps it for compatibility and the hook
//!   fails.
//!
//! A failed `postStart` means the container is killed (reason `FailedPostStartHook`) and its
//! start fails with [`POST_START_HOOK_ERROR`]; a `preStop` gets at most the grace period.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

use crate::events::Kind as EventType;
use crate::prober::gofmt::quote;
use crate::prober::http::{request_for_action, GetError, HttpGetter};
use crate::prober::run::{exec_sync, pod_display, ExecError};
use crate::runtime::Runtime;

/// The reason a container's start fails with when its `postStart` hook fails.
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";

/// The reason and message of the kill that follows a failed `postStart`.
pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventObject {
    Pod,
    Container,
}

/// An event for the caller to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub object: EventObject,
    pub event_type: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// The container a hook runs for.
pub struct HookTarget<'a> {
    pub runtime: &'a dyn Runtime,
    pub pod: &'a Pod,
    pub container: &'a Container,
    /// The runtime's id of the container (without a `containerd://` prefix).
    pub container_id: &'a str,
    /// The pod's primary IP, for `httpGet` hooks without a host.
    pub pod_ip: Option<&'a str>,
}

/// One run of a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    /// On failure, upstream's message (`Exec lifecycle hook ([...]) for Container "c" in Pod
    /// "p_ns(uid)" failed - error: ..., message: "..."`), which goes into the container's
    /// status, never into an event.
    pub result: Result<(), String>,
    pub events: Vec<HookEvent>,
}

/// Runs the container's `postStart` hook, if it has one. On failure the events include
/// `FailedPostStartHook`; the caller then kills the container and fails its start with
/// [`POST_START_HOOK_ERROR`] and the returned message.
pub async fn post_start(target: &HookTarget<'_>) -> HookRun {
    let Some(handler) = target
        .container
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
    else {
        return HookRun {
            result: Ok(()),
            events: Vec::new(),
        };
    };
    let mut run = run_handler(target, handler).await;
    if run.result.is_err() {
        // Upstream keeps the hook's message out of the event: it may hold secrets.
        run.events.push(HookEvent {
            object: EventObject::Container,
            event_type: EventType::Warning,
            reason: "FailedPostStartHook",
            message: "PostStartHook failed".into(),
        });
    }
    run
}

/// What running a `preStop` hook came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreStop {
    /// Whole seconds spent, to take off the grace period the container is stopped with.
    pub elapsed_seconds: i64,
    /// False when the grace period ran out first.
    pub completed: bool,
    pub events: Vec<HookEvent>,
}

/// Runs the container's `preStop` hook, if it has one, for at most `grace_period_seconds`.
/// A hook still running then is abandoned (upstream lets it run on unobserved; the container
/// is stopped either way).
pub async fn pre_stop(target: &HookTarget<'_>, grace_period_seconds: i64) -> PreStop {
    let Some(handler) = target
        .container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return PreStop {
            elapsed_seconds: 0,
            completed: true,
            events: Vec::new(),
        };
    };
    let start = Instant::now();
    let grace = Duration::from_secs(grace_period_seconds.max(0) as u64);
    let (completed, events) = match tokio::time::timeout(grace, run_handler(target, handler)).await
    {
        Err(_) => (false, Vec::new()),
        Ok(run) => {
            let mut events = run.events;
            if run.result.is_err() {
                events.push(HookEvent {
                    object: EventObject::Container,
                    event_type: EventType::Warning,
                    reason: "FailedPreStopHook",
                    message: "PreStopHook failed".into(),
                });
            }
            (true, events)
        }
    };
    PreStop {
        elapsed_seconds: start.elapsed().as_secs() as i64,
        completed,
        events,
    }
}

/// Upstream's `handlerRunner.Run` for one handler.
pub async fn run_handler(target: &HookTarget<'_>, handler: &LifecycleHandler) -> HookRun {
    let container = quote(&target.container.name);
    let pod = quote(&pod_display(target.pod));
    let mut events = Vec::new();
    let result = if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        run_exec(target, &cmd).await.map_err(|(err, output)| {
            format!(
                "Exec lifecycle hook ([{}]) for Container {container} in Pod {pod} failed - error: {err}, message: {}",
                cmd.join(" "),
                quote(&output)
            )
        })
    } else if let Some(action) = &handler.http_get {
        run_http(target, action, &mut events).await.map_err(|err| {
            format!(
                "HTTP lifecycle hook ({}) for Container {container} in Pod {pod} failed - error: {err}",
                action.path.as_deref().unwrap_or("")
            )
        })
    } else if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        Ok(())
    } else {
        Err(format!(
            "Cannot run handler: invalid handler: {}",
            go_handler_text(handler)
        ))
    };
    HookRun { result, events }
}

/// The exec hook; on failure the error text and the command's output.
async fn run_exec(target: &HookTarget<'_>, cmd: &[String]) -> Result<(), (String, String)> {
    match exec_sync(
        target.runtime,
        target.container_id,
        cmd.to_vec(),
        Duration::ZERO,
    )
    .await
    {
        Ok(resp) if resp.exit_code == 0 => Ok(()),
        Ok(resp) => {
            let err = format!(
                "command '{}' exited with {}: {}",
                cmd.join(" "),
                resp.exit_code,
                String::from_utf8_lossy(&resp.stderr)
            );
            let mut output = resp.stdout;
            output.extend_from_slice(&resp.stderr);
            Err((err, String::from_utf8_lossy(&output).into_owned()))
        }
        Err(ExecError::TimedOut) => Err((
            format!("command {} timed out", quote(&cmd.join(" "))),
            String::new(),
        )),
        Err(ExecError::Runtime(m)) => Err((m, String::new())),
    }
}

async fn run_http(
    target: &HookTarget<'_>,
    action: &k8s_openapi::api::core::v1::HTTPGetAction,
    events: &mut Vec<HookEvent>,
) -> Result<(), String> {
    let host_set = action.host.as_deref().is_some_and(|h| !h.is_empty());
    let pod_ip = match target.pod_ip.filter(|ip| !ip.is_empty()) {
        Some(ip) => ip,
        // Upstream prints the runtime's whole pod status here.
        None if !host_set => {
            return Err("failed to find networking container: the pod has no IP".into())
        }
        None => "",
    };
    let req = request_for_action(action, target.container, pod_ip, "lifecycle")?;
    let getter = HttpGetter::new(None);
    match getter.get(&req).await {
        // A response is a success whatever its status, as is a body that breaks off.
        Ok(_) | Err(GetError::Body(_)) => Ok(()),
        Err(GetError::Transport(err)) => {
            if req.url.scheme != "https"
                || !err.contains("server gave HTTP response to HTTPS client")
            {
                return Err(err);
            }
            let mut plain = req.clone();
            plain.url.scheme = "http".into();
            plain.headers.retain(|(k, _)| k != "Authorization");
            match getter.get(&plain).await {
                Ok(_) | Err(GetError::Body(_)) => {
                    events.push(HookEvent {
                        object: EventObject::Pod,
                        event_type: EventType::Warning,
                        reason: "LifecycleHTTPFallback",
                        message: format!(
                            "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
                            req.url.authority()
                        ),
                    });
                    Ok(())
                }
                // The HTTPS error is the one reported.
                Err(GetError::Transport(_)) => Err(err),
            }
        }
    }
}

/// Go's `%v` of a `*LifecycleHandler` with no handler upstream runs.
fn go_handler_text(h: &LifecycleHandler) -> String {
    let tcp = match &h.tcp_socket {
        None => "nil".to_string(),
        Some(t) => {
            let port = match &t.port {
                IntOrString::Int(n) => format!("{{0 {n} }}"),
                IntOrString::String(s) => format!("{{1 0 {s}}}"),
            };
            format!(
                "&TCPSocketAction{{Port:{port},Host:{},}}",
                t.host.as_deref().unwrap_or("")
            )
        }
    };
    format!("&LifecycleHandler{{Exec:nil,HTTPGet:nil,TCPSocket:{tcp},Sleep:nil,}}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{
        ExecAction, HTTPGetAction, Lifecycle, SleepAction, TCPSocketAction,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tonic::Status;

    use super::*;
    use crate::prober::fake::{
        closed_port, exec_exit, exec_ok, header, http_server, response, FakeRuntime,
    };
    use crate::runtime::api;

    fn pod() -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn with_hooks(
        post_start: Option<LifecycleHandler>,
        pre_stop: Option<LifecycleHandler>,
    ) -> Container {
        Container {
            name: "app".into(),
            lifecycle: Some(Lifecycle {
                post_start,
                pre_stop,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn exec(cmd: &[&str]) -> LifecycleHandler {
        LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(cmd.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        }
    }

    fn http(port: u16, scheme: Option<&str>) -> LifecycleHandler {
        LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/hook".into()),
                port: IntOrString::Int(port.into()),
                scheme: scheme.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sleep(seconds: i64) -> LifecycleHandler {
        LifecycleHandler {
            sleep: Some(SleepAction { seconds }),
            ..Default::default()
        }
    }

    fn target<'a>(rt: &'a FakeRuntime, pod: &'a Pod, c: &'a Container) -> HookTarget<'a> {
        HookTarget {
            runtime: rt,
            pod,
            container: c,
            container_id: "cid",
            pod_ip: Some("127.0.0.1"),
        }
    }

    #[tokio::test]
    async fn exec_post_start_failure_kills_with_upstream_message() {
        let rt = FakeRuntime::default();
        rt.set_exec(|req: api::ExecSyncRequest| async move {
            if req.cmd.last().map(String::as_str) == Some("exit 0") {
                Ok(exec_ok(""))
            } else {
                Ok(exec_exit(3, "partial\n", "bad thing"))
            }
        });
        let p = pod();
        let ok = with_hooks(Some(exec(&["sh", "-c", "exit 0"])), None);
        let run = post_start(&target(&rt, &p, &ok)).await;
        assert_eq!(
            run,
            HookRun {
                result: Ok(()),
                events: vec![]
            }
        );
        assert_eq!(
            rt.execs.lock().unwrap()[0].timeout,
            0,
            "hooks run without a timeout"
        );

        let bad = with_hooks(Some(exec(&["sh", "-c", "exit 3"])), None);
        let run = post_start(&target(&rt, &p, &bad)).await;
        assert_eq!(
            run.result,
            Err("Exec lifecycle hook ([sh -c exit 3]) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: command 'sh -c exit 3' exited with 3: bad thing, message: \"partial\\nbad thing\"".to_string())
        );
        assert_eq!(
            run.events,
            vec![HookEvent {
                object: EventObject::Container,
                event_type: EventType::Warning,
                reason: "FailedPostStartHook",
                message: "PostStartHook failed".into(),
            }]
        );

        rt.set_exec(|_| async { Err(Status::not_found("container gone")) });
        let run = run_handler(&target(&rt, &p, &bad), &exec(&["true"])).await;
        assert_eq!(
            run.result,
            Err("Exec lifecycle hook ([true]) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: rpc error: code = NotFound desc = container gone, message: \"\"".to_string())
        );
    }

    #[tokio::test]
    async fn http_hook_fails_only_when_no_response_comes() {
        let (port, seen) =
            http_server(|_, _| Some(response("500 Internal Server Error", &[], "no"))).await;
        let rt = FakeRuntime::default();
        let p = pod();
        let c = with_hooks(Some(http(port, None)), None);
        let run = post_start(&target(&rt, &p, &c)).await;
        assert_eq!(run.result, Ok(()));
        let head = seen.lock().unwrap()[0].clone();
        assert!(head.starts_with("GET /hook HTTP/1.1\r\n"), "{head}");
        assert_eq!(header(&head, "User-Agent"), Some("kube-lifecycle/1.33"));

        let closed = closed_port().await;
        let c = with_hooks(Some(http(closed, None)), None);
        let run = post_start(&target(&rt, &p, &c)).await;
        assert_eq!(
            run.result,
            Err(format!("HTTP lifecycle hook (/hook) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: Get \"http://127.0.0.1:{closed}/hook\": dial tcp 127.0.0.1:{closed}: connect: connection refused"))
        );
        assert_eq!(run.events.len(), 1);

        let mut no_ip = target(&rt, &p, &c);
        no_ip.pod_ip = None;
        let run = run_handler(&no_ip, &http(closed, None)).await;
        assert!(run
            .result
            .unwrap_err()
            .ends_with("failed - error: failed to find networking container: the pod has no IP"));
    }

    #[tokio::test]
    async fn https_hook_falls_back_to_http() {
        // A plain HTTP server that answers anything, a TLS hello included, with a 200.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 2048];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(response("200 OK", &[], "").as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        let rt = FakeRuntime::default();
        let p = pod();
        let c = with_hooks(Some(http(port, Some("HTTPS"))), None);
        let run = post_start(&target(&rt, &p, &c)).await;
        assert_eq!(run.result, Ok(()));
        assert_eq!(
            run.events,
            vec![HookEvent {
                object: EventObject::Pod,
                event_type: EventType::Warning,
                reason: "LifecycleHTTPFallback",
                message: format!("request to HTTPS lifecycle hook 127.0.0.1:{port} got HTTP response, retry with HTTP succeeded"),
            }]
        );
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn pre_stop_is_bounded_by_the_grace_period() {
        let rt = FakeRuntime::default();
        let p = pod();
        let c = with_hooks(None, Some(sleep(5)));
        let done = pre_stop(&target(&rt, &p, &c), 30).await;
        assert_eq!(
            done,
            PreStop {
                elapsed_seconds: 5,
                completed: true,
                events: vec![]
            }
        );
        let cut = pre_stop(&target(&rt, &p, &c), 2).await;
        assert_eq!(
            cut,
            PreStop {
                elapsed_seconds: 2,
                completed: false,
                events: vec![]
            }
        );

        rt.set_exec(|_| async { Ok(exec_exit(1, "", "")) });
        let c = with_hooks(None, Some(exec(&["false"])));
        let failed = pre_stop(&target(&rt, &p, &c), 30).await;
        assert_eq!(failed.events[0].reason, "FailedPreStopHook");
        assert_eq!(failed.events[0].message, "PreStopHook failed");

        let none = Container::default();
        assert!(pre_stop(&target(&rt, &p, &none), 30).await.completed);
    }

    #[tokio::test]
    async fn tcp_socket_hooks_are_not_run() {
        let rt = FakeRuntime::default();
        let p = pod();
        let handler = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(8080),
                host: None,
            }),
            ..Default::default()
        };
        let c = with_hooks(Some(handler), None);
        let run = post_start(&target(&rt, &p, &c)).await;
        assert_eq!(
            run.result,
            Err("Cannot run handler: invalid handler: &LifecycleHandler{Exec:nil,HTTPGet:nil,TCPSocket:&TCPSocketAction{Port:{0 8080 },Host:,},Sleep:nil,}".to_string())
        );
        assert_eq!(run.events[0].reason, "FailedPostStartHook");
    }
}
