//! The hollow runtime: sandboxes and containers that exist only in memory. A container is
//! running the moment it starts and never exits unless stopped, images are always present,
//! and exec commands succeed with no output. The kubelet above it is the real one, so a
//! process can run hundreds of hollow nodes against a real control plane.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use tonic::Status;

use super::{api, Runtime};

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, api::PodSandboxStatus>,
    containers: HashMap<String, (String, api::ContainerStatus)>,
    next_ip: u32,
}

pub struct HollowRuntime {
    state: Mutex<State>,
    ids: AtomicU64,
    /// The first address pods get; later ones count up from it.
    base_ip: u32,
    /// How many addresses the pod range holds.
    ip_count: u32,
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

impl HollowRuntime {
    /// A runtime handing out pod IPs from `pod_cidr` (IPv4 `a.b.c.d/n`); a bad range falls
    /// back to 10.0.0.0/8, as the addresses are never routed anyway.
    pub fn new(pod_cidr: &str) -> HollowRuntime {
        let (base, prefix) = pod_cidr
            .split_once('/')
            .and_then(|(ip, n)| Some((ip.parse::<Ipv4Addr>().ok()?, n.parse::<u32>().ok()?)))
            .filter(|(_, n)| *n <= 30)
            .unwrap_or((Ipv4Addr::new(10, 0, 0, 0), 8));
        HollowRuntime {
            state: Mutex::default(),
            ids: AtomicU64::new(1),
            base_ip: u32::from(base) + 2,
            ip_count: (1u32 << (32 - prefix)) - 3,
        }
    }

    fn id(&self) -> String {
        format!("{:064x}", self.ids.fetch_add(1, Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn matches_labels(want: &HashMap<String, String>, have: &HashMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

#[async_trait]
impl Runtime for HollowRuntime {
    async fn version(&self, _: api::VersionRequest) -> Result<api::VersionResponse, Status> {
        Ok(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "hollow".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status(&self, _: api::StatusRequest) -> Result<api::StatusResponse, Status> {
        let ready = |t: &str| api::RuntimeCondition {
            r#type: t.into(),
            status: true,
            ..Default::default()
        };
        Ok(api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![ready("RuntimeReady"), ready("NetworkReady")],
            }),
            ..Default::default()
        })
    }

    async fn update_runtime_config(
        &self,
        _: api::UpdateRuntimeConfigRequest,
    ) -> Result<api::UpdateRuntimeConfigResponse, Status> {
        Ok(api::UpdateRuntimeConfigResponse {})
    }

    async fn run_pod_sandbox(
        &self,
        req: api::RunPodSandboxRequest,
    ) -> Result<api::RunPodSandboxResponse, Status> {
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("sandbox config is required"))?;
        let id = self.id();
        let mut st = self.lock();
        let offset = st.next_ip % self.ip_count.max(1);
        st.next_ip = st.next_ip.wrapping_add(1);
        let ip = Ipv4Addr::from(self.base_ip + offset).to_string();
        let host_network = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == api::NamespaceMode::Node as i32);
        st.sandboxes.insert(
            id.clone(),
            api::PodSandboxStatus {
                id: id.clone(),
                metadata: config.metadata,
                state: api::PodSandboxState::SandboxReady as i32,
                created_at: now_nanos(),
                network: (!host_network).then(|| api::PodSandboxNetworkStatus {
                    ip,
                    ..Default::default()
                }),
                labels: config.labels,
                annotations: config.annotations,
                runtime_handler: req.runtime_handler,
                ..Default::default()
            },
        );
        Ok(api::RunPodSandboxResponse { pod_sandbox_id: id })
    }

    async fn stop_pod_sandbox(
        &self,
        req: api::StopPodSandboxRequest,
    ) -> Result<api::StopPodSandboxResponse, Status> {
        let mut st = self.lock();
        if let Some(s) = st.sandboxes.get_mut(&req.pod_sandbox_id) {
            s.state = api::PodSandboxState::SandboxNotready as i32;
        }
        let finished = now_nanos();
        for (sandbox, c) in st.containers.values_mut() {
            if *sandbox == req.pod_sandbox_id
                && c.state == api::ContainerState::ContainerRunning as i32
            {
                c.state = api::ContainerState::ContainerExited as i32;
                c.finished_at = finished;
                c.exit_code = 137;
                c.reason = "Error".into();
            }
        }
        Ok(api::StopPodSandboxResponse {})
    }

    async fn remove_pod_sandbox(
        &self,
        req: api::RemovePodSandboxRequest,
    ) -> Result<api::RemovePodSandboxResponse, Status> {
        let mut st = self.lock();
        st.sandboxes.remove(&req.pod_sandbox_id);
        st.containers
            .retain(|_, (sandbox, _)| *sandbox != req.pod_sandbox_id);
        Ok(api::RemovePodSandboxResponse {})
    }

    async fn pod_sandbox_status(
        &self,
        req: api::PodSandboxStatusRequest,
    ) -> Result<api::PodSandboxStatusResponse, Status> {
        let st = self.lock();
        let status = st
            .sandboxes
            .get(&req.pod_sandbox_id)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!("sandbox {} not found", req.pod_sandbox_id))
            })?;
        Ok(api::PodSandboxStatusResponse {
            status: Some(status),
            ..Default::default()
        })
    }

