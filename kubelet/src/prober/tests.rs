//! Probe runs against real servers on loopback (HTTP, HTTPS, TCP, gRPC), exec through an
//! in-test runtime, and the manager's worker loop on tokio's paused clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, Pod,
    PodSpec, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

use super::fake::{
    closed_port, exec_exit, exec_ok, header, http_server, request_path, response, FakeRuntime,
};
use super::run::{self, Attempt, Target};
use super::*;
use crate::runtime::api;

// ---- helpers ----------------------------------------------------------------------------------

fn pod(containers: Vec<Container>) -> Pod {
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        ..Default::default()
    }
}

fn http_probe(port: u16, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            host: Some("127.0.0.1".into()),
            port: IntOrString::Int(port.into()),
            path: Some(path.into()),
            ..Default::default()
        }),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

fn exec_probe(cmd: &str) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![cmd.to_string()]),
        }),
        ..Default::default()
    }
}

/// Runs one probe against `container` with the pod IP 127.0.0.1.
async fn run_one(spec: &Probe, c: &Container, rt: &FakeRuntime) -> Attempt {
    let p = pod(vec![c.clone()]);
    let target = Target {
        runtime: rt,
        pod: &p,
        container: c,
        container_id: "cid",
        pod_ip: "127.0.0.1",
    };
    run::run(spec, &target).await
}

// ---- HTTP -------------------------------------------------------------------------------------

#[tokio::test]
async fn http_probe_outcomes_follow_the_status_code() {
    let (port, _) = http_server(|head, _| {
        Some(match request_path(head) {
            "/ok" => response("200 OK", &[], "fine"),
            "/moved" => response("304 Not Modified", &[], ""),
            _ => response("500 Internal Server Error", &[], "secret details"),
        })
    })
    .await;
    let rt = FakeRuntime::default();
    let c = container("app");

    let ok = run_one(&http_probe(port, "/ok"), &c, &rt).await;
    assert_eq!(
        ok,
        Attempt {
            outcome: Outcome::Success,
            output: "fine".into(),
            error: None
        }
    );

    let bad = run_one(&http_probe(port, "/fail"), &c, &rt).await;
    assert_eq!(bad.outcome, Outcome::Failure);
    assert_eq!(bad.output, "HTTP probe failed with statuscode: 500");

    let warn = run_one(&http_probe(port, "/moved"), &c, &rt).await;
    assert_eq!(warn.outcome, Outcome::Warning);
    assert_eq!(warn.output, "Probe terminated redirects, Response body: ");
}

