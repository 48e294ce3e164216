//! Image garbage collection, as upstream's image GC manager: when the image filesystem is
//! fuller than `imageGCHighThresholdPercent`, images no container uses are removed, least
//! recently used first and none younger than `imageMinimumGCAge`, until usage is back under
//! `imageGCLowThresholdPercent`. The sandbox (pause) image is never removed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::{api, Runtime};

pub struct ImageGc {
    pub runtime: Arc<dyn Runtime>,
    /// A path on the image filesystem, whose usage decides.
    pub image_fs: PathBuf,
    pub high_percent: u8,
    pub low_percent: u8,
    pub minimum_age: Duration,
    pub period: Duration,
    /// The sandbox image, pinned as upstream pins it.
    pub sandbox_image: String,
}

/// When each image was first seen and last seen in use.
#[derive(Default)]
pub struct Usage {
    first_seen: HashMap<String, Instant>,
    last_used: HashMap<String, Instant>,
}

fn fs_usage(path: &std::path::Path) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is NUL-terminated.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then_some(st)?
    };
    let capacity = st.f_blocks * st.f_frsize;
    let used = (st.f_blocks - st.f_bfree) * st.f_frsize;
    Some((used, capacity))
}

impl ImageGc {
    pub async fn run(self) {
        let mut usage = Usage::default();
        loop {
            tokio::time::sleep(self.period).await;
            if let Err(e) = self.round(&mut usage).await {
                tracing::warn!(error = %e, "image garbage collection");
            }
        }
    }

    /// One round: record which images are in use, and free space if the threshold is passed.
    /// Returns the bytes freed.
    pub async fn round(&self, usage: &mut Usage) -> Result<u64, String> {
        let images = self
            .runtime
            .list_images(api::ListImagesRequest::default())
            .await
            .map_err(|e| e.message().to_string())?
            .images;
        let containers = self
            .runtime
            .list_containers(api::ListContainersRequest::default())
            .await
            .map_err(|e| e.message().to_string())?
            .containers;
        let now = Instant::now();
        let in_use: HashSet<&str> = containers
            .iter()
            .flat_map(|c| {
                [
                    c.image_ref.as_str(),
                    c.image.as_ref().map_or("", |i| i.image.as_str()),
                ]
            })
            .filter(|s| !s.is_empty())
            .collect();
        let used = |img: &api::Image| {
            in_use.contains(img.id.as_str())
                || img.repo_tags.iter().any(|t| in_use.contains(t.as_str()))
                || img.repo_digests.iter().any(|d| in_use.contains(d.as_str()))
        };
        for img in &images {
            usage.first_seen.entry(img.id.clone()).or_insert(now);
            if used(img) {
                usage.last_used.insert(img.id.clone(), now);
            }
        }
        let known: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        usage.first_seen.retain(|k, _| known.contains(k.as_str()));
        usage.last_used.retain(|k, _| known.contains(k.as_str()));

        let Some((used_bytes, capacity)) = fs_usage(&self.image_fs) else {
            return Ok(0);
        };
        if capacity == 0 || used_bytes * 100 < u64::from(self.high_percent) * capacity {
            return Ok(0);
        }
        let target = used_bytes.saturating_sub(u64::from(self.low_percent) * capacity / 100);
        let mut candidates: Vec<&api::Image> = images
            .iter()
            .filter(|i| !used(i) && !i.pinned)
            .filter(|i| !i.repo_tags.contains(&self.sandbox_image))
            .filter(|i| {
                usage
                    .first_seen
                    .get(&i.id)
                    .is_some_and(|t| now.duration_since(*t) >= self.minimum_age)
            })
            .collect();
        // Least recently used first; never used counts as oldest.
        candidates.sort_by_key(|i| usage.last_used.get(&i.id).copied());
        let mut freed = 0u64;
        for img in candidates {
            if freed >= target {
                break;
            }
            match self
                .runtime
                .remove_image(api::RemoveImageRequest {
                    image: Some(api::ImageSpec {
                        image: img.id.clone(),
                        ..Default::default()
                    }),
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(image = %img.id, tags = ?img.repo_tags, "removed unused image");
                    freed += img.size;
                    usage.first_seen.remove(&img.id);
                    usage.last_used.remove(&img.id);
                }
                Err(e) => tracing::warn!(image = %img.id, error = %e.message(), "removing image"),
            }
        }
        Ok(freed)
    }
}
