//! configMap volumes: the ConfigMap's `data` and `binaryData` as files, refreshed on every pod
//! sync.

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, KeyToPath};
use kube::Api;

use super::api_content::{file_mode, write_volume, DEFAULT_MODE};
use super::atomic_writer::{FileProjection, Payload};
use super::empty_dir::Medium;
use super::quote::go_quote;
use super::{api_error, MountedVolume, VolumeContext, VolumeSite};

pub(crate) const PLUGIN: &str = "kubernetes.io~configmap";

pub(crate) async fn setup(
    ctx: &VolumeContext,
    site: &VolumeSite<'_>,
    source: &ConfigMapVolumeSource,
) -> Result<MountedVolume, String> {
    let optional = source.optional.unwrap_or(false);
    let config_map = get_or_empty(ctx, site.namespace, &source.name, optional).await?;
    let payload = make_payload(
        source.items.as_deref().unwrap_or_default(),
        &config_map,
        source.default_mode.unwrap_or(DEFAULT_MODE),
        optional,
    )?;
    let dir = write_volume(site, PLUGIN, Medium::Disk, None, payload).await?;
    Ok(MountedVolume {
        host_path: dir,
        read_only: true,
    })
}

/// The ConfigMap, or an empty one when it is missing and the reference is optional.
pub(crate) async fn get_or_empty(
    ctx: &VolumeContext,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<ConfigMap, String> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await.map_err(api_error)? {
        Some(cm) => Ok(cm),
        None if optional => Ok(ConfigMap::default()),
        // The kubelet's configMap manager words it with the singular resource.
        None => Err(format!("configmap {} not found", go_quote(name))),
    }
}

/// Upstream's `configmap.MakePayload`: every key when `items` is empty, else the listed keys at
/// their paths; a listed key that is missing fails unless the reference is optional.
pub(crate) fn make_payload(
    items: &[KeyToPath],
    config_map: &ConfigMap,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let default_mode = file_mode(default_mode)?;
    let data = config_map.data.as_ref();
    let binary = config_map.binary_data.as_ref();
    let mut payload = Payload::new();
    if items.is_empty() {
        for (key, value) in data.into_iter().flatten() {
            payload.insert(key.clone(), file(value.as_bytes().to_vec(), default_mode));
        }
        for (key, value) in binary.into_iter().flatten() {
            payload.insert(key.clone(), file(value.0.clone(), default_mode));
        }
        return Ok(payload);
    }
    for item in items {
        let content = match (
            data.and_then(|d| d.get(&item.key)),
            binary.and_then(|b| b.get(&item.key)),
        ) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(bytes)) => bytes.0.clone(),
            (None, None) if optional => continue,
            (None, None) => {
                return Err(format!(
                    "configmap references non-existent config key: {}",
                    item.key
                ))
            }
        };
        let mode = match item.mode {
            Some(m) => file_mode(m)?,
            None => default_mode,
        };
        payload.insert(item.path.clone(), file(content, mode));
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

    fn cm() -> ConfigMap {
        ConfigMap {
            data: Some(
                [
                    ("a".to_string(), "A".to_string()),
                    ("b".to_string(), "B".to_string()),
                ]
                .into(),
            ),
            binary_data: Some([("bin".to_string(), ByteString(vec![0, 1, 2]))].into()),
            ..Default::default()
        }
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn all_keys_with_default_mode() {
        let p = make_payload(&[], &cm(), 0o600, false).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p["a"].data, b"A");
        assert_eq!(p["bin"].data, vec![0, 1, 2]);
        assert!(p.values().all(|f| f.mode == 0o600));
    }

    #[test]
    fn items_map_keys_to_paths_with_modes() {
        let items = [item("a", "dir/x", Some(0o400)), item("bin", "y", None)];
        let p = make_payload(&items, &cm(), 0o644, false).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["dir/x"].mode, 0o400);
        assert_eq!(p["y"].mode, 0o644);
        assert_eq!(p["y"].data, vec![0, 1, 2]);
    }

    #[test]
    fn missing_key_fails_unless_optional() {
        let items = [item("nope", "x", None), item("a", "a", None)];
        assert_eq!(
            make_payload(&items, &cm(), 0o644, false).unwrap_err(),
            "configmap references non-existent config key: nope"
        );
        let p = make_payload(&items, &cm(), 0o644, true).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["a"]);
        // An absent optional ConfigMap is an empty one.
        assert!(make_payload(&items, &ConfigMap::default(), 0o644, true)
            .unwrap()
            .is_empty());
    }
}
