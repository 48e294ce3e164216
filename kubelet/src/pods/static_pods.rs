//! Static pods: pods from manifest files in `--pod-manifest-path` (staticPodPath), which the
//! kubelet runs on its own, and their mirror pods, the read-only copies it keeps in the API
//! so that they show in `kubectl get pods` (upstream's `config/file.go` and mirror client).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";

/// A pod the API holds as the mirror of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// A pod that came from a manifest file.
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE))
        .is_some_and(|s| s == "file")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads every manifest in `dir` (YAML or JSON, one pod each; hidden files skipped) and
/// applies upstream's defaults. A file that does not decode is logged and skipped.
pub fn read_dir(dir: &Path, node: &str) -> Vec<Pod> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    let mut pods = Vec::new();
    for f in files {
        match read_file(&f, node) {
            Ok(p) => pods.push(p),
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %e, "could not process manifest file")
            }
        }
    }
    pods
}

/// One manifest as the pod the kubelet runs: named `<name>-<node>`, bound to the node, with
/// a uid derived from its content, node and file, the config annotations, and a toleration
/// of every NoExecute taint.
pub fn read_file(path: &Path, node: &str) -> anyhow::Result<Pod> {
    let text = std::fs::read_to_string(path)?;
    let value: serde_json::Value = serde_yaml_ng::from_str(&text)?;
    if value.get("kind").and_then(|k| k.as_str()) != Some("Pod") {
        anyhow::bail!("the manifest is not a Pod");
    }
    let mut pod: Pod = serde_json::from_value(value)?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the pod has no name"))?;
    let uid = pod
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(text.as_bytes());
            ctx.update(format!("host:{node}").as_bytes());
            ctx.update(format!("file:{}", path.display()).as_bytes());
            hex(&ctx.finish().as_ref()[..16])
        });
    pod.metadata.name = Some(format!("{name}-{}", node.to_lowercase()));
    pod.metadata.uid = Some(uid.clone());
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some("default".into());
    }
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH.into(), uid);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    annotations.insert(CONFIG_SEEN.into(), chrono::Utc::now().to_rfc3339());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    spec.tolerations
        .get_or_insert_with(Vec::new)
        .push(Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        });
    pod.status = None;
    Ok(pod)
}

/// The mirror pod of a static pod: the same pod with the mirror annotation, owned by the
/// Node, uid left to the apiserver.
pub fn mirror_of(pod: &Pod, node: &Node) -> Pod {
    let mut mirror = pod.clone();
    mirror.metadata.uid = None;
    let hash = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH))
        .cloned()
        .unwrap_or_default();
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    if let (Some(name), Some(uid)) = (node.metadata.name.clone(), node.metadata.uid.clone()) {
        mirror.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name,
            uid,
            controller: Some(true),
            ..Default::default()
        }]);
    }
    mirror
}

fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(CONFIG_MIRROR)
        .map(String::as_str)
}

/// Makes the API's mirror pods match the static pods: creates missing ones, replaces those
/// of an older manifest, deletes those whose static pod is gone.
pub async fn sync_mirrors(client: &kube::Client, node: &Node, statics: &[Pod]) -> kube::Result<()> {
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let all: Api<Pod> = Api::all(client.clone());
    let on_node = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
        .await?;
    let mirrors: Vec<&Pod> = on_node.items.iter().filter(|p| is_mirror(p)).collect();
    for s in statics {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let name = s.metadata.name.clone().unwrap_or_default();
        let hash = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_HASH))
            .cloned();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let existing = on_node.items.iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(&ns)
                && p.metadata.name.as_deref() == Some(&name)
        });
        match existing {
            Some(p)
                if mirror_hash(p) == hash.as_deref() && p.metadata.deletion_timestamp.is_none() =>
            {
                continue
            }
            Some(p) => {
                // A pod of that name that is not this manifest's mirror goes first.
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: p.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let _ = api.delete(&name, &params).await;
            }
            None => {}
        }
        match api
            .create(&PostParams::default(), &mirror_of(s, node))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    for m in mirrors {
        let wanted = statics.iter().any(|s| {
            s.metadata.namespace == m.metadata.namespace && s.metadata.name == m.metadata.name
        });
        if !wanted {
            let api: Api<Pod> = Api::namespaced(
                client.clone(),
                m.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let _ = api
                .delete(
                    m.metadata.name.as_deref().unwrap_or(""),
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("web.yaml");
        std::fs::write(&f, "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: a pod").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: Service").unwrap();
        let pods = read_dir(dir.path(), "Node-A");
        assert_eq!(pods.len(), 1);
        let p = &pods[0];
        assert_eq!(p.metadata.name.as_deref(), Some("web-node-a"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert!(is_static(p));
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some("Node-A")
        );
        // Same content, same uid; another node, another uid.
        assert_eq!(
            read_file(&f, "Node-A").unwrap().metadata.uid,
            Some(uid.clone())
        );
        assert_ne!(
            read_file(&f, "node-b").unwrap().metadata.uid,
            Some(uid.clone())
        );
        let node = Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("Node-A".into()),
                uid: Some("n-uid".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = mirror_of(p, &node);
        assert!(is_mirror(&m));
        assert_eq!(m.metadata.uid, None);
        assert_eq!(m.metadata.owner_references.unwrap()[0].kind, "Node");
    }
}
