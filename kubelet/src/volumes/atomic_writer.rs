//! Upstream's AtomicWriter layout for volumes whose content comes from the API (configMap,
//! secret, downwardAPI, projected).
//!
//! The files live in a hidden timestamped directory (`..2026_11_22_02_15_30.1234567`); the
//! `..data` symlink points at it and every top-level user path is a symlink through `..data`.
//! An update writes a complete new timestamped directory and renames a fresh `..data_tmp`
//! symlink over `..data`, so a reader sees either the old or the new set of files, never a
//! mix. Programs (and inotify watchers) in pods rely on exactly these names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::errno_text;

const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;
pub(crate) const DATA_DIR_NAME: &str = "..data";
const NEW_DATA_DIR_NAME: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits, applied exactly (the process umask does not apply).
    pub mode: u32,
    /// Owner to give the file (upstream's FsUser, used for service account tokens).
    pub fs_user: Option<u32>,
}

/// Relative path (as the user wrote it in `items[].path`) to content.
pub type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    #[error("{0}")]
    InvalidPath(String),
    #[error("{what} {}: {}", path.display(), errno_text(source))]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("error applying ownership settings: {0}")]
    Ownership(String),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AtomicWriteError {
    let path = path.to_path_buf();
    move |source| AtomicWriteError::Io { what, path, source }
}

/// Writes payloads into one target directory. Callers serialise writes to the same directory.
pub struct AtomicWriter {
    target_dir: PathBuf,
}

impl AtomicWriter {
    /// A writer for `target_dir`, which must exist.
    pub fn new(target_dir: &Path) -> Result<Self, AtomicWriteError> {
        fs::metadata(target_dir).map_err(io_err("stat", target_dir))?;
        Ok(AtomicWriter {
            target_dir: target_dir.to_path_buf(),
        })
    }

