//! exec, attach, cp and port-forward with the real kubectl, through the apiserver and the
//! kubelet to containerd's streaming server, over both protocol families kubectl 1.32 has:
//! WebSocket (which the apiserver translates to SPDY, as upstream 1.30+) and SPDY.

use std::io::{BufRead, Read};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{self, phase, ready, Node, GUARD};

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.36.1-1";

/// kubectl's environment for each protocol family.
const FAMILIES: [(&str, [(&str, &str); 2]); 2] = [
    (
        "websocket",
        [
            ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true"),
            ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "true"),
        ],
    ),
    (
        "spdy",
        [
            ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
            ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
        ],
    ),
];

/// One kubectl run: its exit code and what it wrote.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let out = self.stdout();
        let shown: String = out.chars().take(2000).collect();
        write!(
            f,
            "exit {:?}\nstdout ({} bytes): {shown}\nstderr: {}",
            self.code,
            self.stdout.len(),
            self.stderr
        )
    }
}

fn kubectl_command(n: &Node, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new("/usr/bin/kubectl");
    cmd.env("KUBECONFIG", &n.server.kubeconfig)
        .env("HOME", n.server.dir.path())
        .arg(format!(
            "--cache-dir={}",
            n.server.dir.path().join("kube-cache").display()
        ))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs kubectl to the end, feeding it `stdin`.
async fn kubectl(n: &Node, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::from(kubectl_command(n, args, env));
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn kubectl");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
        });
    }
    let out = tokio::time::timeout(GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
        .expect("kubectl output");
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs kubectl on a pseudo-terminal of 33 rows and 77 columns; what it printed there.
async fn kubectl_on_a_terminal(
    n: &Node,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 33,
        ws_col: 77,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two new descriptors, which are owned from here on.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and nothing else owns them.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = kubectl_command(n, args, env);
    cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("spawn kubectl");
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once kubectl, the last holder of the terminal, is gone.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let code = tokio::time::timeout(
        GUARD,
        tokio::task::spawn_blocking(move || child.wait().expect("wait kubectl").code()),
    )
    .await
    .expect("kubectl on a terminal did not finish")
    .expect("wait task");
    let out = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
        .await
        .expect("join");
    (code, String::from_utf8_lossy(&out).into_owned())
}

fn status_of<'a>(
    p: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

/// Deterministic bytes of every value.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_and_cp_with_kubectl() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "shell"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "shell", "image": BUSYBOX, "command": ["sleep", "3600"]}],
            },
        }),
    )
    .await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "talker"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "talker",
                    "image": BUSYBOX,
                    "stdin": true,
                    "command": ["sh", "-c", "while read l; do echo \"got $l\"; done"],
                }],
            },
        }),
    )
    .await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "pair"},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]},
                    {"name": "done", "image": BUSYBOX, "command": ["true"]},
                ],
            },
        }),
    )
    .await;
    n.wait_pod("default", "shell", "shell Ready", |p| {
        phase(p) == "Running" && ready(p)
    })
    .await;
    n.wait_pod("default", "talker", "talker Ready", |p| {
        phase(p) == "Running" && ready(p)
    })
    .await;
    n.wait_pod("default", "pair", "pair's done container exited", |p| {
        let done = status_of(p, "done")
            .and_then(|s| s.state.as_ref())
            .is_some_and(|s| s.terminated.is_some());
        let main = status_of(p, "main")
            .and_then(|s| s.state.as_ref())
            .is_some_and(|s| s.running.is_some());
        done && main
    })
    .await;

    // kubectl 1.32 takes the WebSocket path on its own: v5, translated by the apiserver.
    let run = kubectl(&n, &["-v=4", "exec", "shell", "--", "true"], None, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr.contains("The subprotocol is v5.channel.k8s.io"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("RemoteCommand fallback"), "{run:?}");

    let files = tempfile::tempdir().expect("tempdir");
    for (family, env) in FAMILIES {
        // Exit codes, stdout and stderr apart.
        let run = kubectl(
            &n,
            &[
                "exec",
                "shell",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
            &env,
        )
        .await;
        assert_eq!(run.code, Some(3), "{family}: {run:?}");
        assert_eq!(run.stdout(), "out\n", "{family}: {run:?}");
        assert!(run.stderr.starts_with("err\n"), "{family}: {run:?}");
        assert!(
            run.stderr.contains("command terminated with exit code 3"),
            "{family}: {run:?}"
        );

        // Stdin round trip: every byte value, more than a SPDY window's worth.
        let data = pattern(200_000, 1);
        let run = kubectl(&n, &["exec", "-i", "shell", "--", "cat"], Some(&data), &env).await;
        assert_eq!(run.code, Some(0), "{family}: {run:?}");
        assert!(
            run.stdout == data,
            "{family}: cat gave back other bytes: {run:?}"
        );

        // Plenty of output.
        let run = kubectl(
            &n,
            &[
                "exec",
                "shell",
                "--",
                "sh",
                "-c",
                "yes 0123456789 | head -c 3000000",
            ],
            None,
            &env,
        )
        .await;
        assert_eq!(run.code, Some(0), "{family}: {run:?}");
        assert_eq!(run.stdout.len(), 3_000_000, "{family}");
        assert!(run.stdout.starts_with(b"0123456789\n0123456789\n"));

        // A terminal: the remote side has one, of the client's size (sent on the resize
        // stream; the loop only waits for the resize to land).
        let (code, screen) = kubectl_on_a_terminal(
            &n,
            &[
                "exec",
                "-it",
                "shell",
                "--",
                "sh",
                "-c",
                "tty; for i in 1 2 3 4 5 6 7 8 9 10; do s=$(stty size); [ \"$s\" = \"33 77\" ] && break; sleep 0.2; done; echo \"size $s\"",
            ],
            &env,
        )
        .await;
        assert_eq!(code, Some(0), "{family}: {screen}");
        assert!(screen.contains("/dev/pts/"), "{family}: {screen}");
        assert!(screen.contains("size 33 77"), "{family}: {screen}");

        // kubectl cp both ways: exec with tar.
        let local = files.path().join(format!("{family}-in"));
        let back = files.path().join(format!("{family}-out"));
        let contents = pattern(300_000, 2);
        std::fs::write(&local, &contents).expect("write file");
        let remote = format!("default/shell:/tmp/{family}");
        let run = kubectl(&n, &["cp", local.to_str().unwrap(), &remote], None, &env).await;
        assert_eq!(run.code, Some(0), "{family}: cp in: {run:?}");
        let run = kubectl(&n, &["cp", &remote, back.to_str().unwrap()], None, &env).await;
        assert_eq!(run.code, Some(0), "{family}: cp out: {run:?}");
        assert!(
            std::fs::read(&back).expect("copied back") == contents,
            "{family}: the file came back different"
        );

        // attach to a container reading its stdin.
        talk(&n, &["attach", "-i", "talker"], family, "got", &env).await;

        // A container of the spec that does not run: the kubelet's error, which the
        // translator reports as an internal error (as upstream's does).
        let run = kubectl(
            &n,
            &["exec", "pair", "-c", "done", "--", "true"],
            None,
            &env,
        )
        .await;
        assert_eq!(run.code, Some(1), "{family}: {run:?}");
        let want = match family {
            "websocket" => "error: Internal error occurred: unable to upgrade connection: container not found (\"done\")",
            _ => "error: unable to upgrade connection: container not found (\"done\")",
        };
        assert!(run.stderr.contains(want), "{family}: {run:?}");
    }

    // kubectl debug: an ephemeral container, attached to once it runs (after the loop
    // above: from here on, commands without -c mention the choice of container).
    for (family, env) in FAMILIES {
        let name = format!("debug-{family}");
        talk(
            &n,
            &[
                "debug",
                "-i",
                "shell",
                "--target=shell",
                "-c",
                &name,
                &format!("--image={BUSYBOX}"),
                "--",
                "sh",
                "-c",
                "while read l; do echo \"debugged $l\"; done",
            ],
            family,
            "debugged",
            &env,
        )
        .await;
    }

    // A container the pod does not have: the apiserver refuses before any upgrade.
    let run = kubectl(
        &n,
        &["exec", "shell", "-c", "nope", "--", "true"],
        None,
        &[],
    )
    .await;
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr
            .contains("container nope is not valid for pod shell"),
        "{run:?}"
    );

    // Straight to the kubelet through the node proxy: a pod it does not have is a 404.
    let run = kubectl(
        &n,
        &[
            "-v=8",
            "get",
            "--raw",
            "/api/v1/nodes/node-1/proxy/exec/default/ghost/main?command=true&output=1",
        ],
        None,
        &[],
    )
    .await;
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("404 Not Found"), "{run:?}");
    assert!(run.stderr.contains("pod does not exist"), "{run:?}");

    // Clients of the older WebSocket subprotocols (v4 here) are not translated: the
    // apiserver and the kubelet pass the session through to containerd, which speaks them.
    let (messages, head) = legacy_websocket_exec(&n, "v4.channel.k8s.io").await;
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: v4.channel.k8s.io"),
        "{head}"
    );
    let on = |channel: u8| -> Vec<u8> {
        messages
            .iter()
            .filter(|m| m.first() == Some(&channel))
            .flat_map(|m| m[1..].to_vec())
            .collect()
    };
    assert_eq!(on(1), b"legacy\n", "{messages:?}");
    let status: serde_json::Value = serde_json::from_slice(&on(3)).expect("status");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "2", "{status}");

    // /run: a command's output in one answer.
    let run = kubectl(
        &n,
        &[
            "create",
            "--raw",
            "/api/v1/nodes/node-1/proxy/run/default/shell/shell?cmd=echo%20ran%20it",
            "-f",
            "/dev/null",
        ],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout(), "ran it\n", "{run:?}");
}

