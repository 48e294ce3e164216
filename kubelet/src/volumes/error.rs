//! Errors from setting up and tearing down pod volumes, worded as upstream's kubelet words
//! them, because the pod worker turns them into `FailedMount` events users read.

use super::quote::go_quote;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    /// A volume plugin could not set the volume up (`operation_generator`'s message).
    #[error("MountVolume.SetUp failed for volume {} : {message}", go_quote(volume))]
    SetUp { volume: String, message: String },
    /// A claim-backed volume could not be resolved to its PersistentVolume (the desired state
    /// populator's message).
    #[error("error processing PVC {namespace}/{claim}: {message}")]
    Claim {
        volume: String,
        namespace: String,
        claim: String,
        message: String,
    },
    /// The volume's source has no plugin on this kubelet.
    #[error(
        "failed to get Plugin from volumeSpec for volume {} err=no volume plugin matched ({kind} volumes are not supported by this kubelet)",
        go_quote(volume)
    )]
    Unsupported { volume: String, kind: String },
    /// A volume's directory could not be unmounted or removed.
    #[error(
        "UnmountVolume.TearDown failed for volume {} : {message}",
        go_quote(volume)
    )]
    TearDown { volume: String, message: String },
    /// A `subPath` that cannot be used; the caller adds the mount and container names.
    #[error("{0}")]
    SubPath(String),
    /// The pod itself cannot have volumes set up (no uid, bad security context...).
    #[error("{0}")]
    InvalidPod(String),
    /// Several volumes failed; each is reported on its own, as upstream emits one event per
    /// volume.
    #[error("[{}]", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))]
    Multiple(Vec<VolumeError>),
}

impl VolumeError {
    /// The failures one by one, for one event each.
    pub fn failures(&self) -> Vec<&VolumeError> {
        match self {
            VolumeError::Multiple(all) => all.iter().flat_map(|e| e.failures()).collect(),
            one => vec![one],
        }
    }

    /// The pod volume the failure is about, if it is about one.
    pub fn volume(&self) -> Option<&str> {
        match self {
            VolumeError::SetUp { volume, .. }
            | VolumeError::Claim { volume, .. }
            | VolumeError::Unsupported { volume, .. }
            | VolumeError::TearDown { volume, .. } => Some(volume),
            VolumeError::SubPath(_) | VolumeError::InvalidPod(_) | VolumeError::Multiple(_) => None,
        }
    }

    /// Folds several failures into one error, keeping a single one as it is.
    pub(crate) fn from_many(mut errors: Vec<VolumeError>) -> Option<VolumeError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(VolumeError::Multiple(errors)),
        }
    }
}

/// Joins independent failures as apimachinery's `utilerrors.NewAggregate` prints them.
pub(crate) fn aggregate(mut messages: Vec<String>) -> Option<String> {
    match messages.len() {
        0 => None,
        1 => messages.pop(),
        _ => Some(format!("[{}]", messages.join(", "))),
    }
}

/// An I/O error as Go prints a `*PathError` (`open /x: no such file or directory`), which
/// is what upstream's messages embed.
pub(crate) fn path_error(op: &str, path: &std::path::Path, err: &std::io::Error) -> String {
    format!("{op} {}: {}", path.display(), errno_text(err))
}

/// The bare reason of an I/O error, lower-cased and without Rust's `(os error N)` suffix,
/// as Go's syscall errors read.
pub(crate) fn errno_text(err: &std::io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let text = std::io::Error::from_raw_os_error(code).to_string();
    let text = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text)
        .to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_upstream() {
        let e = VolumeError::SetUp {
            volume: "cfg".into(),
            message: "configmap \"y\" not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"y\" not found"
        );
        let err = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            path_error("open", std::path::Path::new("/x"), &err),
            "open /x: no such file or directory"
        );
        assert_eq!(aggregate(vec!["a".into()]).as_deref(), Some("a"));
        assert_eq!(
            aggregate(vec!["a".into(), "b".into()]).as_deref(),
            Some("[a, b]")
        );
        let many = VolumeError::from_many(vec![e.clone(), e.clone()]).unwrap();
        assert_eq!(many.failures().len(), 2);
    }
}