#[tokio::test]
async fn http_probe_sends_upstream_headers() {
    let (port, seen) = http_server(|_, _| Some(response("200 OK", &[], ""))).await;
    let rt = FakeRuntime::default();
    let c = container("app");
    run_one(&http_probe(port, "healthz?full=1"), &c, &rt).await;
    let mut custom = http_probe(port, "/");
    custom.http_get.as_mut().unwrap().http_headers = Some(vec![
        HTTPHeader {
            name: "x-custom".into(),
            value: "v".into(),
        },
        HTTPHeader {
            name: "Host".into(),
            value: "example.com".into(),
        },
        HTTPHeader {
            name: "Accept".into(),
            value: String::new(),
        },
    ]);
    run_one(&custom, &c, &rt).await;

    let seen = seen.lock().unwrap().clone();
    let first = &seen[0];
    assert!(
        first.starts_with("GET /healthz?full=1 HTTP/1.1\r\n"),
        "{first}"
    );
    assert_eq!(header(first, "User-Agent"), Some("kube-probe/1.33"));
    assert_eq!(header(first, "Accept"), Some("*/*"));
    assert_eq!(
        header(first, "Host"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(header(first, "Connection"), Some("close"));
    assert_eq!(header(first, "Accept-Encoding"), None);

    let second = &seen[1];
    assert!(second.contains("X-Custom: v\r\n"), "{second}");
    assert_eq!(header(second, "Host"), Some("example.com"));
    assert_eq!(header(second, "Accept"), None);
}

#[tokio::test]
async fn http_probe_follows_redirects_on_the_same_host_only() {
    let (port, _) = http_server(|head, port| {
        Some(match request_path(head) {
            "/start" => response("302 Found", &[("Location", "/ok")], ""),
            "/away" => response(
                "301 Moved Permanently",
                &[("Location", &format!("http://localhost:{port}/ok"))],
                "gone",
            ),
            "/loop" => response("302 Found", &[("Location", "/loop")], ""),
            _ => response("200 OK", &[], "landed"),
        })
    })
    .await;
    let rt = FakeRuntime::default();
    let c = container("app");

    let followed = run_one(&http_probe(port, "/start"), &c, &rt).await;
    assert_eq!(
        (followed.outcome, followed.output.as_str()),
        (Outcome::Success, "landed")
    );

    let away = run_one(&http_probe(port, "/away"), &c, &rt).await;
    assert_eq!(away.outcome, Outcome::Warning);
    assert_eq!(
        away.output,
        "Probe terminated redirects, Response body: gone"
    );

    let looped = run_one(&http_probe(port, "/loop"), &c, &rt).await;
    assert_eq!(looped.outcome, Outcome::Failure);
    assert_eq!(
        looped.output,
        format!("Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects")
    );
}

#[tokio::test]
async fn http_probe_failures_read_as_go_reports_them() {
    let rt = FakeRuntime::default();
    let c = container("app");
    let port = closed_port().await;
    let refused = run_one(&http_probe(port, "/"), &c, &rt).await;
    assert_eq!(refused.outcome, Outcome::Failure);
    assert_eq!(
        refused.output,
        format!("Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused")
    );

    let (silent, _) = http_server(|_, _| None).await;
    let started = std::time::Instant::now();
    let hung = run_one(&http_probe(silent, "/slow"), &c, &rt).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(hung.outcome, Outcome::Failure);
    assert_eq!(
        hung.output,
        format!("Get \"http://127.0.0.1:{silent}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
    );
}

#[tokio::test]
async fn http_probe_reads_at_most_10_kib_of_body() {
    let body = "x".repeat(20 * 1024);
    let (port, _) = http_server(move |_, _| Some(response("200 OK", &[], &body))).await;
    let got = run_one(
        &http_probe(port, "/"),
        &container("app"),
        &FakeRuntime::default(),
    )
    .await;
    assert_eq!(got.outcome, Outcome::Success);
    assert_eq!(got.output.len(), 10 * 1024);
}

#[tokio::test]
async fn http_probe_resolves_named_ports_and_reports_bad_ones() {
    let (port, _) = http_server(|_, _| Some(response("200 OK", &[], ""))).await;
    let mut c = container("app");
    c.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: port.into(),
        ..Default::default()
    }]);
    let mut spec = http_probe(0, "/");
    spec.http_get.as_mut().unwrap().port = IntOrString::String("http".into());
    let rt = FakeRuntime::default();
    assert_eq!(run_one(&spec, &c, &rt).await.outcome, Outcome::Success);

    spec.http_get.as_mut().unwrap().port = IntOrString::String("metrics".into());
    let missing = run_one(&spec, &c, &rt).await;
    assert_eq!(missing.outcome, Outcome::Unknown);
    assert_eq!(
        missing.error.as_deref(),
        Some("strconv.Atoi: parsing \"metrics\": invalid syntax")
    );
    spec.http_get.as_mut().unwrap().port = IntOrString::Int(70000);
    let out_of_range = run_one(&spec, &c, &rt).await;
    assert_eq!(
        out_of_range.error.as_deref(),
        Some("invalid port number: 70000")
    );
}

