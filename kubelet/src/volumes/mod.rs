//! Pod volumes on the node, laid out as upstream's kubelet lays them out:
//! `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<volume>` for the volumes the kubelet
//! makes (emptyDir, configMap, secret, downwardAPI, projected), while hostPath and
//! claim-backed volumes are used where they are on the host.
//!
//! [`mount_all`] is idempotent and meant to run on every pod sync: that is how changes to
//! ConfigMaps, Secrets, labels and tokens reach running pods.

mod api_content;
pub mod atomic_writer;
mod configmap;
mod downward_api;
mod empty_dir;
mod error;
mod host_path;
mod mount;
mod ownership;
mod projected;
mod pvc;
mod quote;
mod secret;
pub mod subpath;
pub mod token;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use k8s_openapi::api::core::v1::{Pod, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use error::VolumeError;
pub use token::{ApiTokenFetcher, TokenFetcher, TokenManager};

use ownership::Ownership;

/// What volume setup needs from the kubelet.
pub struct VolumeContext {
    pub client: kube::Client,
    /// `--root-dir`.
    pub root_dir: PathBuf,
    pub node_name: String,
    /// Stands in for missing container limits (downward API) and bounds tmpfs sizes.
    pub node_allocatable: BTreeMap<String, Quantity>,
    pub tokens: Arc<TokenManager>,
}

impl VolumeContext {
    /// A context whose service account tokens come from the apiserver through `client`.
    pub fn new(
        client: kube::Client,
        root_dir: PathBuf,
        node_name: String,
        node_allocatable: BTreeMap<String, Quantity>,
    ) -> Self {
        let tokens = Arc::new(TokenManager::new(Arc::new(ApiTokenFetcher::new(
            client.clone(),
        ))));
        VolumeContext {
            client,
            root_dir,
            node_name,
            node_allocatable,
            tokens,
        }
    }
}

/// A volume ready for containers to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedVolume {
    pub host_path: PathBuf,
    /// Containers must mount it read-only whatever their `volumeMounts` say (configMap,
    /// secret, downwardAPI and projected volumes, and claims with `readOnly`).
    pub read_only: bool,
}

/// The pod's volumes by their name in `spec.volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    pub volumes: BTreeMap<String, MountedVolume>,
}

/// `<root>/pods/<uid>`.
pub fn pod_dir(root_dir: &Path, pod_uid: &str) -> PathBuf {
    root_dir.join("pods").join(pod_uid)
}

/// Sets up every volume a container of the pod uses and refreshes the content of those that
/// project API objects. Volumes are attempted independently; failures come back together
/// (see [`VolumeError::failures`]), one per volume.
pub async fn mount_all(ctx: &VolumeContext, pod: &Pod) -> Result<PodVolumes, VolumeError> {
    let uid = valid_uid(pod.metadata.uid.as_deref().unwrap_or_default())?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let ownership = Ownership::for_pod(pod).map_err(VolumeError::InvalidPod)?;
    let pod_dir = pod_dir(&ctx.root_dir, uid);
    let lock = pod_lock(&pod_dir);
    let _serialised = lock.lock().await;

    let dirs = pod_dir.clone();
    blocking(move || make_pod_data_dirs(&dirs))
        .await
        .map_err(|e| {
            VolumeError::InvalidPod(format!("unable to make pod data directories: {e}"))
        })?;

    let (mounted, devices) = used_volumes(pod);
    let mut result = PodVolumes::default();
    let mut errors = Vec::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if devices.contains(volume.name.as_str()) {
            errors.push(VolumeError::Unsupported {
                volume: volume.name.clone(),
                kind: "block (volumeDevices)".to_string(),
            });
            continue;
        }
        // Upstream leaves volumes no container uses alone.
        if !mounted.contains(volume.name.as_str()) {
            continue;
        }
        let site = VolumeSite {
            pod,
            namespace,
            pod_dir: pod_dir.clone(),
            volume: &volume.name,
            ownership,
        };
        match setup_volume(ctx, &site, volume).await {
            Ok(m) => {
                result.volumes.insert(volume.name.clone(), m);
            }
            Err(e) => {
                tracing::warn!(pod = %uid, volume = %volume.name, error = %e, "volume setup failed");
                errors.push(e);
            }
        }
    }
    match VolumeError::from_many(errors) {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

/// Unmounts and removes the pod's volume directories (`volumes/` and the plugins' metadata
/// in `plugins/`), and forgets its tokens. Host paths and persistent volumes are never under
/// these directories, and nothing is deleted below a mount point that will not unmount.
pub async fn unmount_all(ctx: &VolumeContext, pod_uid: &str) -> Result<(), VolumeError> {
    let uid = valid_uid(pod_uid)?;
    ctx.tokens.delete_service_account_token(uid);
    let pod_dir = pod_dir(&ctx.root_dir, uid);
    let lock = pod_lock(&pod_dir);
    let _serialised = lock.lock().await;
    let task = tokio::task::spawn_blocking(move || tear_down_pod(&pod_dir));
    match task.await {
        Ok(r) => r,
        Err(e) => Err(VolumeError::InvalidPod(format!(
            "volume teardown task failed: {e}"
        ))),
    }
}

/// Where one volume of one pod lives, and how the pod wants it owned.
pub(crate) struct VolumeSite<'a> {
    pub pod: &'a Pod,
    pub namespace: &'a str,
    pub pod_dir: PathBuf,
    pub volume: &'a str,
    pub ownership: Ownership,
}

