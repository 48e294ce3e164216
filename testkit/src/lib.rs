//! A real apiserver in the test process, on a free loopback port, with its own PKI and store,
//! driven by the real kubectl and by kube-rs.

pub mod containerd;
pub use containerd::{copy_log_until, Containerd};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use ferrokube_storage::Store;
use kube_apiserver::server::{self, App, Config};

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    pub app: Arc<App>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The result of one kubectl run.
pub struct Kubectl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    fn from(out: Output) -> Self {
        Kubectl {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless kubectl succeeded; returns stdout.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(
            self.ok,
            "kubectl {what} failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    pub fn expect_err(self, what: &str) -> String {
        assert!(
            !self.ok,
            "kubectl {what} should have failed:\nstdout: {}",
            self.stdout
        );
        self.stderr
    }
}

impl TestServer {
    /// A server on the embedded store in a fresh temp dir.
    pub async fn start() -> TestServer {
        Self::start_sized(kube_apiserver::watchcache::DEFAULT_HISTORY).await
    }

    /// A server whose watch caches keep only `history` events.
    pub async fn start_sized(history: usize) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let store = ferrokube_storage::embedded::EmbeddedStore::open(&data).expect("open store");
        Self::start_with(dir, store, history).await
    }

    /// A server whose configuration `edit` adjusts first (the ServiceAccount admission
    /// plugin, for one, is off by default here, as in upstream's integration tests).
    pub async fn start_configured(edit: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let store = ferrokube_storage::embedded::EmbeddedStore::open(&data).expect("open store");
        Self::start_edited(
            dir,
            store,
            kube_apiserver::watchcache::DEFAULT_HISTORY,
            edit,
        )
        .await
    }

    /// A server on the given store; `dir` holds the PKI and kubeconfig.
    pub async fn start_with(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        history: usize,
    ) -> TestServer {
        Self::start_edited(dir, store, history, |_| {}).await
    }

    async fn start_edited(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        history: usize,
        edit: impl FnOnce(&mut Config),
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("https://127.0.0.1:{}", addr.port());
        let pki = dir.path().join("pki");
        kube_apiserver::pki::generate(&kube_apiserver::pki::PkiOptions {
            dir: pki.clone(),
            hosts: vec![],
            service_ip: "10.96.0.1".parse().unwrap(),
            server_url: url.clone(),
            cluster_name: "test".into(),
            nodes: Vec::new(),
        })
        .expect("pki");
        let mut config = Config {
            tls_cert_file: pki.join("apiserver.crt"),
            tls_private_key_file: pki.join("apiserver.key"),
            client_ca_file: Some(pki.join("ca.crt")),
            token_auth_file: None,
            advertise_address: addr.to_string(),
            service_cluster_ip_range: "10.96.0.0/12".into(),
            service_node_port_range: (30000, 32767),
            compaction_interval: std::time::Duration::ZERO,
            watch_cache_size: history,
            event_ttl: std::time::Duration::ZERO,
            service_account: Default::default(),
            // Tests create pods without a controller making `default` accounts.
            disable_admission_plugins: vec!["ServiceAccount".into()],
        };
        edit(&mut config);
        let app = server::build(config, store).await.expect("build server");
        let serving = app.clone();
        let task = tokio::spawn(async move {
            let _ = server::serve(serving, listener).await;
        });
        TestServer {
            kubeconfig: pki.join("admin.kubeconfig"),
            dir,
            url,
            app,
            task,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs the real kubectl against this server (off the async runtime).
    pub async fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_with(args, None, &[]).await
    }

    /// Runs kubectl with stdin and extra environment.
    pub async fn kubectl_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Kubectl {
        let mut cmd = Command::new("/usr/bin/kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("kube-cache").display()
            ))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let input = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("spawn kubectl");
            if let Some(text) = input {
                use std::io::Write;
                let mut pipe = child.stdin.take().expect("stdin");
                pipe.write_all(text.as_bytes()).expect("write stdin");
            }
            Kubectl::from(child.wait_with_output().expect("kubectl output"))
        })
        .await
        .expect("kubectl task")
    }

    /// A kube-rs client with the admin credentials.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Writes a file into the test dir and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).expect("write file");
        p
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A real etcd (Debian's etcd-server) on free loopback ports in a temp dir, killed on drop.
pub struct Etcd {
    child: std::process::Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Etcd {
    pub async fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let mut child = Command::new("etcd")
            .args([
                "--data-dir",
                path_str(&dir.path().join("etcd")),
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--quota-backend-bytes",
                "8589934592",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start etcd (Debian etcd-server)");
        // etcd says when it has a leader and serves clients; the channel closes if it exits.
        let stderr = child.stderr.take().expect("etcd stderr");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut ready_tx = Some(ready_tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let ready = line.contains("ready to serve client requests")
                    || line.contains("serving client traffic");
                if ready {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let etcd = Etcd {
            child,
            endpoint,
            _dir: dir,
        };
        // Only a guard against an etcd that never gets ready.
        match tokio::time::timeout(std::time::Duration::from_secs(60), ready_rx).await {
            Ok(Ok(())) => etcd,
            Ok(Err(_)) => panic!("etcd exited before it was ready"),
            Err(_) => panic!("etcd was not ready within 60s"),
        }
    }

    /// An apiserver on this etcd.
    pub async fn apiserver(&self) -> TestServer {
        let store =
            ferrokube_storage::etcd::EtcdStore::connect(std::slice::from_ref(&self.endpoint), "")
                .await
                .expect("connect etcd store");
        TestServer::start_with(
            tempfile::tempdir().expect("tempdir"),
            store,
            kube_apiserver::watchcache::DEFAULT_HISTORY,
        )
        .await
    }
}
