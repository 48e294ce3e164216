//! What configMap, secret, downwardAPI and projected volumes share: an emptyDir underneath, the
//! directories other volumes are mounted on, and an atomic write of the payload.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::atomic_writer::{AtomicWriter, Payload};
use super::empty_dir::{self, Medium};
use super::ownership::set_volume_ownership;
use super::VolumeSite;

/// Upstream's API default for `defaultMode`.
pub(crate) const DEFAULT_MODE: i32 = 0o644;

/// A mode from the API (`defaultMode`, `items[].mode`) as permission bits.
pub(crate) fn file_mode(mode: i32) -> Result<u32, String> {
    u32::try_from(mode)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("invalid file mode {mode:#o}: must be between 0 and 0777"))
}

/// Sets the volume up at `site.dir(plugin)` and writes `payload` into it.
pub(crate) async fn write_volume(
    site: &VolumeSite<'_>,
    plugin: &str,
    medium: Medium,
    size: Option<i64>,
    payload: Payload,
) -> Result<PathBuf, String> {
    let dir = site.dir(plugin);
    let meta_dir = site.wrapper_meta_dir();
    let nested = nested_mount_points(site.volume, site.pod)?;
    let fs_group = site.ownership.fs_group;
    let target = dir.clone();
    super::blocking(move || {
        empty_dir::set_up_at(&target, &meta_dir, medium, size, fs_group)?;
        make_nested_mount_points(&target, &nested)?;
        let writer = AtomicWriter::new(&target).map_err(|e| e.to_string())?;
        let set_perms = || set_volume_ownership(&target, fs_group, true, false);
        let set_perms: Option<&dyn Fn() -> Result<(), String>> = match fs_group {
            Some(_) => Some(&set_perms),
            None => None,
        };
        writer
            .write(&payload, set_perms)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await?;
    Ok(dir)
}

/// Directories, relative to the volume, on which other volumes of the same container are
/// mounted (upstream's `getNestedMountpoints`): the runtime cannot create them itself in a
/// read-only volume. Only the shallowest of doubly nested mounts counts.
pub(crate) fn nested_mount_points(volume: &str, pod: &Pod) -> Result<Vec<String>, String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for container in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        let mounts = container.volume_mounts.as_deref().unwrap_or_default();
        let mut all: Vec<String> = mounts.iter().map(|m| clean_path(&m.mount_path)).collect();
        all.sort();
        let mine = mounts
            .iter()
            .filter(|m| m.name == volume)
            .map(|m| clean_path(&m.mount_path));
        for my_mount in mine {
            if my_mount.starts_with("../") {
                return Err(format!("invalid container mount point {my_mount}"));
            }
            let prefix = if my_mount.ends_with('/') {
                my_mount.clone()
            } else {
                format!("{my_mount}/")
            };
            let mut previous: Option<String> = None;
            for mp in &all {
                let Some(rest) = mp.strip_prefix(&prefix) else {
                    continue;
                };
                if previous
                    .as_ref()
                    .is_some_and(|p| mp.starts_with(p.as_str()))
                {
                    continue;
                }
                previous = Some(format!("{mp}/"));
                if !rest.is_empty() {
                    found.push(rest.to_string());
                }
            }
        }
    }
    Ok(found)
}

fn make_nested_mount_points(dir: &Path, nested: &[String]) -> Result<(), String> {
    for rel in nested {
        // A `..`-prefixed name would collide with the writer's own entries.
        if rel.starts_with("..") {
            return Err(format!("invalid nested mount point {rel}"));
        }
        let path = dir.join(rel);
        std::fs::create_dir_all(&path).map_err(|e| {
            format!(
                "unable to create nested volume mountpoints: {}",
                super::error::path_error("mkdir", &path, &e)
            )
        })?;
    }
    Ok(())
}

/// `filepath.Clean`.
pub(crate) fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeMount};

    #[test]
    fn clean_matches_go() {
        assert_eq!(clean_path("/a/b/../c/"), "/a/c");
        assert_eq!(clean_path("a/./b"), "a/b");
        assert_eq!(clean_path("../a"), "../a");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path(""), ".");
    }

    #[test]
    fn modes() {
        assert_eq!(file_mode(0o644).unwrap(), 0o644);
        assert!(file_mode(-1).is_err());
        assert!(file_mode(0o1000).is_err());
    }

    #[test]
    fn nested_mount_points_as_upstream() {
        let mount = |name: &str, path: &str| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    volume_mounts: Some(vec![
                        mount("cfg", "/etc/config"),
                        mount("a", "/etc/config/nested"),
                        mount("b", "/etc/config/nested/deeper"),
                        mount("c", "/etc/config/other/"),
                        mount("d", "/etc/configuration"),
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            nested_mount_points("cfg", &pod).unwrap(),
            vec!["nested".to_string(), "other".to_string()]
        );
        assert!(nested_mount_points("a", &pod).unwrap() == vec!["deeper".to_string()]);
    }
}
