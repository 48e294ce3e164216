//! Volume ownership for `fsGroup` (upstream's `SetVolumeOwnership`) and the pod's single
//! run-as user (`FsUserFrom`), so non-root containers can read what the kubelet wrote.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use super::error::path_error;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// What a volume's setup needs from the pod's security context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ownership {
    pub fs_group: Option<u32>,
    pub fs_user: Option<u32>,
    /// `fsGroupChangePolicy: OnRootMismatch`; upstream honours it only for persistent volumes.
    pub on_root_mismatch: bool,
}

impl Ownership {
    pub(crate) fn for_pod(pod: &Pod) -> Result<Ownership, String> {
        let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let fs_group = match psc.and_then(|sc| sc.fs_group) {
            Some(g) => {
                Some(u32::try_from(g).map_err(|_| format!("invalid fsGroup {g}: out of range"))?)
            }
            None => None,
        };
        let on_root_mismatch = psc
            .and_then(|sc| sc.fs_group_change_policy.as_deref())
            .is_some_and(|p| p == "OnRootMismatch");
        Ok(Ownership {
            fs_group,
            fs_user: fs_user_from(pod),
            on_root_mismatch,
        })
    }
}

/// The uid every container of the pod runs as, if they all run as the same explicit one.
pub(crate) fn fs_user_from(pod: &Pod) -> Option<u32> {
    let spec = pod.spec.as_ref()?;
    let psc = spec.security_context.as_ref();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c: &Container| c.security_context.as_ref());
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| c.security_context.as_ref());
    let mut user: Option<i64> = None;
    for sc in containers.chain(ephemeral) {
        let run_as = effective_run_as_user(psc, sc)?;
        match user {
            Some(u) if u != run_as => return None,
            _ => user = Some(run_as),
        }
    }
    user.and_then(|u| u32::try_from(u).ok())
}

fn effective_run_as_user(
    pod: Option<&PodSecurityContext>,
    container: Option<&SecurityContext>,
) -> Option<i64> {
    container
        .and_then(|sc| sc.run_as_user)
        .or_else(|| pod.and_then(|sc| sc.run_as_user))
}

/// Gives `dir` and everything below it to `fs_group` and makes it group-readable (and, unless
/// `read_only`, group-writable); directories get setgid so new files inherit the group.
/// Symlinks are re-grouped but never chmod-ed: chmod would follow them and change the target.
pub(crate) fn set_volume_ownership(
    dir: &Path,
    fs_group: Option<u32>,
    read_only: bool,
    on_root_mismatch: bool,
) -> Result<(), String> {
    let Some(gid) = fs_group else {
        return Ok(());
    };
    if on_root_mismatch && !requires_permission_change(dir, gid, read_only) {
        return Ok(());
    }
    walk(dir, &mut |path, md| {
        change_file_permission(path, md, gid, read_only)
    })
}

fn change_file_permission(
    path: &Path,
    md: &fs::Metadata,
    gid: u32,
    read_only: bool,
) -> Result<(), String> {
    std::os::unix::fs::lchown(path, None, Some(gid)).map_err(|e| path_error("lchown", path, &e))?;
    if md.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if md.is_dir() {
        mask |= SETGID | EXEC_MASK;
    }
    let mode = (md.mode() & 0o7777) | mask;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| path_error("chmod", path, &e))
}

fn requires_permission_change(root: &Path, gid: u32, read_only: bool) -> bool {
    let Ok(md) = fs::metadata(root) else {
        return true;
    };
    if md.gid() != gid || !md.is_dir() {
        return true;
    }
    let wanted = if read_only { RO_MASK } else { RW_MASK } | EXEC_MASK;
    md.mode() & wanted != wanted || md.mode() & SETGID == 0
}

/// Visits `path` and, for directories, everything below it, without following symlinks.
fn walk(
    path: &Path,
    visit: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<(), String>,
) -> Result<(), String> {
    let md = fs::symlink_metadata(path).map_err(|e| path_error("lstat", path, &e))?;
    visit(path, &md)?;
    if md.is_dir() {
        let entries = fs::read_dir(path).map_err(|e| path_error("open", path, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e: io::Error| path_error("readdirent", path, &e))?;
            walk(&entry.path(), visit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn fs_group_regroups_and_adds_group_bits() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("vol");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("f"), "x").unwrap();
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o400)).unwrap();
        std::os::unix::fs::symlink("f", root.join("link")).unwrap();

        set_volume_ownership(&root, Some(4321), true, false).unwrap();
        assert_eq!(mode(&root), 0o2755);
        assert_eq!(mode(&root.join("f")), 0o440);
        assert_eq!(fs::metadata(root.join("f")).unwrap().gid(), 4321);
        assert_eq!(fs::symlink_metadata(root.join("link")).unwrap().gid(), 4321);

        set_volume_ownership(&root, Some(4321), false, false).unwrap();
        assert_eq!(mode(&root), 0o2775);
        assert_eq!(mode(&root.join("f")), 0o660);

        // Nothing to do without fsGroup.
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o400)).unwrap();
        set_volume_ownership(&root, None, false, false).unwrap();
        assert_eq!(mode(&root.join("f")), 0o400);
        // OnRootMismatch skips the walk when the root is already right.
        set_volume_ownership(&root, Some(4321), false, true).unwrap();
        assert_eq!(mode(&root.join("f")), 0o400);
    }

    #[test]
    fn fs_user_needs_one_explicit_uid_for_all_containers() {
        let container = |name: &str, uid: Option<i64>| Container {
            name: name.into(),
            security_context: uid.map(|u| SecurityContext {
                run_as_user: Some(u),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = |pod_uid: Option<i64>, cs: Vec<Container>| Pod {
            spec: Some(PodSpec {
                security_context: pod_uid.map(|u| PodSecurityContext {
                    run_as_user: Some(u),
                    ..Default::default()
                }),
                containers: cs,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(fs_user_from(&pod(None, vec![container("a", None)])), None);
        assert_eq!(
            fs_user_from(&pod(Some(7), vec![container("a", None)])),
            Some(7)
        );
        assert_eq!(
            fs_user_from(&pod(
                Some(7),
                vec![container("a", None), container("b", Some(8))]
            )),
            None
        );
        assert_eq!(
            fs_user_from(&pod(
                None,
                vec![container("a", Some(9)), container("b", Some(9))]
            )),
            Some(9)
        );
    }
}
