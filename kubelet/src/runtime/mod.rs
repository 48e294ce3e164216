//! The container runtime as the kubelet sees it: CRI v1's RuntimeService and ImageService.
//! The kubelet is written against this trait only, so the real runtime (containerd over its
//! socket, [`cri::CriRuntime`]) and the in-memory one for scale runs ([`hollow`]) run the same
//! kubelet code above them.

pub mod cri;
pub mod hollow;

use async_trait::async_trait;
pub use k8s_cri::v1 as api;
use tonic::Status;

/// Declares the trait from one list of CRI calls, so the real client and the hollow runtime
/// cannot drift from the wire API.
macro_rules! runtime_calls {
    ($($method:ident($req:ident) -> $resp:ident;)*) => {
        #[async_trait]
        pub trait Runtime: Send + Sync + 'static {
            $(async fn $method(&self, req: api::$req) -> Result<api::$resp, Status>;)*
        }
    };
}

/// Every CRI call the kubelet makes.
#[macro_export]
#[doc(hidden)]
macro_rules! for_each_cri_call {
    ($m:ident) => {
        $m! {
            version(VersionRequest) -> VersionResponse;
            status(StatusRequest) -> StatusResponse;
            update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
            run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
            stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
            remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
            pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
            list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
            create_container(CreateContainerRequest) -> CreateContainerResponse;
            start_container(StartContainerRequest) -> StartContainerResponse;
            stop_container(StopContainerRequest) -> StopContainerResponse;
            remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
            list_containers(ListContainersRequest) -> ListContainersResponse;
            container_status(ContainerStatusRequest) -> ContainerStatusResponse;
            update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
            reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
            exec_sync(ExecSyncRequest) -> ExecSyncResponse;
            exec(ExecRequest) -> ExecResponse;
            attach(AttachRequest) -> AttachResponse;
            port_forward(PortForwardRequest) -> PortForwardResponse;
            list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
            list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
            list_images(ListImagesRequest) -> ListImagesResponse;
            image_status(ImageStatusRequest) -> ImageStatusResponse;
            pull_image(PullImageRequest) -> PullImageResponse;
            remove_image(RemoveImageRequest) -> RemoveImageResponse;
            image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
        }
    };
}

for_each_cri_call!(runtime_calls);