    /// Projects `payload` into the target directory; returns whether anything was rewritten.
    ///
    /// `set_perms` runs after the new timestamped directory is filled and before it is
    /// published, so ownership changes are never visible half-done.
    pub fn write(
        &self,
        payload: &Payload,
        set_perms: Option<&dyn Fn() -> Result<(), String>>,
    ) -> Result<bool, AtomicWriteError> {
        let payload = validate_payload(payload)?;
        let data_dir = self.target_dir.join(DATA_DIR_NAME);

        let old_ts_name = match fs::read_link(&data_dir) {
            Ok(target) => Some(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("readlink", &data_dir)(e)),
        };
        let old_ts_dir = old_ts_name.as_ref().map(|name| self.target_dir.join(name));

        let mut to_remove = BTreeSet::new();
        let mut should_write = true;
        if let Some(old) = &old_ts_dir {
            to_remove = paths_to_remove(&payload, old)?;
            should_write = payload_differs(&payload, old)?;
        }

        // The old directory is removed only when a new one replaced it.
        let mut retired = None;
        if should_write || !to_remove.is_empty() {
            let ts_dir = self.new_timestamp_dir()?;
            let published = self.write_payload_to_dir(&payload, &ts_dir).and_then(|()| {
                if let Some(set_perms) = set_perms {
                    set_perms().map_err(AtomicWriteError::Ownership)?;
                }
                self.publish(&ts_dir)
            });
            if let Err(e) = published {
                // Leaves the previous version in place and in use.
                let _ = fs::remove_dir_all(&ts_dir);
                return Err(e);
            }
            retired = old_ts_dir;
        }

        self.create_user_visible_files(&payload)?;
        self.remove_user_visible_paths(&to_remove)?;
        if let Some(old) = retired {
            match fs::remove_dir_all(&old) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &old)(e)),
            }
        }
        Ok(should_write || !to_remove.is_empty())
    }

    fn new_timestamp_dir(&self) -> Result<PathBuf, AtomicWriteError> {
        let prefix = chrono::Utc::now()
            .format("..%Y_%m_%d_%H_%M_%S.")
            .to_string();
        let mut last = None;
        for _ in 0..16 {
            let dir = self
                .target_dir
                .join(format!("{prefix}{}", super::random_u64() as u32));
            match fs::create_dir(&dir) {
                Ok(()) => {
                    // 0755 so group and other can traverse whatever the umask was.
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                        .map_err(io_err("chmod", &dir))?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(io_err("mkdir", &dir)(e)),
            }
        }
        let source = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
        Err(io_err("mkdir", &self.target_dir)(source))
    }

    fn write_payload_to_dir(&self, payload: &Payload, dir: &Path) -> Result<(), AtomicWriteError> {
        for (rel, file) in payload {
            let full = dir.join(rel);
            if let Some(parent) = full.parent() {
                create_dirs_0755(dir, parent)?;
            }
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(file.mode)
                .open(&full)
                .map_err(io_err("open", &full))?;
            out.write_all(&file.data).map_err(io_err("write", &full))?;
            drop(out);
            // open(2) applied the umask; the mode must be exactly what the user asked for.
            fs::set_permissions(&full, fs::Permissions::from_mode(file.mode))
                .map_err(io_err("chmod", &full))?;
            if let Some(uid) = file.fs_user {
                std::os::unix::fs::chown(&full, Some(uid), None).map_err(io_err("chown", &full))?;
            }
        }
        Ok(())
    }

    fn publish(&self, ts_dir: &Path) -> Result<(), AtomicWriteError> {
        let ts_name = ts_dir
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| ts_dir.to_path_buf());
        let tmp = self.target_dir.join(NEW_DATA_DIR_NAME);
        // A crash between symlink and rename leaves a stale ..data_tmp behind.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &tmp)(e)),
        }
        std::os::unix::fs::symlink(&ts_name, &tmp).map_err(io_err("symlink", &tmp))?;
        let data_dir = self.target_dir.join(DATA_DIR_NAME);
        if let Err(e) = fs::rename(&tmp, &data_dir) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("rename", &tmp)(e));
        }
        Ok(())
    }

    /// `<name> -> ..data/<name>` for each top-level name of the payload.
    fn create_user_visible_files(&self, payload: &Payload) -> Result<(), AtomicWriteError> {
        let tops: BTreeSet<&str> = payload
            .keys()
            .map(|p| p.split('/').next().unwrap_or(p))
            .collect();
        for top in tops {
            let visible = self.target_dir.join(top);
            match fs::symlink_metadata(&visible) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::os::unix::fs::symlink(Path::new(DATA_DIR_NAME).join(top), &visible)
                        .map_err(io_err("symlink", &visible))?;
                }
                Err(e) => return Err(io_err("lstat", &visible)(e)),
            }
        }
        Ok(())
    }

    /// Only top-level entries are links of their own; deeper paths vanished with the old
    /// timestamped directory.
    fn remove_user_visible_paths(&self, paths: &BTreeSet<String>) -> Result<(), AtomicWriteError> {
        let mut last = Ok(());
        for p in paths.iter().filter(|p| !p.contains('/')) {
            let visible = self.target_dir.join(p);
            match fs::remove_file(&visible) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => last = Err(io_err("remove", &visible)(e)),
            }
        }
        last
    }
}

/// Creates `path` (under `base`) and its missing parents with mode 0755.
fn create_dirs_0755(base: &Path, path: &Path) -> Result<(), AtomicWriteError> {
    if path == base || path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dirs_0755(base, parent)?;
    }
    match fs::create_dir(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", path)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("mkdir", path)(e)),
    }
}

/// Validates every path and returns the payload keyed by cleaned paths.
pub(crate) fn validate_payload(payload: &Payload) -> Result<Payload, AtomicWriteError> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        validate_path(path).map_err(AtomicWriteError::InvalidPath)?;
        let cleaned = clean_relative(path);
        // Cleaning can expose a reserved name (`./..data`), which would clobber the writer's
        // own links; upstream checks only the raw path.
        if cleaned.is_empty() {
            return Err(AtomicWriteError::InvalidPath(format!(
                "invalid path: must not be empty: {}",
                super::quote::go_quote(path)
            )));
        }
        if cleaned.starts_with("..") {
            return Err(AtomicWriteError::InvalidPath(format!(
                "invalid path: must not start with '..': {path}"
            )));
        }
        clean.insert(cleaned, file.clone());
    }
    Ok(clean)
}

