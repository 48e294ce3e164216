//! secret volumes: the Secret's `data` as files on a tmpfs, so secrets never reach the node's
//! disk; refreshed on every pod sync.

use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource};
use kube::Api;

use super::api_content::{file_mode, write_volume, DEFAULT_MODE};
use super::atomic_writer::{FileProjection, Payload};
use super::empty_dir::{memory_size_limit, Medium};
use super::quote::go_quote;
use super::{api_error, MountedVolume, VolumeContext, VolumeSite};

pub(crate) const PLUGIN: &str = "kubernetes.io~secret";

pub(crate) async fn setup(
    ctx: &VolumeContext,
    site: &VolumeSite<'_>,
    source: &SecretVolumeSource,
) -> Result<MountedVolume, String> {
    let optional = source.optional.unwrap_or(false);
    let name = source.secret_name.as_deref().unwrap_or_default();
    let secret = get_or_empty(ctx, site.namespace, name, optional).await?;
    let payload = make_payload(
        source.items.as_deref().unwrap_or_default(),
        &secret,
        source.default_mode.unwrap_or(DEFAULT_MODE),
        optional,
    )?;
    let size = memory_size_limit(None, site.pod, &ctx.node_allocatable);
    let dir = write_volume(site, PLUGIN, Medium::Memory, size, payload).await?;
    Ok(MountedVolume {
        host_path: dir,
        read_only: true,
    })
}

/// The Secret, or an empty one when it is missing and the reference is optional.
pub(crate) async fn get_or_empty(
    ctx: &VolumeContext,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Secret, String> {
    if name.is_empty() {
        return Err("secret name must not be empty".to_string());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await.map_err(api_error)? {
        Some(secret) => Ok(secret),
        None if optional => Ok(Secret::default()),
        // The kubelet's secret manager words it with the singular resource.
        None => Err(format!("secret {} not found", go_quote(name))),
    }
}

/// Upstream's `secret.MakePayload`, the same rules as for ConfigMaps over `data`.
pub(crate) fn make_payload(
    items: &[KeyToPath],
    secret: &Secret,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let default_mode = file_mode(default_mode)?;
    let data = secret.data.as_ref();
    let mut payload = Payload::new();
    if items.is_empty() {
        for (key, value) in data.into_iter().flatten() {
            payload.insert(key.clone(), file(value.0.clone(), default_mode));
        }
        return Ok(payload);
    }
    for item in items {
        let Some(content) = data.and_then(|d| d.get(&item.key)) else {
            if optional {
                continue;
            }
            return Err(format!(
                "secret references non-existent secret key: {}",
                item.key
            ));
        };
        let mode = match item.mode {
            Some(m) => file_mode(m)?,
            None => default_mode,
        };
        payload.insert(item.path.clone(), file(content.0.clone(), mode));
    }
    Ok(payload)
}

fn file(data: Vec<u8>, mode: u32) -> FileProjection {
    FileProjection {
        data,
        mode,
        fs_user: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret() -> Secret {
        Secret {
            data: Some(
                [
                    ("user".to_string(), ByteString(b"admin".to_vec())),
                    ("pass".to_string(), ByteString(b"s3cr3t".to_vec())),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn payloads() {
        let all = make_payload(&[], &secret(), 0o400, false).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.values().all(|f| f.mode == 0o400));
        let items = [KeyToPath {
            key: "pass".into(),
            path: "creds/password".into(),
            mode: Some(0o440),
        }];
        let some = make_payload(&items, &secret(), 0o644, false).unwrap();
        assert_eq!(some["creds/password"].data, b"s3cr3t");
        assert_eq!(some["creds/password"].mode, 0o440);
        let missing = [KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        assert_eq!(
            make_payload(&missing, &secret(), 0o644, false).unwrap_err(),
            "secret references non-existent secret key: nope"
        );
        assert!(make_payload(&missing, &secret(), 0o644, true)
            .unwrap()
            .is_empty());
    }
}
