//! hostPath volumes: a path on the node, used in place, after upstream's `type` checks.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::HostPathVolumeSource;

use super::error::path_error;
use super::MountedVolume;

pub(crate) fn setup(source: &HostPathVolumeSource) -> Result<MountedVolume, String> {
    let path = &source.path;
    if path.split('/').any(|p| p == "..") {
        return Err(format!("invalid HostPath `{path}`: must not contain '..'"));
    }
    check_type(Path::new(path), source.type_.as_deref().unwrap_or(""))?;
    Ok(MountedVolume {
        host_path: PathBuf::from(path),
        read_only: false,
    })
}

/// Upstream's `checkTypeInternal`: the `*OrCreate` types create what is missing, the others
/// only check; the empty type checks nothing.
pub(crate) fn check_type(path: &Path, path_type: &str) -> Result<(), String> {
    let shown = path.display();
    // Follows symlinks, as os.Stat does.
    let kind = fs::metadata(path).ok().map(|m| m.file_type());
    match path_type {
        "" => Ok(()),
        "DirectoryOrCreate" | "Directory" => {
            if kind.is_none() && path_type == "DirectoryOrCreate" {
                return make_dir(path);
            }
            if kind.is_some_and(|k| k.is_dir()) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a directory"
                ))
            }
        }
        "FileOrCreate" | "File" => {
            if kind.is_none() && path_type == "FileOrCreate" {
                return make_file(path);
            }
            if kind.is_some_and(|k| k.is_file()) {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {shown} is not a file"))
            }
        }
        "Socket" => check(kind.is_some_and(|k| k.is_socket()), || {
            format!("hostPath type check failed: {shown} is not a socket file")
        }),
        "CharDevice" => check(kind.is_some_and(|k| k.is_char_device()), || {
            format!("hostPath type check failed: {shown} is not a character device")
        }),
        "BlockDevice" => check(kind.is_some_and(|k| k.is_block_device()), || {
            format!("hostPath type check failed: {shown} is not a block device")
        }),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

/// `os.MkdirAll(path, 0755)`: the new directories get 0755 less the umask, as upstream.
fn make_dir(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| path_error("mkdir", path, &e))
}

/// `os.OpenFile(path, O_CREATE, 0644)`: the parent directory must already exist.
fn make_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map(|_| ())
        .map_err(|e| path_error("open", path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn type_checks_as_upstream() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let file = tmp.path().join("f");
        fs::create_dir(&dir).unwrap();
        fs::write(&file, "x").unwrap();
        let sock_path = tmp.path().join("s.sock");
        let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        let missing = tmp.path().join("missing");

        assert!(check_type(&missing, "").is_ok());
        assert!(check_type(&dir, "Directory").is_ok());
        assert_eq!(
            check_type(&file, "Directory").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert!(check_type(&missing, "Directory").is_err());
        assert!(check_type(&file, "File").is_ok());
        assert_eq!(
            check_type(&dir, "File").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a file",
                dir.display()
            )
        );
        assert!(check_type(&sock_path, "Socket").is_ok());
        assert_eq!(
            check_type(&file, "Socket").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a socket file",
                file.display()
            )
        );
        assert!(check_type(Path::new("/dev/null"), "CharDevice").is_ok());
        assert_eq!(
            check_type(&file, "CharDevice").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a character device",
                file.display()
            )
        );
        assert_eq!(
            check_type(&file, "BlockDevice").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a block device",
                file.display()
            )
        );
        assert_eq!(
            check_type(&file, "Bogus").unwrap_err(),
            "Bogus is an invalid volume type"
        );

        let created = tmp.path().join("a/b/c");
        check_type(&created, "DirectoryOrCreate").unwrap();
        assert!(created.is_dir());
        assert_eq!(
            fs::metadata(&created).unwrap().mode() & 0o7777 & !0o022,
            0o755
        );
        // An existing file is not a directory, even for DirectoryOrCreate.
        assert!(check_type(&file, "DirectoryOrCreate").is_err());

        let new_file = tmp.path().join("new-file");
        check_type(&new_file, "FileOrCreate").unwrap();
        assert!(new_file.is_file());
        assert!(check_type(&dir, "FileOrCreate").is_err());
        let err = check_type(&tmp.path().join("no/such/file"), "FileOrCreate").unwrap_err();
        assert!(err.ends_with("no such file or directory"), "{err}");
    }

    #[test]
    fn backsteps_are_refused() {
        let err = setup(&HostPathVolumeSource {
            path: "/var/../etc".into(),
            type_: None,
        })
        .unwrap_err();
        assert_eq!(err, "invalid HostPath `/var/../etc`: must not contain '..'");
        let ok = setup(&HostPathVolumeSource {
            path: "/var/log".into(),
            type_: Some(String::new()),
        })
        .unwrap();
        assert_eq!(ok.host_path, PathBuf::from("/var/log"));
        assert!(!ok.read_only);
    }
}