impl VolumeSite<'_> {
    pub(crate) fn dir(&self, plugin: &str) -> PathBuf {
        self.pod_dir.join("volumes").join(plugin).join(self.volume)
    }

    pub(crate) fn meta_dir(&self, plugin: &str) -> PathBuf {
        self.pod_dir.join("plugins").join(plugin).join(self.volume)
    }

    /// The metadata of the emptyDir that upstream wraps under API-content volumes.
    pub(crate) fn wrapper_meta_dir(&self) -> PathBuf {
        self.pod_dir
            .join("plugins")
            .join(empty_dir::PLUGIN)
            .join(format!("wrapped_{}", self.volume))
    }
}

async fn setup_volume(
    ctx: &VolumeContext,
    site: &VolumeSite<'_>,
    volume: &Volume,
) -> Result<MountedVolume, VolumeError> {
    let setup_error = |message: String| VolumeError::SetUp {
        volume: volume.name.clone(),
        message,
    };
    if let Some(source) = &volume.empty_dir {
        return empty_dir::setup(ctx, site, source)
            .await
            .map_err(setup_error);
    }
    if let Some(source) = &volume.host_path {
        return host_path::setup(source).map_err(setup_error);
    }
    if let Some(source) = &volume.config_map {
        return configmap::setup(ctx, site, source)
            .await
            .map_err(setup_error);
    }
    if let Some(source) = &volume.secret {
        return secret::setup(ctx, site, source).await.map_err(setup_error);
    }
    if let Some(source) = &volume.downward_api {
        return downward_api::setup(ctx, site, source)
            .await
            .map_err(setup_error);
    }
    if let Some(source) = &volume.projected {
        return projected::setup(ctx, site, source)
            .await
            .map_err(setup_error);
    }
    if let Some(source) = &volume.persistent_volume_claim {
        let claim = pvc::ClaimRef {
            name: source.claim_name.clone(),
            read_only: source.read_only.unwrap_or(false),
            ephemeral: false,
            site,
        };
        return pvc::setup(ctx, claim).await;
    }
    if volume.ephemeral.is_some() {
        // The ephemeral volume controller names the claim after the pod and the volume.
        let pod_name = site.pod.metadata.name.as_deref().unwrap_or_default();
        let claim = pvc::ClaimRef {
            name: format!("{pod_name}-{}", volume.name),
            read_only: false,
            ephemeral: true,
            site,
        };
        return pvc::setup(ctx, claim).await;
    }
    Err(VolumeError::Unsupported {
        volume: volume.name.clone(),
        kind: volume_kind(volume),
    })
}

/// The JSON name of a volume's source, for messages.
fn volume_kind(volume: &Volume) -> String {
    serde_json::to_value(volume)
        .ok()
        .and_then(|v| {
            v.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Volume names that containers mount, and those they use as raw block devices.
fn used_volumes(pod: &Pod) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let mut mounts = BTreeSet::new();
    let mut devices = BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (mounts, devices);
    };
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        mounts.extend(c.volume_mounts.iter().flatten().map(|m| m.name.as_str()));
        devices.extend(c.volume_devices.iter().flatten().map(|d| d.name.as_str()));
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        mounts.extend(c.volume_mounts.iter().flatten().map(|m| m.name.as_str()));
        devices.extend(c.volume_devices.iter().flatten().map(|d| d.name.as_str()));
    }
    (mounts, devices)
}