#[tokio::test]
async fn https_probe_skips_certificate_checks() {
    let cert = rcgen::generate_simple_self_signed(vec!["example.invalid".to_string()]).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()).into();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(conn).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(response("200 OK", &[], "secure").as_bytes())
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let mut spec = http_probe(port, "/");
    spec.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
    let got = run_one(&spec, &container("app"), &FakeRuntime::default()).await;
    assert_eq!(
        (got.outcome, got.output.as_str()),
        (Outcome::Success, "secure")
    );

    // HTTPS to a plain HTTP server, which answers the TLS hello with a 400.
    let plain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = plain_listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = plain_listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = conn.shutdown().await;
        }
    });
    let mut spec = http_probe(plain, "/");
    spec.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
    let got = run_one(&spec, &container("app"), &FakeRuntime::default()).await;
    assert_eq!(got.outcome, Outcome::Failure);
    assert_eq!(
        got.output,
        format!(
            "Get \"https://127.0.0.1:{plain}/\": http: server gave HTTP response to HTTPS client"
        )
    );
}

// ---- TCP and gRPC -----------------------------------------------------------------------------

#[tokio::test]
async fn tcp_probe_connects_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let spec = |port: u16| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port.into()),
            host: None,
        }),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    let rt = FakeRuntime::default();
    let c = container("app");
    assert_eq!(
        run_one(&spec(open), &c, &rt).await.outcome,
        Outcome::Success
    );
    let closed = closed_port().await;
    let refused = run_one(&spec(closed), &c, &rt).await;
    assert_eq!(refused.outcome, Outcome::Failure);
    assert_eq!(
        refused.output,
        format!("dial tcp 127.0.0.1:{closed}: connect: connection refused")
    );
}

async fn grpc_health_server() -> (u16, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(c, _)| c);
        Some((conn, l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (port, reporter)
}

#[tokio::test]
async fn grpc_probe_checks_health_service() {
    let (port, reporter) = grpc_health_server().await;
    reporter
        .set_service_status("sick", tonic_health::ServingStatus::NotServing)
        .await;
    let spec = |service: Option<&str>| Probe {
        grpc: Some(GRPCAction {
            port: port.into(),
            service: service.map(String::from),
        }),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    let rt = FakeRuntime::default();
    let c = container("app");
    let healthy = run_one(&spec(None), &c, &rt).await;
    assert_eq!(
        (healthy.outcome, healthy.output.as_str()),
        (Outcome::Success, "service healthy")
    );

    let sick = run_one(&spec(Some("sick")), &c, &rt).await;
    assert_eq!(sick.outcome, Outcome::Failure);
    assert_eq!(
        sick.output,
        "service unhealthy (responded with \"NOT_SERVING\")"
    );

    let unknown = run_one(&spec(Some("nope")), &c, &rt).await;
    assert_eq!(unknown.outcome, Outcome::Failure);
    assert!(
        unknown
            .output
            .starts_with("error: health rpc probe failed: rpc error: code = NotFound desc = "),
        "{}",
        unknown.output
    );

    let closed = closed_port().await;
    let mut nothing = spec(None);
    nothing.grpc.as_mut().unwrap().port = closed.into();
    let started = std::time::Instant::now();
    let down = run_one(&nothing, &c, &rt).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(down.outcome, Outcome::Failure);
    assert_eq!(
        down.output,
        format!("timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s: context deadline exceeded")
    );
}

// ---- exec -------------------------------------------------------------------------------------

#[tokio::test]
async fn exec_probe_outcomes() {
    let rt = FakeRuntime::default();
    rt.set_exec(|req: api::ExecSyncRequest| async move {
        match req.cmd[0].as_str() {
            "ok" => Ok(exec_ok("all good\n")),
            "fail" => Ok(exec_exit(1, "out ", "err")),
            "slow" => Err(Status::deadline_exceeded("timeout 1s exceeded")),
            _ => Err(Status::not_found("container not found")),
        }
    });
    let c = container("app");
    let ok = run_one(&exec_probe("ok"), &c, &rt).await;
    assert_eq!(
        (ok.outcome, ok.output.as_str()),
        (Outcome::Success, "all good\n")
    );
    let fail = run_one(&exec_probe("fail"), &c, &rt).await;
    assert_eq!(
        (fail.outcome, fail.output.as_str()),
        (Outcome::Failure, "out err")
    );
    let slow = run_one(&exec_probe("slow"), &c, &rt).await;
    assert_eq!(
        (slow.outcome, slow.output.as_str()),
        (Outcome::Failure, "command \"slow\" timed out")
    );
    let gone = run_one(&exec_probe("gone"), &c, &rt).await;
    assert_eq!(gone.outcome, Outcome::Unknown);
    assert_eq!(
        gone.error.as_deref(),
        Some("rpc error: code = NotFound desc = container not found")
    );
    let requests = rt.execs.lock().unwrap().clone();
    assert_eq!(requests[0].container_id, "cid");
    assert_eq!(requests[0].timeout, 1);
}

#[tokio::test]
async fn exec_probe_expands_static_env_only() {
    let rt = FakeRuntime::default();
    rt.set_exec(|_| async { Ok(exec_ok("")) });
    let mut c = container("app");
    c.env = Some(vec![
        EnvVar {
            name: "FILE".into(),
            value: Some("/tmp/healthy".into()),
            value_from: None,
        },
        EnvVar {
            name: "SECRET".into(),
            value: None,
            value_from: Some(Default::default()),
        },
    ]);
    let spec = Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "cat".into(),
                "$(FILE)".into(),
                "$(SECRET)$(OTHER)$$(FILE)".into(),
            ]),
        }),
        ..Default::default()
    };
    run_one(&spec, &c, &rt).await;
    let cmd = rt.execs.lock().unwrap()[0].cmd.clone();
    assert_eq!(cmd, ["cat", "/tmp/healthy", "$(OTHER)$(FILE)"]);
}

