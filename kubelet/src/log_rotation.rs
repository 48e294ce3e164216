//! Container log rotation, as upstream's container log manager: a running container's log
//! file past `containerLogMaxSize` is renamed with a timestamp suffix and the runtime is told
//! to reopen it; at most `containerLogMaxFiles` files (the live one included) are kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::{api, Runtime};

pub struct LogRotation {
    pub runtime: Arc<dyn Runtime>,
    pub max_size: u64,
    pub max_files: usize,
    /// How often logs are checked (upstream's `containerLogMonitorInterval`, 10s).
    pub period: Duration,
}

/// The rotated files of `log`, oldest first (their suffixes are sortable timestamps).
fn rotated(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl LogRotation {
    pub async fn run(self) {
        loop {
            tokio::time::sleep(self.period).await;
            self.round().await;
        }
    }

    /// One pass over the running containers.
    pub async fn round(&self) {
        let running = api::ContainerFilter {
            state: Some(api::ContainerStateValue {
                state: api::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        let Ok(list) = self
            .runtime
            .list_containers(api::ListContainersRequest {
                filter: Some(running),
            })
            .await
        else {
            return;
        };
        for c in list.containers {
            let Ok(Some(status)) = self
                .runtime
                .container_status(api::ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                })
                .await
                .map(|r| r.status)
            else {
                continue;
            };
            if status.log_path.is_empty() {
                continue;
            }
            let log = PathBuf::from(&status.log_path);
            if let Err(e) = self.rotate_if_needed(&c.id, &log).await {
                tracing::warn!(container = %c.id, log = %log.display(), error = %e, "rotating container log");
            }
        }
    }

    async fn rotate_if_needed(&self, id: &str, log: &Path) -> std::io::Result<()> {
        let keep = self.max_files.saturating_sub(1);
        let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let rotate = size > self.max_size && keep > 0;
        // Room is made before the rename, so there are never more than max_files files.
        let room = if rotate { keep - 1 } else { keep };
        let old = rotated(log);
        for f in old.iter().take(old.len().saturating_sub(room)) {
            std::fs::remove_file(f)?;
        }
        if !rotate {
            return Ok(());
        }
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S%.6f");
        let target = PathBuf::from(format!("{}.{stamp}", log.display()));
        std::fs::rename(log, &target)?;
        if let Err(e) = self
            .runtime
            .reopen_container_log(api::ReopenContainerLogRequest {
                container_id: id.to_string(),
            })
            .await
        {
            // The runtime still writes to the renamed file: put it back.
            std::fs::rename(&target, log)?;
            return Err(std::io::Error::other(e.message().to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_sort_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        for s in ["20260101-000002.000000", "20260101-000001.000000", "x.tmp"] {
            std::fs::write(dir.path().join(format!("0.log.{s}")), "").unwrap();
        }
        std::fs::write(dir.path().join("1.log"), "").unwrap();
        let names: Vec<String> = rotated(&log)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "0.log.20260101-000001.000000",
                "0.log.20260101-000002.000000"
            ]
        );
    }
}
