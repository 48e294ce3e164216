//! A runtime for unit tests of probes, hooks and image pulls: `exec_sync` answers through a
//! handler the test sets, images live in an in-memory store fed by an in-memory registry, and
//! every other call is unimplemented.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Status;

use crate::images::normalize_image;
use crate::runtime::{api, Runtime};

pub(crate) type ExecHandler = Arc<
    dyn Fn(api::ExecSyncRequest) -> BoxFuture<'static, Result<api::ExecSyncResponse, Status>>
        + Send
        + Sync,
>;

/// An image a fake registry serves, and the credentials it wants (`None`: anyone).
#[derive(Clone)]
pub(crate) struct RemoteImage {
    pub id: String,
    pub size: u64,
    pub credentials: Option<(String, String)>,
}

#[derive(Default)]
pub(crate) struct FakeRuntime {
    pub exec: Mutex<Option<ExecHandler>>,
    pub execs: Mutex<Vec<api::ExecSyncRequest>>,
    /// Local images by normalised reference.
    pub images: Mutex<HashMap<String, api::Image>>,
    /// What pulls can fetch, by normalised reference.
    pub registry: Mutex<HashMap<String, RemoteImage>>,
    pub pulls: Mutex<Vec<api::PullImageRequest>>,
    /// When set, every pull fails with it.
    pub pull_error: Mutex<Option<Status>>,
    pub image_status_error: Mutex<Option<Status>>,
}

impl FakeRuntime {
    pub(crate) fn set_exec<F, Fut>(&self, f: F)
    where
        F: Fn(api::ExecSyncRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<api::ExecSyncResponse, Status>> + Send + 'static,
    {
        let handler: ExecHandler = Arc::new(move |req| Box::pin(f(req)));
        *self.exec.lock().unwrap() = Some(handler);
    }

    pub(crate) fn exec_count(&self) -> usize {
        self.execs.lock().unwrap().len()
    }

    async fn exec_sync_impl(
        &self,
        req: api::ExecSyncRequest,
    ) -> Result<api::ExecSyncResponse, Status> {
        self.execs.lock().unwrap().push(req.clone());
        let handler = self.exec.lock().unwrap().clone();
        match handler {
            Some(h) => h(req).await,
            None => Err(Status::unimplemented("exec_sync")),
        }
    }

    async fn image_status_impl(
        &self,
        req: api::ImageStatusRequest,
    ) -> Result<api::ImageStatusResponse, Status> {
        if let Some(e) = self.image_status_error.lock().unwrap().clone() {
            return Err(e);
        }
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let key = normalize_image(&name).map_err(Status::invalid_argument)?;
        Ok(api::ImageStatusResponse {
            image: self.images.lock().unwrap().get(&key).cloned(),
            info: HashMap::new(),
        })
    }

    async fn pull_image_impl(
        &self,
        req: api::PullImageRequest,
    ) -> Result<api::PullImageResponse, Status> {
        self.pulls.lock().unwrap().push(req.clone());
        if let Some(e) = self.pull_error.lock().unwrap().clone() {
            return Err(e);
        }
        let name = req
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let key = normalize_image(&name).map_err(Status::invalid_argument)?;
        let remote = self.registry.lock().unwrap().get(&key).cloned();
        let Some(remote) = remote else {
            return Err(Status::not_found(format!(
                "failed to pull and unpack image \"{key}\": not found"
            )));
        };
        if let Some((user, pass)) = &remote.credentials {
            let auth = req.auth.unwrap_or_default();
            if &auth.username != user || &auth.password != pass {
                return Err(Status::unknown(format!(
                    "failed to pull and unpack image \"{key}\": 401 Unauthorized"
                )));
            }
        }
        let image = api::Image {
            id: remote.id.clone(),
            repo_tags: vec![key.clone()],
            size: remote.size,
            ..Default::default()
        };
        self.images.lock().unwrap().insert(key, image);
        Ok(api::PullImageResponse {
            image_ref: remote.id,
        })
    }
}

macro_rules! fake_calls {
    ($($method:ident($req:ident) -> $resp:ident;)*) => {
        #[async_trait]
        impl Runtime for FakeRuntime {
            $(
                async fn $method(&self, req: api::$req) -> Result<api::$resp, Status> {
                    fake_calls!(@call self, $method, req)
                }
            )*
        }
    };
    (@call $self:ident, exec_sync, $req:ident) => { $self.exec_sync_impl($req).await };
    (@call $self:ident, image_status, $req:ident) => { $self.image_status_impl($req).await };
    (@call $self:ident, pull_image, $req:ident) => { $self.pull_image_impl($req).await };
    (@call $self:ident, $method:ident, $req:ident) => {{
        let _ = $req;
        Err(Status::unimplemented(stringify!($method)))
    }};
}

crate::for_each_cri_call!(fake_calls);

pub(crate) fn exec_ok(stdout: &str) -> api::ExecSyncResponse {
    api::ExecSyncResponse {
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
        exit_code: 0,
    }
}

pub(crate) fn exec_exit(code: i32, stdout: &str, stderr: &str) -> api::ExecSyncResponse {
    api::ExecSyncResponse {
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
        exit_code: code,
    }
}

/// A minimal HTTP server: each request's head goes to `reply`, whose answer is written back
/// raw; `None` keeps the connection open without answering.
pub(crate) async fn http_server<F>(reply: F) -> (u16, Arc<Mutex<Vec<String>>>)
where
    F: Fn(&str, u16) -> Option<String> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reply = Arc::new(reply);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                log.lock().unwrap().push(head.clone());
                match reply(&head, port) {
                    Some(resp) => {
                        let _ = conn.write_all(resp.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    }
                    // No answer: hold the connection until the client gives up and closes it.
                    None => {
                        let mut rest = [0u8; 512];
                        while matches!(conn.read(&mut rest).await, Ok(n) if n > 0) {}
                    }
                }
            });
        }
    });
    (port, seen)
}

pub(crate) fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

pub(crate) fn request_path(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub(crate) async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}
