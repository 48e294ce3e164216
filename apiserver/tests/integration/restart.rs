//! The real binary killed with SIGKILL and started again on the same data: every
//! acknowledged write is there, and start-up on existing data works.

use std::process::{Child, Command, Stdio};

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

struct Apiserver(Child);

impl Drop for Apiserver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary; the receiver fires when it logs that it is serving (and closes if it
/// exits first).
fn start(dir: &std::path::Path, port: u16) -> (Apiserver, tokio::sync::oneshot::Receiver<()>) {
    let pki = dir.join("pki");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-apiserver"))
        .args([
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            &port.to_string(),
        ])
        .arg("--tls-cert-file")
        .arg(pki.join("apiserver.crt"))
        .arg("--tls-private-key-file")
        .arg(pki.join("apiserver.key"))
        .arg("--client-ca-file")
        .arg(pki.join("ca.crt"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kube-apiserver");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("serving on https://") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    (Apiserver(child), rx)
}

async fn client(dir: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(dir.join("pki/admin.kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Waits for the binary's "serving on" line (bounded: the test fails if it never comes).
async fn serving(rx: tokio::sync::oneshot::Receiver<()>) {
    match tokio::time::timeout(std::time::Duration::from_secs(60), rx).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("kube-apiserver exited before serving"),
        Err(_) => panic!("kube-apiserver did not start serving"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    kube_apiserver::pki::generate(&kube_apiserver::pki::PkiOptions {
        dir: dir.path().join("pki"),
        hosts: vec![],
        service_ip: "10.96.0.1".parse().unwrap(),
        server_url: format!("https://127.0.0.1:{port}"),
        cluster_name: "restart".into(),
        nodes: Vec::new(),
    })
    .unwrap();

    let mut acknowledged = Vec::new();
    {
        let (_server, up) = start(dir.path(), port);
        serving(up).await;
        let c = client(dir.path()).await;
        let api: Api<ConfigMap> = Api::namespaced(c, "default");
        for i in 0..50 {
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": format!("cm{i}")}, "data": {"i": i.to_string()}}),
            )
            .unwrap();
            let created = api.create(&PostParams::default(), &cm).await.unwrap();
            acknowledged.push((format!("cm{i}"), created.metadata.resource_version.unwrap()));
        }
        // Dropping the guard sends SIGKILL: no clean shutdown.
    }

    let (_server, up) = start(dir.path(), port);
    serving(up).await;
    let c = client(dir.path()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for (name, rv) in &acknowledged {
        let got = api.get(name).await.unwrap();
        assert_eq!(got.metadata.resource_version.as_ref(), Some(rv), "{name}");
    }
    let svc: Api<Service> = Api::namespaced(c, "default");
    assert_eq!(
        svc.get("kubernetes")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("10.96.0.1")
    );
}
