//! persistentVolumeClaim (and generic ephemeral) volumes: the claim must be Bound, and its
//! PersistentVolume's source must be one this node can use in place (hostPath, local).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;

use super::error::path_error;
use super::ownership::set_volume_ownership;
use super::quote::go_quote;
use super::{api_error, host_path, MountedVolume, VolumeContext, VolumeError, VolumeSite};

/// Volume sources a PersistentVolume can have, by their JSON names.
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// Which claim a volume uses.
pub(crate) struct ClaimRef<'a> {
    pub name: String,
    pub read_only: bool,
    /// Generic ephemeral volumes: the claim must have been created for this pod.
    pub ephemeral: bool,
    pub site: &'a VolumeSite<'a>,
}

pub(crate) async fn setup(
    ctx: &VolumeContext,
    claim: ClaimRef<'_>,
) -> Result<MountedVolume, VolumeError> {
    let site = claim.site;
    let claim_error = |message: String| VolumeError::Claim {
        volume: site.volume.to_string(),
        namespace: site.namespace.to_string(),
        claim: claim.name.clone(),
        message,
    };

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), site.namespace);
    let pvc = match claims.get_opt(&claim.name).await {
        Ok(Some(pvc)) => pvc,
        Ok(None) => {
            return Err(claim_error(format!(
                "failed to fetch PVC from API server: persistentvolumeclaims {} not found",
                go_quote(&claim.name)
            )))
        }
        Err(e) => {
            return Err(claim_error(format!(
                "failed to fetch PVC from API server: {}",
                api_error(e)
            )))
        }
    };
    if claim.ephemeral && !created_for_pod(&pvc, site) {
        return Err(claim_error(format!(
            "PVC {}/{} was not created for pod {}/{} (pod is not owner)",
            site.namespace,
            claim.name,
            site.namespace,
            site.pod.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    if pvc.metadata.deletion_timestamp.is_some() {
        return Err(claim_error("PVC is being deleted".to_string()));
    }
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if !bound || pv_name.is_empty() {
        return Err(claim_error("PVC is not bound".to_string()));
    }

    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv = match volumes.get_opt(&pv_name).await {
        Ok(Some(pv)) => pv,
        Ok(None) => {
            return Err(claim_error(format!(
                "failed to fetch PV {pv_name} from API server: persistentvolumes {} not found",
                go_quote(&pv_name)
            )))
        }
        Err(e) => {
            return Err(claim_error(format!(
                "failed to fetch PV {pv_name} from API server: {}",
                api_error(e)
            )))
        }
    };
    let spec = pv.spec.clone().unwrap_or_default();
    let Some(claim_ref) = &spec.claim_ref else {
        return Err(claim_error(format!(
            "found PV object {pv_name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
        )));
    };
    let claim_uid = pvc.metadata.uid.clone().unwrap_or_default();
    let ref_uid = claim_ref.uid.clone().unwrap_or_default();
    if ref_uid != claim_uid {
        return Err(claim_error(format!(
            "found PV object {pv_name} but its pv.Spec.ClaimRef.UID {ref_uid} does not point to claim.UID {claim_uid}"
        )));
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Err(claim_error(format!(
            "volume {} has volumeMode Block, but is specified in volumeMounts",
            site.volume
        )));
    }

    // Upstream names a claim-backed volume by its PersistentVolume in mount errors.
    let setup_error = |message: String| VolumeError::SetUp {
        volume: pv_name.clone(),
        message,
    };
    if let Some(hp) = &spec.host_path {
        let mounted = host_path::setup(&k8s_openapi::api::core::v1::HostPathVolumeSource {
            path: hp.path.clone(),
            type_: hp.type_.clone(),
        })
        .map_err(setup_error)?;
        return Ok(MountedVolume {
            host_path: mounted.host_path,
            read_only: claim.read_only,
        });
    }
    if let Some(local) = &spec.local {
        let path = PathBuf::from(&local.path);
        let ownership = site.ownership;
        let read_only = claim.read_only;
        let checked = path.clone();
        super::blocking(move || {
            check_local_path(&checked)?;
            if read_only {
                return Ok(());
            }
            set_volume_ownership(
                &checked,
                ownership.fs_group,
                false,
                ownership.on_root_mismatch,
            )
        })
        .await
        .map_err(setup_error)?;
        return Ok(MountedVolume {
            host_path: path,
            read_only,
        });
    }

    let kind = serde_json::to_value(&spec)
        .ok()
        .and_then(|v| {
            v.as_object().and_then(|o| {
                PV_SOURCES
                    .iter()
                    .find(|k| o.contains_key(**k))
                    .map(|k| k.to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    Err(VolumeError::Unsupported {
        volume: pv_name,
        kind: format!("PersistentVolume {kind}"),
    })
}

fn created_for_pod(pvc: &PersistentVolumeClaim, site: &VolumeSite<'_>) -> bool {
    let Some(pod_uid) = site.pod.metadata.uid.as_deref() else {
        return false;
    };
    pvc.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == pod_uid)
}

/// A local volume is used in place, so it has to be a directory already there.
fn check_local_path(path: &Path) -> Result<(), String> {
    let md = std::fs::metadata(path).map_err(|e| path_error("stat", path, &e))?;
    if !md.is_dir() {
        return Err(format!(
            "local volume path {} is not a directory; formatting and mounting devices is not supported by this kubelet",
            path.display()
        ));
    }
    Ok(())
}