    async fn list_pod_sandbox(
        &self,
        req: api::ListPodSandboxRequest,
    ) -> Result<api::ListPodSandboxResponse, Status> {
        let filter = req.filter.unwrap_or_default();
        let st = self.lock();
        let items = st
            .sandboxes
            .values()
            .filter(|s| filter.id.is_empty() || s.id == filter.id)
            .filter(|s| filter.state.as_ref().is_none_or(|f| f.state == s.state))
            .filter(|s| matches_labels(&filter.label_selector, &s.labels))
            .map(|s| api::PodSandbox {
                id: s.id.clone(),
                metadata: s.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
                runtime_handler: s.runtime_handler.clone(),
            })
            .collect();
        Ok(api::ListPodSandboxResponse { items })
    }

    async fn create_container(
        &self,
        req: api::CreateContainerRequest,
    ) -> Result<api::CreateContainerResponse, Status> {
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("container config is required"))?;
        let mut st = self.lock();
        if !st.sandboxes.contains_key(&req.pod_sandbox_id) {
            return Err(Status::not_found(format!(
                "sandbox {} not found",
                req.pod_sandbox_id
            )));
        }
        let id = self.id();
        let image = config.image.clone().unwrap_or_default();
        st.containers.insert(
            id.clone(),
            (
                req.pod_sandbox_id,
                api::ContainerStatus {
                    id: id.clone(),
                    metadata: config.metadata,
                    state: api::ContainerState::ContainerCreated as i32,
                    created_at: now_nanos(),
                    image_ref: format!("hollow/{}", image.image),
                    image: Some(image),
                    labels: config.labels,
                    annotations: config.annotations,
                    log_path: config.log_path,
                    ..Default::default()
                },
            ),
        );
        Ok(api::CreateContainerResponse { container_id: id })
    }

    async fn start_container(
        &self,
        req: api::StartContainerRequest,
    ) -> Result<api::StartContainerResponse, Status> {
        let mut st = self.lock();
        let (_, c) = st.containers.get_mut(&req.container_id).ok_or_else(|| {
            Status::not_found(format!("container {} not found", req.container_id))
        })?;
        if c.state != api::ContainerState::ContainerCreated as i32 {
            return Err(Status::failed_precondition(format!(
                "container {} is not in created state",
                req.container_id
            )));
        }
        c.state = api::ContainerState::ContainerRunning as i32;
        c.started_at = now_nanos();
        Ok(api::StartContainerResponse {})
    }

    async fn stop_container(
        &self,
        req: api::StopContainerRequest,
    ) -> Result<api::StopContainerResponse, Status> {
        let mut st = self.lock();
        if let Some((_, c)) = st.containers.get_mut(&req.container_id) {
            if c.state == api::ContainerState::ContainerRunning as i32 {
                c.state = api::ContainerState::ContainerExited as i32;
                c.finished_at = now_nanos();
                // A hollow process exits on SIGTERM, as a well-behaved one would.
                c.exit_code = 0;
                c.reason = "Completed".into();
            }
        }
        Ok(api::StopContainerResponse {})
    }

    async fn remove_container(
        &self,
        req: api::RemoveContainerRequest,
    ) -> Result<api::RemoveContainerResponse, Status> {
        self.lock().containers.remove(&req.container_id);
        Ok(api::RemoveContainerResponse {})
    }

    async fn list_containers(
        &self,
        req: api::ListContainersRequest,
    ) -> Result<api::ListContainersResponse, Status> {
        let filter = req.filter.unwrap_or_default();
        let st = self.lock();
        let containers = st
            .containers
            .values()
            .filter(|(_, c)| filter.id.is_empty() || c.id == filter.id)
            .filter(|(s, _)| filter.pod_sandbox_id.is_empty() || *s == filter.pod_sandbox_id)
            .filter(|(_, c)| filter.state.as_ref().is_none_or(|f| f.state == c.state))
            .filter(|(_, c)| matches_labels(&filter.label_selector, &c.labels))
            .map(|(s, c)| api::Container {
                id: c.id.clone(),
                pod_sandbox_id: s.clone(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
                ..Default::default()
            })
            .collect();
        Ok(api::ListContainersResponse { containers })
    }

    async fn container_status(
        &self,
        req: api::ContainerStatusRequest,
    ) -> Result<api::ContainerStatusResponse, Status> {
        let st = self.lock();
        let (_, c) = st.containers.get(&req.container_id).ok_or_else(|| {
            Status::not_found(format!("container {} not found", req.container_id))
        })?;
        Ok(api::ContainerStatusResponse {
            status: Some(c.clone()),
            ..Default::default()
        })
    }

    async fn update_container_resources(
        &self,
        _: api::UpdateContainerResourcesRequest,
    ) -> Result<api::UpdateContainerResourcesResponse, Status> {
        Ok(api::UpdateContainerResourcesResponse {})
    }

    async fn reopen_container_log(
        &self,
        _: api::ReopenContainerLogRequest,
    ) -> Result<api::ReopenContainerLogResponse, Status> {
        Ok(api::ReopenContainerLogResponse {})
    }

    async fn exec_sync(&self, req: api::ExecSyncRequest) -> Result<api::ExecSyncResponse, Status> {
        let st = self.lock();
        match st.containers.get(&req.container_id) {
            Some((_, c)) if c.state == api::ContainerState::ContainerRunning as i32 => {
                Ok(api::ExecSyncResponse::default())
            }
            _ => Err(Status::not_found(format!(
                "container {} is not running",
                req.container_id
            ))),
        }
    }

    async fn exec(&self, _: api::ExecRequest) -> Result<api::ExecResponse, Status> {
        Err(Status::unimplemented(
            "the hollow runtime has no processes to stream from",
        ))
    }

    async fn attach(&self, _: api::AttachRequest) -> Result<api::AttachResponse, Status> {
        Err(Status::unimplemented(
            "the hollow runtime has no processes to stream from",
        ))
    }

    async fn port_forward(
        &self,
        _: api::PortForwardRequest,
    ) -> Result<api::PortForwardResponse, Status> {
        Err(Status::unimplemented(
            "the hollow runtime has no network to forward into",
        ))
    }

    async fn list_container_stats(
        &self,
        _: api::ListContainerStatsRequest,
    ) -> Result<api::ListContainerStatsResponse, Status> {
        Ok(api::ListContainerStatsResponse::default())
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: api::ListPodSandboxStatsRequest,
    ) -> Result<api::ListPodSandboxStatsResponse, Status> {
        Ok(api::ListPodSandboxStatsResponse::default())
    }

    async fn list_images(
        &self,
        _: api::ListImagesRequest,
    ) -> Result<api::ListImagesResponse, Status> {
        Ok(api::ListImagesResponse::default())
    }

    async fn image_status(
        &self,
        req: api::ImageStatusRequest,
    ) -> Result<api::ImageStatusResponse, Status> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        Ok(api::ImageStatusResponse {
            image: Some(api::Image {
                id: format!("hollow/{name}"),
                repo_tags: vec![name],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn pull_image(
        &self,
        req: api::PullImageRequest,
    ) -> Result<api::PullImageResponse, Status> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        Ok(api::PullImageResponse {
            image_ref: format!("hollow/{name}"),
        })
    }

    async fn remove_image(
        &self,
        _: api::RemoveImageRequest,
    ) -> Result<api::RemoveImageResponse, Status> {
        Ok(api::RemoveImageResponse {})
    }

    async fn image_fs_info(
        &self,
        _: api::ImageFsInfoRequest,
    ) -> Result<api::ImageFsInfoResponse, Status> {
        Ok(api::ImageFsInfoResponse::default())
    }
}