/// A uid safe to use as one path component, so teardown cannot reach outside `pods/`.
fn valid_uid(uid: &str) -> Result<&str, VolumeError> {
    if uid.is_empty() || uid == "." || uid == ".." || uid.contains('/') || uid.contains('\0') {
        return Err(VolumeError::InvalidPod(format!(
            "invalid pod uid {}",
            quote::go_quote(uid)
        )));
    }
    Ok(uid)
}

/// The pod's directory and its `volumes` and `plugins` subdirectories, 0750 as upstream.
fn make_pod_data_dirs(pod_dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    for dir in [
        pod_dir.to_path_buf(),
        pod_dir.join("volumes"),
        pod_dir.join("plugins"),
    ] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir)
            .map_err(|e| error::path_error("mkdir", &dir, &e))?;
    }
    Ok(())
}

fn tear_down_pod(pod_dir: &Path) -> Result<(), VolumeError> {
    let volumes = pod_dir.join("volumes");
    let mut errors = Vec::new();
    for plugin_dir in list_dir(&volumes).map_err(|e| teardown_error("", &volumes, e))? {
        let entries = match list_dir(&plugin_dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(teardown_error("", &plugin_dir, e));
                continue;
            }
        };
        for volume_dir in entries {
            if let Err(message) = tear_down_volume(&volume_dir) {
                let name = volume_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                errors.push(VolumeError::TearDown {
                    volume: name,
                    message,
                });
            }
        }
        if errors.is_empty() {
            remove_empty_dir(&plugin_dir).map_err(|e| teardown_error("", &plugin_dir, e))?;
        }
    }
    if let Some(e) = VolumeError::from_many(errors) {
        return Err(e);
    }
    remove_empty_dir(&volumes).map_err(|e| teardown_error("", &volumes, e))?;
    // Only ready markers live under plugins/; make sure nothing is mounted there either.
    let plugins = pod_dir.join("plugins");
    tear_down_volume(&plugins).map_err(|message| VolumeError::TearDown {
        volume: String::new(),
        message,
    })
}

/// Unmounts whatever is mounted in `dir` (deepest first) and removes it.
fn tear_down_volume(dir: &Path) -> Result<(), String> {
    let md = match fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(error::path_error("lstat", dir, &e)),
    };
    // Never resolve a link here: its target is not ours to unmount or delete.
    if !md.is_dir() {
        return fs::remove_file(dir).map_err(|e| error::path_error("remove", dir, &e));
    }
    let mounts = mount::mount_points_under(dir)
        .map_err(|e| error::path_error("read mounts for", dir, &e))?;
    for mp in &mounts {
        mount::unmount(mp).map_err(|e| {
            format!(
                "unmount failed: {}\nUnmounting arguments: {}",
                error::errno_text(&e),
                mp.display()
            )
        })?;
    }
    let left = mount::mount_points_under(dir)
        .map_err(|e| error::path_error("read mounts for", dir, &e))?;
    if let Some(mp) = left.first() {
        return Err(format!(
            "{} is still mounted; refusing to remove {}",
            mp.display(),
            dir.display()
        ));
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error::path_error("remove", dir, &e)),
    }
}

fn list_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn remove_empty_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn teardown_error(volume: &str, path: &Path, e: io::Error) -> VolumeError {
    VolumeError::TearDown {
        volume: volume.to_string(),
        message: error::path_error("remove", path, &e),
    }
}

/// Serialises volume work per pod: the atomic writer and tmpfs setup assume one writer.
fn pod_lock(pod_dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    type Locks = std::sync::Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    locks.retain(|_, l| l.strong_count() > 0);
    if let Some(lock) = locks.get(pod_dir).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(pod_dir.to_path_buf(), Arc::downgrade(&lock));
    lock
}

/// Runs filesystem and mount work off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(format!("volume task failed: {e}")))
}

/// An apiserver error as upstream's kubelet shows it: the Status message alone.
pub(crate) fn api_error(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message,
        other => other.to_string(),
    }
}

/// Random bits for names that must not collide; not for secrets.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests;
