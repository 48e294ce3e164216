//! The ServiceAccount admission plugin, as upstream's: a new pod runs as `default` unless it
//! names an account, the account must exist, its image pull secrets are inherited, and unless
//! the pod or the account turns automounting off, every container and init container mounts a
//! projected `kube-api-access-xxxxx` volume (token, cluster CA, namespace) at
//! `/var/run/secrets/kubernetes.io/serviceaccount`. Mirror pods are left alone but may not
//! reference accounts or secrets.

use std::time::Duration;

use serde_json::{json, Value};

use crate::meta;
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult, Subject};

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub const VOLUME_PREFIX: &str = "kube-api-access-";
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const ENFORCE_MOUNTABLE_SECRETS: &str = "kubernetes.io/enforce-mountable-secrets";

fn forbidden(pod: &Value, why: &str) -> ApiError {
    ApiError::forbidden(
        Subject {
            group: "",
            resource: "pods",
            name: meta::name(pod),
        },
        why,
    )
}

/// Go's `strconv.ParseBool`, true values only.
fn parse_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// Five characters from the alphabet upstream's name generator uses.
fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// How long a pod's create waits for its namespace's `default` account. Upstream retries
/// its lookup nine times 100-200 ms apart; this is that, near enough, as one deadline.
const DEFAULT_ACCOUNT_WAIT: Duration = Duration::from_millis(1500);

/// The account, from the cache and then the store. The `default` account is waited for,
/// since its controller creates it along with the namespace and a pod may come first.
async fn service_account(reg: &Registry, namespace: &str, name: &str) -> ApiResult<Value> {
    match super::lookup(reg, "serviceaccounts", Some(namespace), name).await {
        Err(e) if e.code == 404 => {}
        other => return other,
    }
    if name == DEFAULT_SERVICE_ACCOUNT {
        let res = reg
            .table
            .lookup("", "v1", "serviceaccounts")
            .ok_or_else(|| ApiError::internal("serviceaccounts are not served"))?;
        match reg
            .wait_for_object(&res, Some(namespace), name, DEFAULT_ACCOUNT_WAIT)
            .await
        {
            Err(e) if e.code == 404 => {}
            other => return other,
        }
    }
    // Upstream's message names the resource in the singular.
    Err(ApiError::not_found(Subject {
        group: "",
        resource: "serviceaccount",
        name,
    }))
}

/// Mutating admission of a new pod.
pub async fn admit(reg: &Registry, pod: &mut Value) -> ApiResult<()> {
    let namespace = meta::namespace(pod).to_string();
    if meta::annotations(pod).contains_key(MIRROR_ANNOTATION) {
        return validate_mirror(pod);
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let sa_name = match spec.get("serviceAccountName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            spec.insert("serviceAccountName".into(), json!(DEFAULT_SERVICE_ACCOUNT));
            spec.insert("serviceAccount".into(), json!(DEFAULT_SERVICE_ACCOUNT));
            DEFAULT_SERVICE_ACCOUNT.to_string()
        }
    };
    let sa = match service_account(reg, &namespace, &sa_name).await {
        Ok(sa) => sa,
        Err(e) => {
            return Err(forbidden(
                pod,
                &format!(
                    "error looking up service account {namespace}/{sa_name}: {}",
                    e.message
                ),
            ))
        }
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    let pod_has_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !pod_has_pull_secrets {
        let inherited: Vec<Value> = sa
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| json!({"name": s.get("name").cloned().unwrap_or(json!(""))}))
                    .collect()
            })
            .unwrap_or_default();
        if !inherited.is_empty() {
            spec.insert("imagePullSecrets".into(), Value::Array(inherited));
        }
    }
    let enforce = meta::annotations(&sa)
        .get(ENFORCE_MOUNTABLE_SECRETS)
        .is_some_and(|v| parse_bool(v));
    if enforce {
        if let Err(why) = limit_secret_references(&sa, pod) {
            return Err(forbidden(pod, &why));
        }
    }
    Ok(())
}

/// The projected volume upstream's plugin adds, fields in the API's order.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": super::claims::WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    })
}

