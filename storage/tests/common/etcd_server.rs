//! A real etcd (Debian's `/usr/bin/etcd`) on free loopback ports in a temp dir, for tests.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

const ETCD: &str = "/usr/bin/etcd";
/// Readiness polls before giving up on a start, with `POLL_INTERVAL` between them.
const READY_POLLS: u32 = 1500;
const POLL_INTERVAL: Duration = Duration::from_millis(20);
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
        let log = File::create(dir.path().join("etcd.log")).map_err(|e| e.to_string())?;
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
            .stderr(log);
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
        let child = command
            .spawn()
            .map_err(|e| format!("spawning {ETCD}: {e}"))?;
        let mut server = EtcdServer {
            child,
            endpoint: client,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let address = self.endpoint.trim_start_matches("http://").to_owned();
        for _ in 0..READY_POLLS {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "etcd exited with {status}: {}",
                    read_log(self.dir.path())
                ));
            }
            if healthy(&address) {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(format!(
            "etcd not healthy after {READY_POLLS} polls: {}",
            read_log(self.dir.path())
        ))
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

/// etcd serves `/health` over HTTP on its client port; it reports true once it has a leader
/// and can serve a read.
fn healthy(address: &str) -> bool {
    let Ok(mut conn) = TcpStream::connect(address) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

fn read_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
    let start = log.len().saturating_sub(4000);
    log.get(start..).unwrap_or(&log).to_owned()
}