/// Upstream's `validatePath`: relative, no `..` element, not starting with `..`, and within
/// the filename and path length limits.
pub(crate) fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!(
            "invalid path: must not be empty: {}",
            super::quote::go_quote(path)
        ));
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// `filepath.Clean` for a relative path with no `..` elements.
fn clean_relative(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether any file's content differs from what the old version holds.
fn payload_differs(payload: &Payload, old_ts_dir: &Path) -> Result<bool, AtomicWriteError> {
    for (rel, file) in payload {
        let path = old_ts_dir.join(rel);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(io_err("lstat", &path)(e)),
            Ok(_) => {}
        }
        let on_disk = fs::read(&path).map_err(io_err("read", &path))?;
        if on_disk != file.data {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Paths of the old version that the new payload no longer has (parents of new files stay).
fn paths_to_remove(
    payload: &Payload,
    old_ts_dir: &Path,
) -> Result<BTreeSet<String>, AtomicWriteError> {
    let mut existing = BTreeSet::new();
    match walk_relative(old_ts_dir, "", &mut existing) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io_err("walk", old_ts_dir)(e)),
    }
    let mut keep = BTreeSet::new();
    for rel in payload.keys() {
        let mut sub = rel.as_str();
        loop {
            keep.insert(sub.to_string());
            match sub.rfind('/') {
                Some(i) => sub = &sub[..i],
                None => break,
            }
        }
    }
    Ok(existing.difference(&keep).cloned().collect())
}

fn walk_relative(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if entry.file_type()?.is_dir() {
            walk_relative(&entry.path(), &rel, out)?;
        }
        out.insert(rel);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
            fs_user: None,
        }
    }

    fn payload(items: &[(&str, &str, u32)]) -> Payload {
        items
            .iter()
            .map(|(p, d, m)| (p.to_string(), file(d, *m)))
            .collect()
    }

    fn data_target(dir: &Path) -> PathBuf {
        fs::read_link(dir.join(DATA_DIR_NAME)).unwrap()
    }

    fn hidden_dirs(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..2"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn create_lays_out_upstream_structure() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let w = AtomicWriter::new(dir).unwrap();
        let p = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]);
        assert!(w.write(&p, None).unwrap());

        let ts = data_target(dir);
        let ts_name = ts.to_string_lossy().into_owned();
        assert!(ts.is_relative());
        // `..YYYY_MM_DD_HH_MM_SS.<digits>`
        assert!(ts_name.len() > 22, "{ts_name}");
        assert!(ts_name.starts_with("..20"), "{ts_name}");
        assert_eq!(&ts_name[21..22], ".", "{ts_name}");
        assert_eq!(hidden_dirs(dir), vec![ts_name.clone()]);
        assert_eq!(
            fs::read_link(dir.join("a")).unwrap(),
            PathBuf::from("..data/a")
        );
        assert_eq!(
            fs::read_link(dir.join("sub")).unwrap(),
            PathBuf::from("..data/sub")
        );
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert!(!dir.join(NEW_DATA_DIR_NAME).exists());
        assert_eq!(
            fs::metadata(dir.join(&ts_name)).unwrap().mode() & 0o7777,
            0o755
        );
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        // Changing the umask here would race with other tests; group- and other-writable modes
        // are what the usual 022 umask would strip.
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        let p = payload(&[("rw", "x", 0o666), ("ro", "y", 0o400), ("x", "z", 0o777)]);
        w.write(&p, None).unwrap();
        for (name, mode) in [("rw", 0o666), ("ro", 0o400), ("x", 0o777)] {
            let m = fs::metadata(tmp.path().join(name)).unwrap().mode() & 0o7777;
            assert_eq!(m, mode, "{name}");
        }
    }

    #[test]
    fn update_swaps_data_and_prunes_stale_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let w = AtomicWriter::new(dir).unwrap();
        w.write(
            &payload(&[
                ("keep", "1", 0o644),
                ("gone", "2", 0o644),
                ("d/f", "3", 0o644),
            ]),
            None,
        )
        .unwrap();
        let first = data_target(dir);

        // Same names and content, but a key was dropped: a rewrite is needed.
        let changed = w
            .write(
                &payload(&[("keep", "1b", 0o644), ("new", "4", 0o644)]),
                None,
            )
            .unwrap();
        assert!(changed);
        let second = data_target(dir);
        assert_ne!(first, second);
        assert!(!dir.join(&first).exists(), "old timestamped dir removed");
        assert_eq!(
            hidden_dirs(dir),
            vec![second.to_string_lossy().into_owned()]
        );
        assert_eq!(fs::read_to_string(dir.join("keep")).unwrap(), "1b");
        assert_eq!(fs::read_to_string(dir.join("new")).unwrap(), "4");
        assert!(fs::symlink_metadata(dir.join("gone")).is_err());
        assert!(fs::symlink_metadata(dir.join("d")).is_err());
    }

    #[test]
    fn unchanged_payload_is_not_rewritten_but_links_are_repaired() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let w = AtomicWriter::new(dir).unwrap();
        let p = payload(&[("a", "1", 0o644), ("b", "2", 0o644)]);
        assert!(w.write(&p, None).unwrap());
        let first = data_target(dir);
        fs::remove_file(dir.join("b")).unwrap();

        assert!(!w.write(&p, None).unwrap());
        assert_eq!(data_target(dir), first);
        assert_eq!(fs::read_to_string(dir.join("b")).unwrap(), "2");
    }

    #[test]
    fn removal_of_all_keys_leaves_empty_data() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let w = AtomicWriter::new(dir).unwrap();
        w.write(&payload(&[("a", "1", 0o644)]), None).unwrap();
        assert!(w.write(&Payload::new(), None).unwrap());
        assert!(fs::symlink_metadata(dir.join("a")).is_err());
        assert_eq!(fs::read_dir(dir.join(DATA_DIR_NAME)).unwrap().count(), 0);
    }

    #[test]
    fn set_perms_runs_before_publication_and_failures_keep_old_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let w = AtomicWriter::new(&dir).unwrap();
        w.write(&payload(&[("a", "1", 0o644)]), None).unwrap();
        let first = data_target(&dir);

        let fail = || Err("no".to_string());
        let err = w
            .write(&payload(&[("a", "2", 0o644)]), Some(&fail))
            .unwrap_err();
        assert_eq!(err.to_string(), "error applying ownership settings: no");
        assert_eq!(data_target(&dir), first);
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(hidden_dirs(&dir).len(), 1);
    }

    #[test]
    fn fs_user_owns_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        let mut p = Payload::new();
        p.insert(
            "token".into(),
            FileProjection {
                data: b"t".to_vec(),
                mode: 0o600,
                fs_user: Some(1234),
            },
        );
        w.write(&p, None).unwrap();
        let md = fs::metadata(tmp.path().join("token")).unwrap();
        assert_eq!(md.uid(), 1234);
        assert_eq!(md.mode() & 0o7777, 0o600);
    }

    #[test]
    fn paths_are_validated_as_upstream() {
        for (bad, msg) in [
            ("", "invalid path: must not be empty: \"\""),
            ("/abs", "invalid path: must be relative path: /abs"),
            ("a/../b", "invalid path: must not contain '..': a/../b"),
            ("..", "invalid path: must not contain '..': .."),
            ("..data", "invalid path: must not start with '..': ..data"),
            ("..a/b", "invalid path: must not start with '..': ..a/b"),
            (
                "./..data",
                "invalid path: must not start with '..': ./..data",
            ),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let w = AtomicWriter::new(tmp.path()).unwrap();
            let err = w.write(&payload(&[(bad, "x", 0o644)]), None).unwrap_err();
            assert_eq!(err.to_string(), msg, "{bad:?}");
        }
        let long = "a".repeat(256);
        assert!(validate_path(&long).is_err());
        assert!(validate_path("a/./b").is_ok());
        assert!(validate_path("a..b/c..").is_ok());
        let cleaned = validate_payload(&payload(&[("./a//b", "x", 0o644)])).unwrap();
        assert!(cleaned.contains_key("a/b"));
    }

    #[test]
    fn missing_target_dir_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = AtomicWriter::new(&tmp.path().join("nope"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no such file or directory"), "{err}");
    }
}