fn mount_token(spec: &mut serde_json::Map<String, Value>) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vols| {
            vols.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(VOLUME_PREFIX))
                .map(str::to_string)
        });
    let has_volume = existing.is_some();
    let volume_name = existing.unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", random_suffix()));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounted = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .is_some_and(|ms| {
                    ms.iter()
                        .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH))
                });
            if mounted {
                continue;
            }
            match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                Some(ms) => ms.push(mount.clone()),
                None => {
                    c.insert("volumeMounts".into(), json!([mount.clone()]));
                }
            }
            needs_volume = true;
        }
    }
    if !has_volume && needs_volume {
        match spec.get_mut("volumes").and_then(Value::as_array_mut) {
            Some(vols) => vols.push(token_volume(&volume_name)),
            None => {
                spec.insert("volumes".into(), json!([token_volume(&volume_name)]));
            }
        }
    }
}

/// Every container of the pod with the name upstream's messages give its kind.
fn containers(spec: &Value) -> Vec<(&'static str, &Value)> {
    let mut out = Vec::new();
    for (list, label) in [
        ("initContainers", "init container"),
        ("containers", "container"),
        ("ephemeralContainers", "ephemeral container"),
    ] {
        if let Some(cs) = spec.get(list).and_then(Value::as_array) {
            out.extend(cs.iter().map(|c| (label, c)));
        }
    }
    out
}

/// Upstream's check for accounts annotated `kubernetes.io/enforce-mountable-secrets`: the pod
/// may use only the secrets the account lists.
fn limit_secret_references(sa: &Value, pod: &Value) -> Result<(), String> {
    let names = |key: &str| -> Vec<String> {
        sa.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mountable = names("secrets");
    let sa_name = meta::name(sa);
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(secret) = v.get("secret") {
            let name = secret
                .get("secretName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !mountable.iter().any(|m| m == name) {
                return Err(format!(
                    "volume with secret.secretName=\"{name}\" is not allowed because service account {sa_name} does not reference that secret"
                ));
            }
        }
    }
    for (label, c) in containers(&spec) {
        if label == "ephemeral container" {
            continue;
        }
        let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
        for env in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            if let Some(name) = env
                .pointer("/valueFrom/secretKeyRef/name")
                .and_then(Value::as_str)
            {
                if !mountable.iter().any(|m| m == name) {
                    let ename = env.get("name").and_then(Value::as_str).unwrap_or("");
                    return Err(format!(
                        "{label} {cname} with envVar {ename} referencing secret.secretName=\"{name}\" is not allowed because service account {sa_name} does not reference that secret"
                    ));
                }
            }
        }
        for from in c
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = from.pointer("/secretRef/name").and_then(Value::as_str) {
                if !mountable.iter().any(|m| m == name) {
                    return Err(format!(
                        "{label} {cname} with envFrom referencing secret.secretName=\"{name}\" is not allowed because service account {sa_name} does not reference that secret"
                    ));
                }
            }
        }
    }
    let pull = names("imagePullSecrets");
    for (i, s) in spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = s.get("name").and_then(Value::as_str).unwrap_or("");
        if !pull.iter().any(|p| p == name) {
            return Err(format!(
                "imagePullSecrets[{i}].name=\"{name}\" is not allowed because service account {sa_name} does not reference that imagePullSecret"
            ));
        }
    }
    Ok(())
}

/// Whether the pod names any secret, as upstream's `VisitPodSecretNames`.
fn references_secrets(spec: &Value) -> bool {
    let named = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|s| named(s.get("name"))))
    {
        return true;
    }
    for (_, c) in containers(spec) {
        let env_refs = c
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|e| named(e.pointer("/valueFrom/secretKeyRef/name")));
        let from_refs = c
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|e| named(e.pointer("/secretRef/name")));
        if env_refs || from_refs {
            return true;
        }
    }
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let direct = [
            "/secret/secretName",
            "/azureFile/secretName",
            "/cephfs/secretRef/name",
            "/cinder/secretRef/name",
            "/flexVolume/secretRef/name",
            "/iscsi/secretRef/name",
            "/rbd/secretRef/name",
            "/scaleIO/secretRef/name",
            "/storageos/secretRef/name",
            "/csi/nodePublishSecretRef/name",
        ];
        if direct.iter().any(|p| named(v.pointer(p))) {
            return true;
        }
        if v.pointer("/projected/sources")
            .and_then(Value::as_array)
            .is_some_and(|ss| ss.iter().any(|s| named(s.pointer("/secret/name"))))
        {
            return true;
        }
    }
    false
}