#[tokio::test]
async fn errored_runs_are_retried_then_thrown_away_with_an_event() {
    let rt = FakeRuntime::default();
    rt.set_exec(|_| async { Err(Status::not_found("no such container")) });
    let c = container("app");
    let p = pod(vec![c.clone()]);
    let target = Target {
        runtime: &rt,
        pod: &p,
        container: &c,
        container_id: "cid",
        pod_ip: "",
    };
    let v = run::probe(ProbeKind::Liveness, &exec_probe("x"), &target).await;
    assert_eq!(rt.exec_count(), 3);
    assert_eq!(v.result, None);
    assert_eq!(
        v.event,
        Some((
            "Unhealthy",
            "Liveness probe errored and resulted in unknown state: rpc error: code = NotFound desc = no such container".to_string()
        ))
    );

    rt.set_exec(|_| async { Ok(exec_exit(2, "", "boom")) });
    let v = run::probe(ProbeKind::Readiness, &exec_probe("x"), &target).await;
    assert_eq!(v.result, Some(ProbeResult::Failure));
    assert_eq!(
        v.event,
        Some(("Unhealthy", "Readiness probe failed: boom".to_string()))
    );

    let missing = run::probe(ProbeKind::Startup, &Probe::default(), &target).await;
    assert_eq!(
        missing.event.map(|e| e.1),
        Some("Startup probe errored and resulted in unknown state: missing probe handler for web_default(uid-1):app".to_string())
    );
}

// ---- the manager on a paused clock ------------------------------------------------------------

/// Exit codes by command, changed by the test; every exec is timed.
#[derive(Clone, Default)]
struct Script {
    codes: Arc<Mutex<HashMap<String, i32>>>,
    runs: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Script {
    fn set(&self, cmd: &str, code: i32) {
        self.codes.lock().unwrap().insert(cmd.into(), code);
    }

    fn runs_of(&self, cmd: &str) -> Vec<Instant> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == cmd)
            .map(|(_, t)| *t)
            .collect()
    }

    fn runtime(&self) -> Arc<FakeRuntime> {
        let rt = FakeRuntime::default();
        let me = self.clone();
        rt.set_exec(move |req: api::ExecSyncRequest| {
            let me = me.clone();
            async move {
                let cmd = req.cmd[0].clone();
                me.runs.lock().unwrap().push((cmd.clone(), Instant::now()));
                let code = me.codes.lock().unwrap().get(&cmd).copied().unwrap_or(0);
                Ok(exec_exit(code, "", &format!("{cmd} exited {code}")))
            }
        });
        Arc::new(rt)
    }
}

fn manager(rt: Arc<FakeRuntime>) -> (ProbeManager, mpsc::UnboundedReceiver<ProbeNotice>) {
    ProbeManager::with_options(
        rt,
        ProbeOptions {
            start_jitter: false,
        },
    )
}

