//! `subPath` / `subPathExpr`: the directory inside a volume that a container mount uses.
//!
//! A pod can plant symlinks in its own volumes, so the sub path is created component by
//! component through directory descriptors opened without following symlinks, and the final
//! path is resolved and must still lie inside the volume.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::error::{errno_text, path_error};
use super::quote::go_quote;
use super::VolumeError;

/// Validates `sub_path`, creates it inside `volume_dir` if missing (with the volume root's
/// permissions, as upstream), and returns its resolved host path.
pub fn prepare(volume_dir: &Path, sub_path: &str) -> Result<PathBuf, VolumeError> {
    if sub_path.starts_with('/') {
        return Err(VolumeError::SubPath(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        )));
    }
    if sub_path.split('/').any(|c| c == "..") {
        return Err(VolumeError::SubPath(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        )));
    }
    let fail = |m: String| VolumeError::SubPath(m);
    let base =
        fs::canonicalize(volume_dir).map_err(|e| fail(path_error("lstat", volume_dir, &e)))?;
    let wanted = base.join(sub_path);

    if fs::metadata(&wanted).is_err() {
        let mode = fs::metadata(&base)
            .map_err(|e| fail(path_error("stat", &base, &e)))?
            .permissions()
            .mode();
        // Keeps setgid, as mkdir(2) in a setgid directory would, so fsGroup still applies.
        safe_make_dir(&base, sub_path, mode & 0o2777).map_err(fail)?;
    }

    let resolved = fs::canonicalize(&wanted).map_err(|e| fail(path_error("lstat", &wanted, &e)))?;
    if !resolved.starts_with(&base) {
        return Err(fail(format!(
            "subpath {} not within volume path {}",
            go_quote(&resolved.to_string_lossy()),
            go_quote(&base.to_string_lossy())
        )));
    }
    Ok(resolved)
}

/// Creates `base/sub` without ever following a symlink out of `base` (upstream's
/// `doSafeMakeDir`).
fn safe_make_dir(base: &Path, sub: &str, mode: u32) -> Result<(), String> {
    let components: Vec<&str> = Path::new(sub)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();

    // The existing prefix may go through symlinks; it must resolve to inside the base.
    let mut existing = 0;
    let mut probe = base.to_path_buf();
    for c in &components {
        probe.push(c);
        if fs::symlink_metadata(&probe).is_err() {
            break;
        }
        existing += 1;
    }
    let existing_path = components[..existing]
        .iter()
        .fold(base.to_path_buf(), |p, c| p.join(c));
    let real_existing = fs::canonicalize(&existing_path).map_err(|e| {
        format!(
            "error opening directory {}: {}",
            existing_path.display(),
            errno_text(&e)
        )
    })?;
    if !real_existing.starts_with(base) {
        return Err(format!(
            "path {} is outside of allowed base {}",
            real_existing.display(),
            base.display()
        ));
    }

    // Re-walk the resolved prefix without following anything, then create the rest.
    let mut dir = open_dir_nofollow(None, base)?;
    let mut current = base.to_path_buf();
    let rest = real_existing.strip_prefix(base).unwrap_or(Path::new(""));
    for c in rest.components() {
        current.push(c);
        dir = open_dir_nofollow(Some(&dir), Path::new(c.as_os_str()))
            .map_err(|e| format!("{e} (while opening {})", current.display()))?;
    }
    for c in &components[existing..] {
        current.push(c);
        let name = c_string(Path::new(c))?;
        // SAFETY: dir is an open directory descriptor and name is NUL-terminated.
        let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode & 0o777) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(format!(
                    "cannot create directory {}: {}",
                    current.display(),
                    errno_text(&e)
                ));
            }
        }
        dir = open_dir_nofollow(Some(&dir), Path::new(c))?;
        // mkdirat applied the umask.
        // SAFETY: dir is an open descriptor.
        if unsafe { libc::fchmod(dir.as_raw_fd(), mode) } != 0 {
            let e = io::Error::last_os_error();
            return Err(format!(
                "chmod {} failed: {}",
                current.display(),
                errno_text(&e)
            ));
        }
    }
    Ok(())
}

fn c_string(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", path.display()))
}

/// Opens a directory (relative to `parent` if given) refusing symlinks.
fn open_dir_nofollow(parent: Option<&OwnedFd>, path: &Path) -> Result<OwnedFd, String> {
    let name = c_string(path)?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let dirfd = parent.map_or(libc::AT_FDCWD, |p| p.as_raw_fd());
    // SAFETY: name is NUL-terminated; dirfd is open or AT_FDCWD.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(format!(
            "cannot open {}: {}",
            path.display(),
            errno_text(&e)
        ));
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn volume() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        fs::create_dir(&vol).unwrap();
        fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).unwrap();
        (tmp, vol)
    }

    #[test]
    fn creates_missing_sub_directories_with_the_volume_mode() {
        let (_tmp, vol) = volume();
        let got = prepare(&vol, "a/b/c").unwrap();
        assert_eq!(got, fs::canonicalize(&vol).unwrap().join("a/b/c"));
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(
                fs::metadata(vol.join(d)).unwrap().mode() & 0o7777,
                0o777,
                "{d}"
            );
        }
        // Existing paths, including files, are used as they are.
        fs::write(vol.join("a/file"), "x").unwrap();
        assert!(prepare(&vol, "a/file").unwrap().is_file());
        assert!(prepare(&vol, "./a//b/").unwrap().is_dir());
    }

    #[test]
    fn invalid_sub_paths_are_refused() {
        let (_tmp, vol) = volume();
        assert_eq!(
            prepare(&vol, "/etc").unwrap_err().to_string(),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert_eq!(
            prepare(&vol, "a/../../etc").unwrap_err().to_string(),
            "unable to provision SubPath `a/../../etc`: must not contain '..'"
        );
    }

    #[test]
    fn symlinks_escaping_the_volume_are_refused() {
        let (tmp, vol) = volume();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        symlink(&outside, vol.join("escape")).unwrap();
        symlink("../outside", vol.join("relative-escape")).unwrap();

        // Existing target outside the volume.
        let err = prepare(&vol, "escape").unwrap_err().to_string();
        assert!(err.starts_with("subpath "), "{err}");
        assert!(err.contains("not within volume path"), "{err}");
        assert!(prepare(&vol, "relative-escape").is_err());
        // Creation through an escaping link must not create anything outside.
        let err = prepare(&vol, "escape/new/dir").unwrap_err().to_string();
        assert!(err.contains("is outside of allowed base"), "{err}");
        assert!(!outside.join("new").exists());

        // Links that stay inside are fine (configMap keys are such links).
        fs::create_dir(vol.join("real")).unwrap();
        symlink("real", vol.join("inside")).unwrap();
        let got = prepare(&vol, "inside/sub").unwrap();
        assert_eq!(got, fs::canonicalize(&vol).unwrap().join("real/sub"));
        assert!(vol.join("real/sub").is_dir());
    }
}
