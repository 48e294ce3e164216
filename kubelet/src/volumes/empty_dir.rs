//! emptyDir: a directory in the pod's volume tree (mode 0777), or a tmpfs for
//! `medium: Memory`. configMap, downwardAPI (on disk) and secret, projected (in memory) are
//! set up on top of one, as upstream wraps them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferrokube_common::quantity::Quantity as ParsedQuantity;
use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::error::{errno_text, path_error};
use super::mount;
use super::ownership::set_volume_ownership;
use super::quote::go_quote;
use super::{MountedVolume, VolumeContext, VolumeSite};

pub(crate) const PLUGIN: &str = "kubernetes.io~empty-dir";
const PERM: u32 = 0o777;
const READY_FILE: &str = "ready";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Medium {
    Disk,
    Memory,
}

pub(crate) fn parse_medium(medium: Option<&str>) -> Result<Medium, String> {
    match medium.unwrap_or("") {
        "" => Ok(Medium::Disk),
        "Memory" => Ok(Medium::Memory),
        m if m == "HugePages" || m.starts_with("HugePages-") => Err(format!(
            "storage medium {} is not supported by this kubelet",
            go_quote(m)
        )),
        other => Err(format!("unknown storage medium {}", go_quote(other))),
    }
}

pub(crate) async fn setup(
    ctx: &VolumeContext,
    site: &VolumeSite<'_>,
    source: &EmptyDirVolumeSource,
) -> Result<MountedVolume, String> {
    let medium = parse_medium(source.medium.as_deref())?;
    // On disk, sizeLimit is enforced by eviction, not here.
    let size = match medium {
        Medium::Memory => {
            memory_size_limit(source.size_limit.as_ref(), site.pod, &ctx.node_allocatable)
        }
        Medium::Disk => None,
    };
    let dir = site.dir(PLUGIN);
    let meta_dir = site.meta_dir(PLUGIN);
    let fs_group = site.ownership.fs_group;
    let target = dir.clone();
    super::blocking(move || set_up_at(&target, &meta_dir, medium, size, fs_group)).await?;
    Ok(MountedVolume {
        host_path: dir,
        read_only: false,
    })
}

/// Upstream's emptyDir `SetUpAt`. `meta_dir` holds the `ready` marker that makes later calls
/// cheap; ownership is applied once, when the volume is first set up.
pub(crate) fn set_up_at(
    dir: &Path,
    meta_dir: &Path,
    medium: Medium,
    size: Option<i64>,
    fs_group: Option<u32>,
) -> Result<(), String> {
    if is_ready(meta_dir) {
        match medium {
            Medium::Memory => {
                if mount::is_mount_point(dir).map_err(|e| path_error("stat", dir, &e))? {
                    return Ok(());
                }
            }
            Medium::Disk => {
                if dir.is_dir() {
                    return Ok(());
                }
                // Someone removed the volume directory by hand; set it up afresh.
                let _ = fs::remove_dir_all(meta_dir);
            }
        }
    }

    setup_dir(dir)?;
    if medium == Medium::Memory {
        let mounted = mount::is_mount_point(dir).map_err(|e| path_error("stat", dir, &e))?
            && mount::is_tmpfs(dir).map_err(|e| path_error("statfs", dir, &e))?;
        if !mounted {
            mount::mount_tmpfs(dir, size).map_err(|e| {
                let options = size.map(|s| format!("-o size={s} ")).unwrap_or_default();
                format!(
                    "mount failed: {}\nMounting command: mount\nMounting arguments: -t tmpfs {options}tmpfs {}",
                    errno_text(&e),
                    dir.display()
                )
            })?;
        }
    }
    set_volume_ownership(dir, fs_group, false, false)?;
    set_ready(meta_dir)
}

/// Creates the directory with exactly 0777, whatever the umask.
fn setup_dir(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| path_error("mkdir", dir, &e))?;
    let md = fs::metadata(dir).map_err(|e| path_error("stat", dir, &e))?;
    if md.permissions().mode() & 0o777 != PERM {
        fs::set_permissions(dir, fs::Permissions::from_mode(PERM))
            .map_err(|e| path_error("chmod", dir, &e))?;
    }
    Ok(())
}

fn is_ready(meta_dir: &Path) -> bool {
    fs::symlink_metadata(meta_dir.join(READY_FILE)).is_ok_and(|m| m.is_file())
}

fn set_ready(meta_dir: &Path) -> Result<(), String> {
    fs::create_dir_all(meta_dir).map_err(|e| path_error("mkdir", meta_dir, &e))?;
    fs::set_permissions(meta_dir, fs::Permissions::from_mode(0o750))
        .map_err(|e| path_error("chmod", meta_dir, &e))?;
    let ready = meta_dir.join(READY_FILE);
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&ready)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(path_error("open", &ready, &e)),
    }
    fs::set_permissions(&ready, fs::Permissions::from_mode(0o600))
        .map_err(|e| path_error("chmod", &ready, &e))
}