/// The next result change, skipping events.
async fn next_change(rx: &mut mpsc::UnboundedReceiver<ProbeNotice>) -> ResultChange {
    loop {
        match rx.recv().await {
            Some(ProbeNotice::Result(r)) => return r,
            Some(ProbeNotice::Event(_)) => {}
            None => panic!("notice channel closed"),
        }
    }
}

fn running() -> RunState {
    RunState::Running {
        started_at: SystemTime::now(),
    }
}

fn probed(name: &str, set: impl FnOnce(&mut Container)) -> Container {
    let mut c = container(name);
    set(&mut c);
    c
}

#[tokio::test(start_paused = true)]
async fn readiness_starts_false_and_follows_its_probe() {
    let script = Script::default();
    let (m, mut rx) = manager(script.runtime());
    let c = probed("app", |c| {
        c.readiness_probe = Some(Probe {
            period_seconds: Some(5),
            ..exec_probe("ready")
        })
    });
    m.add_pod(&pod(vec![c]));
    assert!(!m.ready("uid-1", "app"), "unknown container");
    m.update_container("uid-1", "app", "c1", running());

    let first = next_change(&mut rx).await;
    assert_eq!(
        (first.kind, first.result, first.message),
        (ProbeKind::Readiness, ProbeResult::Failure, None)
    );
    let up = next_change(&mut rx).await;
    assert_eq!(up.result, ProbeResult::Success);
    assert!(m.ready("uid-1", "app"));
    assert!(m.started("uid-1", "app"));

    script.set("ready", 1);
    let t0 = Instant::now();
    let down = next_change(&mut rx).await;
    assert_eq!(down.result, ProbeResult::Failure);
    assert_eq!(
        down.message.as_deref(),
        Some("Readiness probe failed: ready exited 1")
    );
    // Three failures in a row at a 5s period.
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited <= Duration::from_secs(15),
        "{waited:?}"
    );
    assert!(!m.ready("uid-1", "app"));

    m.update_container("uid-1", "app", "c1", RunState::Terminated);
    assert!(!m.ready("uid-1", "app"));
    m.remove_pod("uid-1");
}

#[tokio::test(start_paused = true)]
async fn liveness_failure_holds_probing_until_a_new_container() {
    let script = Script::default();
    script.set("live", 1);
    let (m, mut rx) = manager(script.runtime());
    let c = probed("app", |c| {
        c.liveness_probe = Some(Probe {
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..exec_probe("live")
        })
    });
    m.add_pod(&pod(vec![c]));
    m.update_container("uid-1", "app", "c1", running());

    let initial = next_change(&mut rx).await;
    assert_eq!(
        (initial.kind, initial.result),
        (ProbeKind::Liveness, ProbeResult::Success)
    );
    let mut unhealthy = 0;
    let failed = loop {
        match rx.recv().await.unwrap() {
            ProbeNotice::Event(e) => {
                assert_eq!((e.reason, e.event_type), ("Unhealthy", EventType::Warning));
                assert_eq!(e.message, "Liveness probe failed: live exited 1");
                unhealthy += 1;
            }
            ProbeNotice::Result(r) => break r,
        }
    };
    assert_eq!(unhealthy, 3);
    assert_eq!(
        (failed.result, failed.container_id.as_str()),
        (ProbeResult::Failure, "c1")
    );
    assert_eq!(
        m.result("c1", ProbeKind::Liveness),
        Some(ProbeResult::Failure)
    );
    let runs = script.runs_of("live");
    assert_eq!(runs[1] - runs[0], Duration::from_secs(10));
    assert_eq!(runs[2] - runs[1], Duration::from_secs(10));

    // On hold: no probing of the failed instance.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(script.runs_of("live").len(), 3);

    // The restarted container starts over from Success.
    script.set("live", 0);
    m.update_container("uid-1", "app", "c2", running());
    let restarted = next_change(&mut rx).await;
    assert_eq!(
        (restarted.container_id.as_str(), restarted.result),
        ("c2", ProbeResult::Success)
    );
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(script.runs_of("live").len() >= 5);
    assert_eq!(
        m.result("c1", ProbeKind::Liveness),
        None,
        "old instance forgotten"
    );
    m.remove_pod("uid-1");
}

