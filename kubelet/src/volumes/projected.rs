//! projected volumes: configMaps, secrets, downward API items and service account tokens
//! merged into one directory on a tmpfs.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ProjectedVolumeSource, ServiceAccountTokenProjection};

use super::api_content::{file_mode, write_volume, DEFAULT_MODE};
use super::atomic_writer::{FileProjection, Payload};
use super::empty_dir::{memory_size_limit, Medium};
use super::error::aggregate;
use super::{configmap, downward_api, secret, MountedVolume, VolumeContext, VolumeSite};

pub(crate) const PLUGIN: &str = "kubernetes.io~projected";
/// The API default of `serviceAccountToken.expirationSeconds`.
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

pub(crate) async fn setup(
    ctx: &VolumeContext,
    site: &VolumeSite<'_>,
    source: &ProjectedVolumeSource,
) -> Result<MountedVolume, String> {
    let payload = collect_data(ctx, site, source).await?;
    let size = memory_size_limit(None, site.pod, &ctx.node_allocatable);
    let dir = write_volume(site, PLUGIN, Medium::Memory, size, payload).await?;
    Ok(MountedVolume {
        host_path: dir,
        read_only: true,
    })
}

/// Upstream's projected `collectData`: each source is attempted, later sources win on path
/// clashes, and the failures are reported together.
pub(crate) async fn collect_data(
    ctx: &VolumeContext,
    site: &VolumeSite<'_>,
    source: &ProjectedVolumeSource,
) -> Result<Payload, String> {
    let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for projection in source.sources.iter().flatten() {
        let part = if let Some(s) = &projection.secret {
            let optional = s.optional.unwrap_or(false);
            match secret::get_or_empty(ctx, site.namespace, &s.name, optional).await {
                Ok(found) => secret::make_payload(
                    s.items.as_deref().unwrap_or_default(),
                    &found,
                    default_mode,
                    optional,
                ),
                Err(e) => Err(e),
            }
        } else if let Some(c) = &projection.config_map {
            let optional = c.optional.unwrap_or(false);
            match configmap::get_or_empty(ctx, site.namespace, &c.name, optional).await {
                Ok(found) => configmap::make_payload(
                    c.items.as_deref().unwrap_or_default(),
                    &found,
                    default_mode,
                    optional,
                ),
                Err(e) => Err(e),
            }
        } else if let Some(d) = &projection.downward_api {
            downward_api::collect_data(
                d.items.as_deref().unwrap_or_default(),
                site.pod,
                &ctx.node_allocatable,
                default_mode,
            )
        } else if let Some(t) = &projection.service_account_token {
            token_file(ctx, site, t, default_mode).await
        } else if projection.cluster_trust_bundle.is_some() {
            Err("clusterTrustBundle projections are not supported by this kubelet".to_string())
        } else {
            Ok(Payload::new())
        };
        match part {
            Ok(part) => payload.extend(part),
            Err(e) => errors.push(e),
        }
    }
    match aggregate(errors) {
        Some(e) => Err(e),
        None => Ok(payload),
    }
}

async fn token_file(
    ctx: &VolumeContext,
    site: &VolumeSite<'_>,
    projection: &ServiceAccountTokenProjection,
    default_mode: i32,
) -> Result<Payload, String> {
    // With fsGroup the ownership pass widens this to 0640; without one the token stays
    // private to the pod's single user.
    let mode = if site.ownership.fs_user.is_some() || site.ownership.fs_group.is_some() {
        0o600
    } else {
        file_mode(default_mode)?
    };
    let request = token_request(site, projection);
    let service_account = site
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let issued = ctx
        .tokens
        .get_service_account_token(site.namespace, service_account, &request)
        .await?;
    let token = issued
        .status
        .map(|s| s.token)
        .ok_or_else(|| "token request returned no token".to_string())?;
    let mut payload = Payload::new();
    payload.insert(
        projection.path.clone(),
        FileProjection {
            data: token.into_bytes(),
            mode,
            fs_user: site.ownership.fs_user,
        },
    );
    Ok(payload)
}

/// The TokenRequest for a projection, bound to the pod so the token dies with it.
pub(crate) fn token_request(
    site: &VolumeSite<'_>,
    projection: &ServiceAccountTokenProjection,
) -> TokenRequest {
    let audiences = projection
        .audience
        .iter()
        .filter(|a| !a.is_empty())
        .cloned()
        .collect();
    TokenRequest {
        spec: TokenRequestSpec {
            audiences,
            expiration_seconds: Some(
                projection
                    .expiration_seconds
                    .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS),
            ),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: site.pod.metadata.name.clone(),
                uid: site.pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    }
}
