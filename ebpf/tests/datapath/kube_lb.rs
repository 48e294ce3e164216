//! The real kube-lb binary serving one node of a test cluster: its programs on the node's
//! cgroup and interfaces, its maps pinned in a directory of its own.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use ferrokube_testkit::TestServer;

use crate::net::{Cluster, Node};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub struct KubeLb {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    pub bpf_dir: PathBuf,
    args: Vec<String>,
}

impl KubeLb {
    /// Starts kube-lb for `node` and waits for its first full sync.
    pub async fn start(server: &TestServer, cluster: &Cluster, node: &Node) -> KubeLb {
        let bpf_dir = PathBuf::from(format!("/sys/fs/bpf/{}-{}", cluster.id, node.name));
        let args: Vec<String> = vec![
            "--kubeconfig".into(),
            server.kubeconfig.display().to_string(),
            "--hostname-override".into(),
            node.name.clone(),
            "--cgroup-path".into(),
            node.cgroup.path.display().to_string(),
            "--bpf-dir".into(),
            bpf_dir.display().to_string(),
            "--netns".into(),
            node.netns.path().display().to_string(),
            "--metrics-bind-address".into(),
            format!("127.0.0.1:{}", free_port()),
        ];
        let mut lb = KubeLb::spawn(args, bpf_dir);
        lb.until("initial sync done").await;
        lb
    }

    fn spawn(args: Vec<String>, bpf_dir: PathBuf) -> KubeLb {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kube-lb"))
            .args(&args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kube-lb");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("kube-lb: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        KubeLb {
            child,
            lines,
            bpf_dir,
            args,
        }
    }

    /// The next log line containing every one of `parts`.
    pub async fn until_all(&mut self, parts: &[&str]) -> String {
        while let Some(line) = self.lines.recv().await {
            if parts.iter().all(|p| line.contains(p)) {
                return line;
            }
        }
        panic!("kube-lb exited while waiting for {parts:?}");
    }

    pub async fn until(&mut self, part: &str) -> String {
        self.until_all(&[part]).await
    }

    /// Waits until the maps hold `service` with the given frontends (`10.96.0.10:80/tcp=2`).
    pub async fn synced(&mut self, service: &str, frontends: &[&str]) {
        let head = format!("synced {service} ");
        let mut parts = vec![head.as_str()];
        parts.extend_from_slice(frontends);
        self.until_all(&parts).await;
    }

    /// What its /metrics serves.
    pub async fn metrics(&self) -> String {
        let i = self
            .args
            .iter()
            .position(|a| a == "--metrics-bind-address")
            .expect("flag");
        let url = format!("https://{}/metrics", self.args[i + 1]);
        let script = "import ssl, sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], \
            context=ssl._create_unverified_context()).read().decode())";
        let out = tokio::process::Command::new("python3")
            .args(["-c", script, &url])
            .output()
            .await
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills this kube-lb; its pinned maps and TC links stay.
    pub fn stop(mut self) -> Stopped {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Stopped {
            args: std::mem::take(&mut self.args),
            // Taken, so that dropping this one leaves the pins for the next.
            bpf_dir: std::mem::take(&mut self.bpf_dir),
        }
    }
}

/// A killed kube-lb whose pins are still in place.
pub struct Stopped {
    args: Vec<String>,
    bpf_dir: PathBuf,
}

impl Stopped {
    /// Starts the next kube-lb on the same pins and waits for its first full sync.
    pub async fn start(mut self) -> KubeLb {
        let args = std::mem::take(&mut self.args);
        let bpf_dir = std::mem::take(&mut self.bpf_dir);
        let mut next = KubeLb::spawn(args, bpf_dir);
        next.until("initial sync done").await;
        next
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.bpf_dir.as_os_str().is_empty() {
            let _ = kube_lb::datapath::unpin(&self.bpf_dir);
        }
    }
}

impl Drop for KubeLb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.bpf_dir.as_os_str().is_empty() {
            let _ = kube_lb::datapath::unpin(&self.bpf_dir);
        }
    }
}