/// The tmpfs size upstream picks: node allocatable memory, lowered to the pod's memory limit
/// and then to the volume's `sizeLimit` where those are set and smaller. `None` leaves the
/// kernel default.
pub(crate) fn memory_size_limit(
    size_limit: Option<&Quantity>,
    pod: &Pod,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Option<i64> {
    let mut limit = node_allocatable.get("memory").and_then(bytes);
    for c in [pod_memory_limit(pod), size_limit.and_then(bytes)]
        .into_iter()
        .flatten()
    {
        if c > 0 && limit.is_none_or(|l| c <= l) {
            limit = Some(c);
        }
    }
    limit.filter(|l| *l > 0)
}

fn bytes(q: &Quantity) -> Option<i64> {
    ParsedQuantity::parse(&q.0).ok().map(|q| q.value())
}

fn memory_limit(c: &Container) -> Option<i64> {
    c.resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .and_then(bytes)
        .filter(|v| *v > 0)
}

/// The pod cgroup's memory limit (`ResourceConfigForPod`): only when every app container
/// declares one; init containers run one at a time, sidecars alongside the app.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let mut apps: i64 = 0;
    for c in &spec.containers {
        apps = apps.saturating_add(memory_limit(c)?);
    }
    let mut sidecars: i64 = 0;
    let mut init_peak: i64 = 0;
    for c in spec.init_containers.iter().flatten() {
        let limit = memory_limit(c).unwrap_or(0);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars = sidecars.saturating_add(limit);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(sidecars.saturating_add(limit));
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get("memory"))
        .and_then(bytes)
        .unwrap_or(0);
    Some(
        apps.saturating_add(sidecars)
            .max(init_peak)
            .saturating_add(overhead),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use std::os::unix::fs::MetadataExt;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    fn pod_with_limits(limits: &[Option<&str>]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: limits
                    .iter()
                    .enumerate()
                    .map(|(i, l)| Container {
                        name: format!("c{i}"),
                        resources: l.map(|l| ResourceRequirements {
                            limits: Some([("memory".to_string(), q(l))].into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn tmpfs_size_follows_upstream() {
        let alloc: BTreeMap<String, Quantity> = [("memory".to_string(), q("8Gi"))].into();
        let none = BTreeMap::new();
        let unlimited = pod_with_limits(&[Some("1Gi"), None]);
        let limited = pod_with_limits(&[Some("1Gi"), Some("1Gi")]);
        assert_eq!(memory_size_limit(None, &unlimited, &none), None);
        assert_eq!(memory_size_limit(None, &unlimited, &alloc), Some(8 << 30));
        assert_eq!(memory_size_limit(None, &limited, &alloc), Some(2 << 30));
        assert_eq!(
            memory_size_limit(Some(&q("64Mi")), &limited, &alloc),
            Some(64 << 20)
        );
        // A sizeLimit above what the pod may use does not raise the size.
        assert_eq!(
            memory_size_limit(Some(&q("4Gi")), &limited, &alloc),
            Some(2 << 30)
        );
        assert_eq!(
            memory_size_limit(Some(&q("64Mi")), &unlimited, &none),
            Some(64 << 20)
        );
    }

    #[test]
    fn media() {
        assert_eq!(parse_medium(None).unwrap(), Medium::Disk);
        assert_eq!(parse_medium(Some("Memory")).unwrap(), Medium::Memory);
        assert_eq!(
            parse_medium(Some("Floppy")).unwrap_err(),
            "unknown storage medium \"Floppy\""
        );
        assert!(parse_medium(Some("HugePages-2Mi")).is_err());
    }

    #[test]
    fn disk_dir_is_0777_and_setup_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("volumes/kubernetes.io~empty-dir/cache");
        let meta = tmp.path().join("plugins/kubernetes.io~empty-dir/cache");
        set_up_at(&dir, &meta, Medium::Disk, None, Some(2000)).unwrap();
        let md = fs::metadata(&dir).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o2777);
        assert_eq!(md.gid(), 2000);
        assert!(meta.join("ready").is_file());
        fs::write(dir.join("data"), "kept").unwrap();
        set_up_at(&dir, &meta, Medium::Disk, None, Some(2000)).unwrap();
        assert_eq!(fs::read_to_string(dir.join("data")).unwrap(), "kept");
        // Without fsGroup the directory is plain 0777.
        let plain = tmp.path().join("volumes/kubernetes.io~empty-dir/plain");
        let plain_meta = tmp.path().join("plugins/kubernetes.io~empty-dir/plain");
        set_up_at(&plain, &plain_meta, Medium::Disk, None, None).unwrap();
        assert_eq!(fs::metadata(&plain).unwrap().mode() & 0o7777, 0o777);
    }

    #[test]
    fn memory_medium_mounts_tmpfs_once_and_unmounts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("volumes/kubernetes.io~empty-dir/mem");
        let meta = tmp.path().join("plugins/kubernetes.io~empty-dir/mem");
        set_up_at(&dir, &meta, Medium::Memory, Some(4 << 20), None).unwrap();
        assert!(mount::is_mount_point(&dir).unwrap());
        assert!(mount::is_tmpfs(&dir).unwrap());
        let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let canonical = fs::canonicalize(&dir).unwrap();
        let line = table
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(canonical.to_str().unwrap()))
            .unwrap();
        assert!(line.contains("size=4096k"), "{line}");
        set_up_at(&dir, &meta, Medium::Memory, Some(4 << 20), None).unwrap();
        assert_eq!(mount::mount_points_under(&dir).unwrap().len(), 1);
        mount::unmount(&dir).unwrap();
        assert!(!mount::is_mount_point(&dir).unwrap());
        // A lost mount is restored even though the ready marker exists.
        set_up_at(&dir, &meta, Medium::Memory, None, None).unwrap();
        assert!(mount::is_mount_point(&dir).unwrap());
        mount::unmount(&dir).unwrap();
    }
}
