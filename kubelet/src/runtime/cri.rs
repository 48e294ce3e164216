//! The real runtime: CRI v1 over a unix socket (containerd's `--address`).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use super::{api, Runtime};

pub struct CriRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// `unix:///run/containerd/containerd.sock` or a bare path, as upstream's
/// `--container-runtime-endpoint` accepts.
pub fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

impl CriRuntime {
    /// Connects lazily: the first call dials the socket, and a runtime that restarts is
    /// re-dialled on the next call.
    pub fn connect(endpoint: &str) -> anyhow::Result<CriRuntime> {
        let path = socket_path(endpoint);
        // The URI is required by tonic but never used: the connector dials the socket.
        let channel = Endpoint::try_from("http://[::1]:0")?
            .connect_with_connector_lazy(tower::service_fn(move |_| dial(path.clone())));
        // Image pulls of large images carry big responses; lift tonic's 4 MiB default.
        let max = 16 * 1024 * 1024;
        Ok(CriRuntime {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(max),
            images: ImageServiceClient::new(channel).max_decoding_message_size(max),
        })
    }
}

async fn dial(path: PathBuf) -> std::io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(Path::new(&path)).await?))
}

/// Forwards each call to the runtime or image service client.
macro_rules! forward {
    ($($method:ident($req:ident) -> $resp:ident;)*) => {
        #[async_trait]
        impl Runtime for CriRuntime {
            $(
                async fn $method(&self, req: api::$req) -> Result<api::$resp, Status> {
                    forward!(@call self, $method, req)
                }
            )*
        }
    };
    (@call $self:ident, list_images, $req:ident) => { $self.images.clone().list_images($req).await.map(|r| r.into_inner()) };
    (@call $self:ident, image_status, $req:ident) => { $self.images.clone().image_status($req).await.map(|r| r.into_inner()) };
    (@call $self:ident, pull_image, $req:ident) => { $self.images.clone().pull_image($req).await.map(|r| r.into_inner()) };
    (@call $self:ident, remove_image, $req:ident) => { $self.images.clone().remove_image($req).await.map(|r| r.into_inner()) };
    (@call $self:ident, image_fs_info, $req:ident) => { $self.images.clone().image_fs_info($req).await.map(|r| r.into_inner()) };
    (@call $self:ident, $method:ident, $req:ident) => { $self.runtime.clone().$method($req).await.map(|r| r.into_inner()) };
}

crate::for_each_cri_call!(forward);
