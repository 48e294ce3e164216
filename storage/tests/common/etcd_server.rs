//! A real etcd (Debian's `/usr/bin/etcd`) on free loopback ports in a temp dir, for tests.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

const ETCD: &str = "/usr/bin/etcd";
/// What etcd logs once it has a leader and serves clients: capnslog's wording, and zap's
/// (which etcd 3.4 logs only after its server is ready).
const READY_LINES: [&str; 2] = ["ready to serve client requests", "serving client traffic"];
/// Only a guard against an etcd that never gets ready; nothing waits this long normally.
const READY_GUARD: Duration = Duration::from_secs(60);
/// Starts retried with fresh ports, in case another process took a port between our probe
/// and etcd's bind.
const START_ATTEMPTS: u32 = 3;

pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    dir: TempDir,
}

impl EtcdServer {
    /// Starts etcd and returns once it answers its health check.
    pub fn start() -> EtcdServer {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start() {
                Ok(server) => return server,
                Err(e) => failures.push(e),
            }
        }
        panic!("etcd did not start: {failures:#?}");
    }

    fn try_start() -> Result<EtcdServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("ferrokube-etcd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let client = format!("http://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let mut log = File::create(dir.path().join("etcd.log")).map_err(|e| e.to_string())?;
        let mut command = Command::new(ETCD);
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // If the test process dies without running its cleanup (killed, or aborted), the
        // kernel kills etcd with it. The signal follows the spawning thread, which is why the
        // shared server is spawned from a thread that never exits.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("spawning {ETCD}: {e}"))?;
        // etcd's log goes to a file through this thread, which also tells us when etcd says
        // it is ready; the channel closes if etcd exits first.
        let stderr = child.stderr.take().ok_or("etcd stderr")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if READY_LINES.iter().any(|r| line.contains(r)) {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let server = EtcdServer {
            child,
            endpoint: client,
            dir,
        };
        match ready_rx.recv_timeout(READY_GUARD) {
            Ok(()) => Ok(server),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(format!("etcd exited: {}", read_log(server.dir.path())))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "etcd not ready within {READY_GUARD:?}: {}",
                read_log(server.dir.path())
            )),
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The endpoint of one etcd shared by every test in this binary that does not compact (a
/// compaction is cluster-wide). Started on first use; killed, and its dir removed, at exit.
pub fn shared_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(EtcdServer::start));
            loop {
                std::thread::park();
            }
        });
        let server = match rx.recv() {
            Ok(Ok(server)) => server,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("etcd starter thread died"),
        };
        let endpoint = server.endpoint.clone();
        *SHARED.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
        // SAFETY: registers a plain function with no captured state.
        unsafe {
            libc::atexit(stop_shared);
        }
        endpoint
    })
}

static SHARED: Mutex<Option<EtcdServer>> = Mutex::new(None);

extern "C" fn stop_shared() {
    if let Ok(mut shared) = SHARED.lock() {
        shared.take();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn read_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
    let start = log.len().saturating_sub(4000);
    log.get(start..).unwrap_or(&log).to_owned()
}
