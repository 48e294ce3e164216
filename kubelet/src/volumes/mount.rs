//! The few mount(2) operations volumes need: tmpfs for memory-backed volumes, unmounting, and
//! finding mount points from `/proc/self/mountinfo` so teardown never deletes through one.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const TMPFS_MAGIC: i64 = 0x0102_1994;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Mounts a tmpfs on `dir`, of `size` bytes if given (the kernel's default is half of RAM).
pub(crate) fn mount_tmpfs(dir: &Path, size: Option<i64>) -> io::Result<()> {
    let target = c_path(dir)?;
    let options = size.map(|s| format!("size={s}"));
    let data = match &options {
        Some(o) => Some(
            CString::new(o.as_str())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad mount options"))?,
        ),
        None => None,
    };
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `dir` without following a symlink planted in its place.
pub(crate) fn unmount(dir: &Path) -> io::Result<()> {
    let target = c_path(dir)?;
    // SAFETY: target is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::UMOUNT_NOFOLLOW) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the filesystem holding `path` is a tmpfs.
pub(crate) fn is_tmpfs(path: &Path) -> io::Result<bool> {
    let target = c_path(path)?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: target is NUL-terminated; st is large enough for statfs to fill.
    let rc = unsafe { libc::statfs(target.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs succeeded, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    let fs_type = st.f_type as i64;
    Ok(fs_type == TMPFS_MAGIC)
}

/// Mount points at or below `dir`, deepest first, so they can be unmounted in that order.
pub(crate) fn mount_points_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = match std::fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// Whether `dir` itself is a mount point.
pub(crate) fn is_mount_point(dir: &Path) -> io::Result<bool> {
    let canonical = match std::fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(mount_points_under(&canonical)?.contains(&canonical))
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(digits) = escape {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\"), "/end\\");
    }

    #[test]
    fn tmpfs_mount_is_found_and_unmounted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        std::fs::create_dir(&dir).unwrap();
        assert!(!is_mount_point(&dir).unwrap());
        mount_tmpfs(&dir, Some(1 << 20)).unwrap();
        assert!(is_mount_point(&dir).unwrap());
        assert!(is_tmpfs(&dir).unwrap());
        assert_eq!(mount_points_under(tmp.path()).unwrap(), vec![dir.clone()]);
        unmount(&dir).unwrap();
        assert!(!is_mount_point(&dir).unwrap());
    }
}