#[tokio::test(start_paused = true)]
async fn startup_probe_gates_the_others() {
    let script = Script::default();
    script.set("start", 1);
    let (m, mut rx) = manager(script.runtime());
    let c = probed("app", |c| {
        c.startup_probe = Some(Probe {
            period_seconds: Some(1),
            failure_threshold: Some(30),
            ..exec_probe("start")
        });
        c.liveness_probe = Some(Probe {
            period_seconds: Some(1),
            ..exec_probe("live")
        });
        c.readiness_probe = Some(Probe {
            period_seconds: Some(1),
            ..exec_probe("ready")
        });
    });
    m.add_pod(&pod(vec![c]));
    m.update_container("uid-1", "app", "c1", running());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!m.started("uid-1", "app"));
    assert!(!m.ready("uid-1", "app"));
    assert!(script.runs_of("live").is_empty() && script.runs_of("ready").is_empty());
    assert!(script.runs_of("start").len() >= 5);

    script.set("start", 0);
    loop {
        let r = next_change(&mut rx).await;
        if r.kind == ProbeKind::Startup && r.result == ProbeResult::Success {
            break;
        }
    }
    assert!(m.started("uid-1", "app"));
    loop {
        let r = next_change(&mut rx).await;
        if r.kind == ProbeKind::Readiness && r.result == ProbeResult::Success {
            break;
        }
    }
    assert!(m.ready("uid-1", "app"));
    let starts = script.runs_of("start").len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        script.runs_of("start").len(),
        starts,
        "startup rests once passed"
    );
    assert!(!script.runs_of("live").is_empty());
    m.remove_pod("uid-1");
}

#[tokio::test(start_paused = true)]
async fn startup_failure_is_reported_for_a_restart() {
    let script = Script::default();
    script.set("start", 1);
    let (m, mut rx) = manager(script.runtime());
    let c = probed("app", |c| {
        c.startup_probe = Some(Probe {
            period_seconds: Some(2),
            failure_threshold: Some(2),
            termination_grace_period_seconds: Some(5),
            ..exec_probe("start")
        })
    });
    assert_eq!(
        probe_termination_grace_period(&c, ProbeKind::Startup),
        Some(5)
    );
    assert_eq!(
        probe_termination_grace_period(&c, ProbeKind::Liveness),
        None
    );
    m.add_pod(&pod(vec![c]));
    m.update_container("uid-1", "app", "c1", running());
    let initial = next_change(&mut rx).await;
    assert_eq!(initial.result, ProbeResult::Unknown);
    let failed = next_change(&mut rx).await;
    assert_eq!(
        (failed.kind, failed.result),
        (ProbeKind::Startup, ProbeResult::Failure)
    );
    assert_eq!(
        failed.message.as_deref(),
        Some("Startup probe failed: start exited 1")
    );
    m.remove_pod("uid-1");
}

#[tokio::test(start_paused = true)]
async fn initial_delay_counts_from_container_start() {
    let script = Script::default();
    let (m, mut rx) = manager(script.runtime());
    let c = probed("app", |c| {
        c.readiness_probe = Some(Probe {
            initial_delay_seconds: Some(30),
            period_seconds: Some(10),
            ..exec_probe("ready")
        })
    });
    m.add_pod(&pod(vec![c]));
    let t0 = Instant::now();
    // Started 12s ago by the runtime's clock.
    let started_at = SystemTime::now() - Duration::from_secs(12);
    m.update_container("uid-1", "app", "c1", RunState::Running { started_at });
    let _ = next_change(&mut rx).await;
    let up = next_change(&mut rx).await;
    assert_eq!(up.result, ProbeResult::Success);
    let first = script.runs_of("ready")[0] - t0;
    assert!(
        first >= Duration::from_secs(18) && first <= Duration::from_secs(20),
        "{first:?}"
    );
    m.remove_pod("uid-1");
}