/// Runs kubectl attached to a container that answers each line it reads with `answer`
/// and the line: a line in, its answer out, then stdin closes and kubectl detaches cleanly.
async fn talk(n: &Node, args: &[&str], family: &str, answer: &str, env: &[(&str, &str)]) {
    let mut cmd = tokio::process::Command::from(kubectl_command(n, args, env));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn kubectl attach");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let line = format!("hello-{family}");
    stdin
        .write_all(format!("{line}\n").as_bytes())
        .await
        .expect("write");
    let want = format!("{answer} {line}\n");
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains(&want) {
            let n = stdout.read(&mut buf).await.expect("read attach");
            assert!(
                n > 0,
                "attach ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(GUARD, read)
        .await
        .unwrap_or_else(|_| panic!("{family}: no answer through {args:?}"));
    drop(stdin);
    let out = tokio::time::timeout(GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{family}: {args:?} did not end with its stdin"))
        .expect("attach output");
    assert!(
        out.status.success(),
        "{family}: {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exec over a raw WebSocket offering only `protocol`, as clients before kubectl 1.30
/// (and kube-rs) do: the messages the server sent until it closed, and the response head.
async fn legacy_websocket_exec(n: &Node, protocol: &str) -> (Vec<Vec<u8>>, String) {
    let pki = n.server.path("pki");
    let pem = |name: &str| std::fs::read(pki.join(name)).expect("pki file");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem("ca.crt").as_slice()) {
        roots.add(c.expect("ca")).expect("add ca");
    }
    let certs = rustls_pemfile::certs(&mut pem("admin.crt").as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("admin cert");
    let key = rustls_pemfile::private_key(&mut pem("admin.key").as_slice())
        .expect("admin key")
        .expect("a key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .expect("client auth");
    let addr = n.server.url.trim_start_matches("https://").to_string();
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name"),
                tcp,
            )
            .await
            .expect("tls");
        let request = format!(
            "GET /api/v1/namespaces/default/pods/shell/exec?command=sh&command=-c&command=echo+legacy%3B+exit+2&container=shell&stdout=true&stderr=true HTTP/1.1\r\n\
             Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tls.read(&mut buf).await.expect("read head");
            assert!(n > 0, "no answer: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // The server's frames (unmasked, unfragmented here) until its close or the end.
        let mut rest = got[head_end..].to_vec();
        let mut rest_done = false;
        while !rest_done {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => rest_done = true,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
            if rest.windows(2).any(|w| w == [0x88, 0x02]) {
                rest_done = true;
            }
        }
        let mut messages = Vec::new();
        let mut at = 0;
        while at + 2 <= rest.len() {
            let opcode = rest[at] & 0x0f;
            let (len, skip) = match rest[at + 1] & 0x7f {
                126 if at + 4 <= rest.len() => (
                    usize::from(u16::from_be_bytes([rest[at + 2], rest[at + 3]])),
                    4,
                ),
                n if n < 126 => (usize::from(n), 2),
                _ => break,
            };
            if at + skip + len > rest.len() {
                break;
            }
            if opcode == 0x2 || opcode == 0x1 {
                messages.push(rest[at + skip..at + skip + len].to_vec());
            }
            at += skip + len;
        }
        (messages, head)
    };
    tokio::time::timeout(GUARD, exchange)
        .await
        .expect("legacy websocket exec")
}

/// A running `kubectl port-forward`, killed on drop.
struct PortForward {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn port_forward(
    n: &Node,
    args: &[&str],
    env: &[(&str, &str)],
    log: std::path::PathBuf,
) -> PortForward {
    let mut cmd = kubectl_command(n, args, env);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")));
    let mut child = cmd.spawn().expect("spawn kubectl port-forward");
    let stdout = child.stdout.take().expect("stdout");
    let find = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        // "Forwarding from 127.0.0.1:40123 -> 8080"
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let port = rest.split(' ').next().and_then(|p| p.parse::<u16>().ok());
                // The rest of stdout is drained so kubectl never blocks on it.
                std::thread::spawn(move || for _ in lines {});
                return port;
            }
        }
        None
    });
    let port = tokio::time::timeout(GUARD, find)
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten();
    let mut pf = PortForward {
        child,
        port: 0,
        log,
    };
    match port {
        Some(p) => pf.port = p,
        None => {
            let _ = pf.child.kill();
            let _ = pf.child.wait();
            panic!(
                "port-forward did not start: {}",
                std::fs::read_to_string(&pf.log).unwrap_or_default()
            );
        }
    }
    pf
}

/// An HTTP/1.0 GET through the forwarded port: the body.
async fn http_get(port: u16, path: &str) -> Vec<u8> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the forwarded port");
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: web\r\n\r\n").as_bytes())
            .await
            .expect("send request");
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.expect("read response");
        resp
    };
    let resp = tokio::time::timeout(GUARD, exchange)
        .await
        .expect("HTTP through port-forward");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {}", String::from_utf8_lossy(&resp)));
    let head = String::from_utf8_lossy(&resp[..split]);
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    resp[split + 4..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_with_kubectl() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "web",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", "mkdir -p /www && echo hello-pf > /www/index.html && yes 0123456789abcdef | head -c 1000000 > /www/big && exec httpd -f -p 8080 -h /www"],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                }],
            },
        }),
    )
    .await;
    n.wait_pod("default", "web", "web Ready", |p| {
        phase(p) == "Running" && ready(p)
    })
    .await;
    let big: Vec<u8> = b"0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take(1_000_000)
        .collect();
    let logs = tempfile::tempdir().expect("tempdir");
    for (family, env) in FAMILIES {
        let log = logs.path().join(format!("{family}.log"));
        let pf = port_forward(&n, &["-v=4", "port-forward", "pod/web", ":8080"], &env, log).await;
        for _ in 0..2 {
            assert_eq!(http_get(pf.port, "/").await, b"hello-pf\n", "{family}");
            assert!(
                http_get(pf.port, "/big").await == big,
                "{family}: /big differs"
            );
        }
        // Two connections at once, each its own pair of streams.
        let (a, b) = tokio::join!(http_get(pf.port, "/big"), http_get(pf.port, "/"));
        assert!(a == big && b == b"hello-pf\n", "{family}");
        let log = pf.log.clone();
        drop(pf);
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        // The WebSocket family tunnels, and never fell back to SPDY.
        if family == "websocket" {
            assert!(
                stderr.contains("Before WebSocket Upgrade Connection"),
                "{family}: {stderr}"
            );
        }
        assert!(
            !stderr.contains("fallback to secondary dialer"),
            "{family}: {stderr}"
        );
    }

    // A port nothing listens on: the connection is refused inside the pod and closed here.
    let log = logs.path().join("refused.log");
    let pf = port_forward(&n, &["port-forward", "pod/web", ":9"], &[], log).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", pf.port))
        .await
        .expect("connect");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(GUARD, s.read_to_end(&mut buf))
        .await
        .expect("the forwarded connection ends");
    assert!(buf.is_empty());
}

