//! A real containerd for kubelet tests: its own root, state dir, socket and CNI config dir in
//! a temp dir, with the project's pause and busybox images imported (hack/images.sh builds
//! them). Dropping it kills every container it ran and removes what it left on the host.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static INSTANCES: AtomicU32 = AtomicU32::new(0);

pub struct Containerd {
    pub dir: tempfile::TempDir,
    /// The CRI socket, as the kubelet's `--container-runtime-endpoint` takes it.
    pub socket: PathBuf,
    /// Where containerd looks for CNI network configs (the kubelet writes one).
    pub cni_conf_dir: PathBuf,
    /// A bridge name and pod range no other instance on this machine uses.
    pub bridge: String,
    pub pod_cidr: String,
    child: Option<Child>,
}

/// containerd's event stream, one line per event: `<time> <namespace> <topic> <json>`.
pub struct Events {
    child: Child,
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Events {
    /// The next event whose line satisfies `cond` (events before it are skipped).
    pub async fn until(&mut self, cond: impl Fn(&str) -> bool) -> String {
        while let Some(line) = self.rx.recv().await {
            if cond(&line) {
                return line;
            }
        }
        panic!("containerd's event stream ended");
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a child's output to `path` line by line and resolves once a line contains
/// `marker`; fails if the output ends first (the child exited).
pub fn copy_log_until(
    from: impl std::io::Read + Send + 'static,
    path: PathBuf,
    marker: &'static str,
) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(&path).expect("log file");
        let mut tx = Some(tx);
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            if line.contains(marker) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    rx
}

/// The image archives hack/images.sh builds.
pub fn image_archives() -> Vec<PathBuf> {
    let dir = std::env::var_os("FERROKUBE_IMAGES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/images"),
        PathBuf::from,
    );
    let archives: Vec<PathBuf> = ["pause.tar", "busybox.tar"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    for a in &archives {
        assert!(
            a.exists(),
            "{} is missing: run hack/images.sh first",
            a.display()
        );
    }
    archives
}

impl Containerd {
    pub async fn start() -> Containerd {
        let n = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("ferrokube-containerd-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let socket = root.join("containerd.sock");
        let cni_conf_dir = root.join("net.d");
        std::fs::create_dir_all(&cni_conf_dir).expect("cni conf dir");
        let config = root.join("config.toml");
        std::fs::write(&config, config_toml(root, &socket, &cni_conf_dir)).expect("config");
        let log_path = root.join("containerd.log");
        let mut child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("containerd (Debian package containerd) must be installed");
        let booted = copy_log_until(
            child.stderr.take().expect("stderr"),
            log_path.clone(),
            "containerd successfully booted",
        );
        let c = Containerd {
            socket,
            cni_conf_dir,
            bridge: format!("fkb{}n{n}", pid % 100_000),
            pod_cidr: format!("10.{}.{}.0/24", 200 + pid % 50, n % 250),
            child: Some(child),
            dir,
        };
        // containerd logs this line once every plugin is up and its sockets serve.
        if booted.await.is_err() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("containerd exited before it booted:\n{log}");
        }
        for archive in image_archives() {
            c.ctr(&["images", "import", path_str(&archive)]);
        }
        c
    }

    /// Follows containerd's event stream (`ctr events`) from now on: task exits, image
    /// removals... Subscribe before the action whose event a test waits for; it returns once
    /// the subscription is live.
    pub async fn events(&self) -> Events {
        let mut child = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .arg("events")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut events = Events { child, rx };
        // `ctr events` says nothing when its subscription starts, so prove it live with an
        // event of our own: a namespace label change. A marker sent before the subscription
        // took is lost, hence a fresh one per attempt.
        let ns = format!("fk-events-{}", std::process::id());
        let _ = self.try_ctr_plain(&["namespaces", "create", &ns]);
        for attempt in 0u32.. {
            let marker = format!("m{attempt}");
            let _ = self.try_ctr_plain(&["namespaces", "label", &ns, &format!("marker={marker}")]);
            let seen = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                events.until(|l| l.contains("/namespaces/update") && l.contains(&marker)),
            )
            .await;
            if seen.is_ok() {
                break;
            }
        }
        events
    }

    fn try_ctr_plain(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The endpoint string the kubelet takes.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn try_ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `ctr` against this containerd in the CRI namespace; panics on failure.
    pub fn ctr(&self, args: &[&str]) -> String {
        self.try_ctr(args)
            .unwrap_or_else(|e| panic!("ctr {args:?} failed: {e}"))
    }

    /// Ids of the tasks (running containers and sandboxes) containerd has.
    pub fn task_ids(&self) -> Vec<String> {
        self.try_ctr(&["tasks", "ls", "-q"])
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn cleanup(&mut self) {
        // Containers outlive containerd and its shims, so kill them through it first.
        for id in self.task_ids() {
            let _ = self.try_ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", &id]);
            let _ = self.try_ctr(&["tasks", "delete", "-f", &id]);
        }
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        kill_shims(&self.socket);
        unmount_under(self.dir.path());
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn config_toml(root: &Path, socket: &Path, cni_conf_dir: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}/root"
state = "{root}/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # Tests and CI run in a sandbox that may not lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#,
        root = root.display(),
        socket = socket.display(),
        cni = cni_conf_dir.display(),
    )
}

/// Shims name the containerd they serve in their command line.
fn kill_shims(socket: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let needle = socket.display().to_string();
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("containerd-shim") && cmd.contains(&needle) {
            // SAFETY: kill(2) on a process we identified by its command line.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Detaches every mount below `dir` (overlay rootfs, shm, netns), deepest first.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount")
            .args(["-l", p])
            .stderr(Stdio::null())
            .status();
    }
}