#[tokio::test(start_paused = true)]
async fn success_threshold_needs_runs_in_a_row() {
    let script = Script::default();
    let (m, mut rx) = manager(script.runtime());
    let c = probed("app", |c| {
        c.readiness_probe = Some(Probe {
            period_seconds: Some(3),
            success_threshold: Some(3),
            ..exec_probe("ready")
        })
    });
    m.add_pod(&pod(vec![c]));
    m.update_container("uid-1", "app", "c1", running());
    let _ = next_change(&mut rx).await;
    let up = next_change(&mut rx).await;
    assert_eq!(up.result, ProbeResult::Success);
    assert_eq!(script.runs_of("ready").len(), 3);
    m.remove_pod("uid-1");
}

#[tokio::test(start_paused = true)]
async fn containers_without_probes_are_ready_once_running() {
    let script = Script::default();
    let (m, _rx) = manager(script.runtime());
    m.add_pod(&pod(vec![container("plain")]));
    assert!(!m.ready("uid-1", "plain"));
    m.update_container("uid-1", "plain", "c1", RunState::Waiting);
    assert!(!m.ready("uid-1", "plain") && !m.started("uid-1", "plain"));
    m.update_container("uid-1", "plain", "c1", running());
    assert!(m.ready("uid-1", "plain") && m.started("uid-1", "plain"));
}

#[tokio::test(start_paused = true)]
async fn removed_pods_stop_probing_and_sidecars_are_probed() {
    let script = Script::default();
    let (m, mut rx) = manager(script.runtime());
    let mut p = pod(vec![container("app")]);
    let sidecar = probed("proxy", |c| {
        c.restart_policy = Some("Always".into());
        c.readiness_probe = Some(Probe {
            period_seconds: Some(1),
            ..exec_probe("sidecar")
        });
    });
    let plain_init = probed("setup", |c| {
        c.readiness_probe = Some(exec_probe("init"));
    });
    p.spec.as_mut().unwrap().init_containers = Some(vec![plain_init, sidecar]);
    m.add_pod(&p);
    m.update_container("uid-1", "proxy", "s1", running());
    m.update_container("uid-1", "setup", "i1", running());
    loop {
        let r = next_change(&mut rx).await;
        if r.result == ProbeResult::Success {
            assert_eq!(r.container_name, "proxy");
            break;
        }
    }
    m.remove_pod("uid-1");
    let runs = script.runs_of("sidecar").len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(script.runs_of("sidecar").len(), runs);
    assert!(script.runs_of("init").is_empty());
    assert_eq!(m.result("s1", ProbeKind::Readiness), None);
}

#[tokio::test(start_paused = true)]
async fn stopping_liveness_keeps_readiness() {
    let script = Script::default();
    let (m, mut rx) = manager(script.runtime());
    let c = probed("app", |c| {
        c.liveness_probe = Some(Probe {
            period_seconds: Some(1),
            ..exec_probe("live")
        });
        c.readiness_probe = Some(Probe {
            period_seconds: Some(1),
            ..exec_probe("ready")
        });
    });
    m.add_pod(&pod(vec![c]));
    m.update_container("uid-1", "app", "c1", running());
    let _ = next_change(&mut rx).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    m.stop_liveness_and_startup("uid-1");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (live, ready) = (script.runs_of("live").len(), script.runs_of("ready").len());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(script.runs_of("live").len(), live);
    assert!(script.runs_of("ready").len() > ready);
    let keep = std::collections::HashSet::new();
    m.cleanup_pods(&keep);
    assert!(!m.ready("uid-1", "app"));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_manager_stops_its_workers() {
    let script = Script::default();
    let (m, _rx) = manager(script.runtime());
    let c = probed("app", |c| {
        c.liveness_probe = Some(Probe {
            period_seconds: Some(1),
            ..exec_probe("live")
        })
    });
    m.add_pod(&pod(vec![c]));
    m.update_container("uid-1", "app", "c1", running());
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(m);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let runs = script.runs_of("live").len();
    assert!(runs >= 3);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(script.runs_of("live").len(), runs);
}