fn validate_mirror(pod: &Value) -> ApiResult<()> {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    if spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(forbidden(
            pod,
            "a mirror pod may not reference service accounts",
        ));
    }
    if references_secrets(&spec) {
        return Err(forbidden(pod, "a mirror pod may not reference secrets"));
    }
    let projects_token = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/projected/sources").and_then(Value::as_array))
        .flatten()
        .any(|s| s.get("serviceAccountToken").is_some());
    if projects_token {
        return Err(forbidden(
            pod,
            "a mirror pod may not use ServiceAccountToken volume projections",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn mounts_in_every_container_once() {
        let mut spec = spec_of(json!({
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [
                {"name": "a", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "b", "image": "x", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        mount_token(&mut spec);
        let vols = spec["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        let name = vols[1]["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(vols[1], token_volume(name));
        let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"][1], mount);
        // A container that mounts something there already keeps it.
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        // Mounting again changes nothing.
        let before = spec.clone();
        mount_token(&mut spec);
        assert_eq!(spec, before);
    }

    #[test]
    fn volume_has_upstream_shape() {
        let v = token_volume("kube-api-access-abcde");
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            concat!(
                r#"{"name":"kube-api-access-abcde","projected":{"sources":["#,
                r#"{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},"#,
                r#"{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},"#,
                r#"{"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}],"#,
                r#""defaultMode":420}}"#
            )
        );
    }

    #[test]
    fn enforced_accounts_limit_secrets() {
        let sa = json!({"metadata": {"name": "robot"}, "secrets": [{"name": "ok"}]});
        let pod = json!({"spec": {"containers": [{"name": "c", "env": [
            {"name": "E", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}
        ]}]}});
        assert_eq!(
            limit_secret_references(&sa, &pod).unwrap_err(),
            "container c with envVar E referencing secret.secretName=\"other\" is not allowed because service account robot does not reference that secret"
        );
        let pod = json!({"spec": {"volumes": [{"name": "v", "secret": {"secretName": "ok"}}]}});
        assert!(limit_secret_references(&sa, &pod).is_ok());
    }

    #[test]
    fn mirror_pods_may_not_use_accounts_or_secrets() {
        let pod = json!({"metadata": {"name": "m"}, "spec": {"serviceAccountName": "x"}});
        assert!(validate_mirror(&pod)
            .unwrap_err()
            .message
            .contains("may not reference service accounts"));
        let pod = json!({"metadata": {"name": "m"}, "spec": {"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}});
        assert!(validate_mirror(&pod)
            .unwrap_err()
            .message
            .contains("may not reference secrets"));
        assert!(validate_mirror(&json!({"spec": {"containers": []}})).is_ok());
    }

    /// A registry on an embedded store in `dir`, with its watch cache running.
    async fn registry(dir: &std::path::Path) -> Registry {
        use std::sync::Arc;
        let store: Arc<dyn ferrokube_storage::Store> =
            ferrokube_storage::embedded::EmbeddedStore::open(dir).unwrap();
        let table = Arc::new(crate::resources::ResourceTable::new(
            crate::resources::builtin_resources(),
        ));
        let mut prefixes: Vec<String> = table
            .all()
            .iter()
            .filter_map(|r| r.key_prefix(None))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let cache = crate::watchcache::WatchCache::start(
            store.clone(),
            prefixes,
            crate::watchcache::DEFAULT_HISTORY,
        )
        .await
        .unwrap();
        Registry {
            store,
            table,
            cache,
            alloc: crate::alloc::Allocators::new(
                crate::alloc::Cidr::parse("10.96.0.0/12").unwrap(),
                (30000, 32767),
            ),
            admission: crate::admission::Plugins::without(&[]).unwrap(),
        }
    }

    fn new_pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "fresh"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    }

    #[tokio::test]
    async fn admission_waits_for_the_default_account() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path()).await;
        let mut pod = new_pod();
        let mut admitted = Box::pin(admit(&reg, &mut pod));
        // The lookups before the wait do not yield on the embedded store, so one poll gets the
        // admission past them: the account is missing and it is waiting when the account comes.
        assert!(futures::poll!(admitted.as_mut()).is_pending());
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "fresh", "uid": "u1"},
            "imagePullSecrets": [{"name": "regcred"}]});
        let creator = tokio::spawn({
            let store = reg.store.clone();
            async move {
                store
                    .create(
                        "/registry/serviceaccounts/fresh/default",
                        serde_json::to_vec(&account).unwrap(),
                    )
                    .await
                    .unwrap()
            }
        });
        admitted.await.unwrap();
        creator.await.unwrap();
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        // Taken from the account that arrived.
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}])
        );
        assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn admission_gives_up_on_a_default_account_that_never_comes() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path()).await;
        let err = admit(&reg, &mut new_pod()).await.unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: error looking up service account fresh/default: serviceaccount \"default\" not found"
        );
    }
}