/// The hollow runtime has no processes: exec is refused with the runtime's own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_runtime_refuses_exec() {
    use kubelet::agent::{self, Network, NodeOptions};
    use kubelet::config::{Dirs, KubeletConfiguration};
    use kubelet::node::machine::Machine;
    use kubelet::runtime::hollow::HollowRuntime;

    let server = ferrokube_testkit::TestServer::start().await;
    let client = server.client().await;
    let pki = server.path("pki");
    let issuer = kube_apiserver::pki::load_issuer(&pki).expect("issuer");
    let (cert, key) = kube_apiserver::pki::client_cert(
        &issuer,
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    )
    .expect("kubelet client cert");
    std::fs::write(pki.join("kubelet-client.crt"), cert).expect("write cert");
    std::fs::write(pki.join("kubelet-client.key"), key).expect("write key");
    server
        .app
        .kubelet
        .configure(&kube_apiserver::proxy::KubeletClientConfig {
            client_certificate: Some(pki.join("kubelet-client.crt")),
            client_key: Some(pki.join("kubelet-client.key")),
            preferred_address_types: vec!["InternalIP".into()],
            ..Default::default()
        })
        .expect("kubelet client config");
    let root = tempfile::tempdir().expect("root");
    let mut config = KubeletConfiguration {
        node_status_update_frequency: Duration::from_secs(1),
        ..Default::default()
    };
    config.port = 0;
    config.address = "127.0.0.1".into();
    config.authentication.x509.client_ca_file = pki.join("ca.crt").display().to_string();
    let (services, _services) = agent::services(client.clone());
    let _node = agent::start(
        client.clone(),
        Arc::new(HollowRuntime::new("10.128.0.0/24")),
        NodeOptions {
            name: "hollow-0".into(),
            node_ip: Some("127.0.0.1".into()),
            config,
            dirs: Dirs::new(root.path()),
            network: Network::None,
            pleg_period: Duration::from_millis(200),
            machine: Some(Machine::read(root.path())),
            services,
            serve: true,
        },
    )
    .await
    .expect("hollow node");
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {
            "nodeName": "hollow-0",
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
        },
    }))
    .expect("pod");
    pods.create(&Default::default(), &pod)
        .await
        .expect("create");
    let cond = |p: Option<&Pod>| p.is_some_and(|p| phase(p) == "Running");
    tokio::time::timeout(GUARD, kube::runtime::wait::await_condition(pods, "p", cond))
        .await
        .expect("pod Running")
        .expect("watch");
    for (family, env) in FAMILIES {
        let mut cmd = tokio::process::Command::new("/usr/bin/kubectl");
        cmd.env("KUBECONFIG", &server.kubeconfig)
            .env("HOME", server.dir.path())
            .args(["exec", "p", "--", "true"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(GUARD, cmd.output())
            .await
            .expect("kubectl exec ends")
            .expect("kubectl output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{family}: {stderr}");
        match family {
            "websocket" => assert!(
                stderr.contains("error: Internal error occurred: unable to upgrade connection: rpc error: code = Unimplemented desc = the hollow runtime has no processes to stream from"),
                "{family}: {stderr}"
            ),
            // The kubelet's text reaches kubectl as it is; kubectl reads `rpc error: ...`
            // as YAML, finds an empty Status in it and says no more, as with upstream.
            _ => assert!(stderr.contains("Error from server"), "{family}: {stderr}"),
        }
    }
}

#[test]
fn patterns_cover_every_byte() {
    let p = pattern(100_000, 1);
    let mut seen = [false; 256];
    for b in &p {
        seen[*b as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
}
