//! A container's environment, as upstream's `makeEnvironmentVariables` (`kubelet_pods.go`),
//! `envvars.FromServices` and the forked `expansion` package build it.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::qos::parse_quantity;
use super::{go_quote, pod_name, pod_namespace, pod_uid, ConfigError};

/// Where ConfigMaps and Secrets come from; `Ok(None)` means the object does not exist.
#[async_trait]
pub trait Lookup: Send + Sync {
    async fn config_map(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ConfigMap>>;
    async fn secret(&self, namespace: &str, name: &str) -> anyhow::Result<Option<Secret>>;
}

/// Lookups straight from the apiserver.
#[derive(Clone)]
pub struct ApiLookup {
    client: kube::Client,
}

impl ApiLookup {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Lookup for ApiLookup {
    async fn config_map(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ConfigMap>> {
        let api = kube::Api::<ConfigMap>::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?)
    }

    async fn secret(&self, namespace: &str, name: &str) -> anyhow::Result<Option<Secret>> {
        let api = kube::Api::<Secret>::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?)
    }
}

/// In-memory ConfigMaps and Secrets, keyed by (namespace, name): for tests, and for static pods
/// whose objects the kubelet already holds.
#[derive(Debug, Clone, Default)]
pub struct StaticLookup {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
}

#[async_trait]
impl Lookup for StaticLookup {
    async fn config_map(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ConfigMap>> {
        Ok(self
            .config_maps
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }

    async fn secret(&self, namespace: &str, name: &str) -> anyhow::Result<Option<Secret>> {
        Ok(self
            .secrets
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }
}

/// What the environment of a pod's containers depends on besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct EnvContext<'a> {
    pub pod: &'a Pod,
    /// The pod's IPs, primary first (upstream orders them by the node's IP family preference).
    pub pod_ips: &'a [String],
    /// The node's IPs, primary first (`status.hostIP(s)`).
    pub host_ips: &'a [String],
    /// The node's allocatable resources, the limit of containers that set none.
    pub node_allocatable: &'a BTreeMap<String, ApiQuantity>,
    /// Every Service the kubelet knows (all namespaces; the `kubernetes` Service of `default`
    /// is picked out of them).
    pub services: &'a [Service],
}

// ---- $(VAR) expansion -------------------------------------------------------------------------

/// Upstream's `expansion.Expand`: `$(NAME)` is replaced by `mapping(NAME)`, or left as written
/// when the mapping has no value; `$$` is an escaped `$`; a `$` before anything else, and an
/// unterminated `$(`, are kept as they are.
pub fn expand(input: &str, mapping: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let Some(next) = after.chars().next() else {
            // A `$` at the very end is kept.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match mapping(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 2..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            c => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A map from the final environment, later entries winning as upstream's `envVarsToMap` does.
fn env_map(envs: &[(String, String)]) -> HashMap<&str, &str> {
    envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Upstream's `ExpandContainerCommandAndArgs`: `$(VAR)` in command and args from the final
/// environment.
pub fn expand_command_and_args(
    container: &Container,
    envs: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let map = env_map(envs);
    let mapping = |name: &str| map.get(name).map(|v| v.to_string());
    let expand_all = |items: &Option<Vec<String>>| {
        items
            .iter()
            .flatten()
            .map(|s| expand(s, mapping))
            .collect::<Vec<_>>()
    };
    (expand_all(&container.command), expand_all(&container.args))
}

/// Upstream's `ExpandContainerVolumeMounts`: a `subPathExpr` expanded with the final
/// environment, every reference required to have a non-empty value.
pub fn expand_sub_path_expr(expr: &str, envs: &[(String, String)]) -> Result<String, ConfigError> {
    let map = env_map(envs);
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let expanded = expand(expr, |name| {
        let value = map.get(name).copied().unwrap_or_default();
        if value.is_empty() {
            missing.borrow_mut().insert(name.to_string());
        }
        Some(value.to_string())
    });
    let missing = missing.into_inner();
    if !missing.is_empty() {
        let list: Vec<String> = missing.into_iter().collect();
        return Err(ConfigError(format!(
            "missing value for {}",
            list.join(", ")
        )));
    }
    Ok(expanded)
}

// ---- Service links ----------------------------------------------------------------------------

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

fn cluster_ip(service: &Service) -> Option<&str> {
    let ip = service.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// `net.JoinHostPort`: IPv6 addresses in brackets.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Upstream's `envvars.FromServices` for one Service: `<SVC>_SERVICE_HOST`,
/// `<SVC>_SERVICE_PORT` (and `_<PORTNAME>` for named ports), then the Docker-link variables
/// `<SVC>_PORT`, `<SVC>_PORT_<port>_<PROTO>` with `_PROTO`, `_PORT` and `_ADDR`.
pub fn service_variables(service: &Service) -> Vec<(String, String)> {
    let Some(ip) = cluster_ip(service) else {
        return Vec::new();
    };
    let prefix = env_name(service.metadata.name.as_deref().unwrap_or_default());
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let mut out = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string())];
    let Some(first) = ports.first() else {
        return out;
    };
    let service_port = format!("{prefix}_SERVICE_PORT");
    out.push((service_port.clone(), first.port.to_string()));
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{service_port}_{}", env_name(name)),
                p.port.to_string(),
            ));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let protocol = p
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", join_host_port(ip, p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
    }
    out
}

/// Upstream's `getServiceEnvVarMap`: the variables of the `kubernetes` Service of `default`
/// always, and with `enableServiceLinks` those of every Service of the pod's namespace (one of
/// which, named `kubernetes`, would win over the default one).
pub fn service_env(
    namespace: &str,
    enable_service_links: bool,
    services: &[Service],
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        if cluster_ip(service).is_none() {
            continue;
        }
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let ns = service.metadata.namespace.as_deref().unwrap_or_default();
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(service);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, service);
        }
    }
    chosen.values().flat_map(|s| service_variables(s)).collect()
}

// ---- The downward API -------------------------------------------------------------------------

/// Upstream's `SplitMaybeSubscriptedPath`: `metadata.labels['k']` → (`metadata.labels`, `k`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let s = path.strip_suffix("']")?;
    let (head, key) = s.split_once("['")?;
    (!head.is_empty()).then_some((head, key))
}

/// Upstream's `fieldpath.FormatMap`: sorted `key="value"` lines.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a `fieldRef` (upstream's `podFieldSelectorRuntimeValue` after
/// `ConvertDownwardAPIFieldLabel`).
pub fn field_ref_value(
    selector: &ObjectFieldSelector,
    pod: &Pod,
    pod_ips: &[String],
    host_ips: &[String],
) -> Result<String, ConfigError> {
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if version != "v1" {
        return Err(ConfigError(format!("unsupported pod version: {version}")));
    }
    let path = selector.field_path.as_str();
    if let Some((head, key)) = split_subscript(path) {
        let (map, check) = match head {
            "metadata.annotations" => (
                pod.metadata.annotations.as_ref(),
                ferrokube_common::labels::validate_qualified_name(&key.to_lowercase()),
            ),
            "metadata.labels" => (
                pod.metadata.labels.as_ref(),
                ferrokube_common::labels::validate_qualified_name(key),
            ),
            _ => {
                return Err(ConfigError(format!(
                    "field label does not support subscript: {path}"
                )))
            }
        };
        if !check.is_empty() {
            return Err(ConfigError(format!(
                "invalid key subscript in {path}: {}",
                check.join(";")
            )));
        }
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => Ok(pod_name(pod).to_string()),
        "metadata.namespace" => Ok(pod_namespace(pod).to_string()),
        "metadata.uid" => Ok(pod_uid(pod).to_string()),
        "metadata.labels" => Ok(format_map(pod.metadata.labels.as_ref())),
        "metadata.annotations" => Ok(format_map(pod.metadata.annotations.as_ref())),
        "spec.nodeName" | "spec.host" => {
            Ok(spec.and_then(|s| s.node_name.clone()).unwrap_or_default())
        }
        "spec.serviceAccountName" => Ok(spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default()),
        "status.podIP" => Ok(pod_ips.first().cloned().unwrap_or_default()),
        "status.podIPs" => Ok(pod_ips.join(",")),
        "status.hostIP" => host_ips
            .first()
            .cloned()
            .ok_or_else(|| ConfigError::new("failed to get host IPs: the node has no addresses")),
        "status.hostIPs" => {
            if host_ips.is_empty() {
                return Err(ConfigError::new(
                    "failed to get host IPs: the node has no addresses",
                ));
            }
            Ok(host_ips.join(","))
        }
        // Accepted by the conversion but not extractable, exactly as upstream.
        "spec.restartPolicy" | "spec.schedulerName" | "status.phase" => {
            Err(ConfigError(format!("unsupported fieldPath: {path}")))
        }
        _ => Err(ConfigError(format!("field label not supported: {path}"))),
    }
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    super::containers(pod)
        .iter()
        .chain(super::init_containers(pod))
        .find(|c| c.name == name)
}

fn resource_quantity(
    container: &Container,
    list: &str,
    name: &str,
) -> Option<ferrokube_common::quantity::Quantity> {
    let r = container.resources.as_ref()?;
    let list = if list == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    };
    list?.get(name).and_then(parse_quantity)
}

/// A limit the container does not set is the node's allocatable (upstream's
/// `MergeContainerResourceLimits`, hugepages excepted since they are never overcommitted).
fn defaulted_limit(
    container: &Container,
    name: &str,
    allocatable: &BTreeMap<String, ApiQuantity>,
) -> Option<ferrokube_common::quantity::Quantity> {
    match resource_quantity(container, "limits", name) {
        Some(q) if !q.is_zero() => Some(q),
        own => allocatable.get(name).and_then(parse_quantity).or(own),
    }
}

/// The value of a `resourceFieldRef` (upstream's `ExtractContainerResourceValue` on the
/// container with limits defaulted to the node's allocatable): cpu in units of the divisor's
/// millicores, everything else in units of the divisor's value, rounded up.
pub fn resource_field_ref_value(
    selector: &ResourceFieldSelector,
    pod: &Pod,
    container: &Container,
    node_allocatable: &BTreeMap<String, ApiQuantity>,
) -> Result<String, ConfigError> {
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => find_container(pod, name)
            .ok_or_else(|| ConfigError(format!("container {name} not found")))?,
        None => container,
    };
    let divisor = selector
        .divisor
        .as_ref()
        .and_then(parse_quantity)
        .filter(|d| !d.is_zero())
        .unwrap_or_else(|| ferrokube_common::quantity::Quantity::new(1, Default::default()));
    let (list, name) = selector
        .resource
        .split_once('.')
        .filter(|(list, _)| *list == "limits" || *list == "requests")
        .ok_or_else(|| {
            ConfigError(format!(
                "unsupported container resource : {}",
                selector.resource
            ))
        })?;
    let known =
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !known {
        return Err(ConfigError(format!(
            "unsupported container resource : {}",
            selector.resource
        )));
    }
    let value = if list == "limits" && !name.starts_with("hugepages-") {
        defaulted_limit(container, name, node_allocatable)
    } else {
        resource_quantity(container, list, name)
    };
    let value = value.unwrap_or_default();
    let ratio = if name == "cpu" {
        value.milli_value() as f64 / divisor.milli_value().max(1) as f64
    } else {
        value.value() as f64 / divisor.value().max(1) as f64
    };
    Ok((ratio.ceil() as i64).to_string())
}

// ---- The environment --------------------------------------------------------------------------

/// Variables in first-definition order, later definitions replacing the value in place, so the
/// result is deterministic (upstream builds it from a Go map, in random order).
#[derive(Default)]
struct OrderedEnv {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.entries[i].1.as_str())
    }
}

fn not_found(kind: &str, name: &str) -> ConfigError {
    // The wording of the kubelet's watch-based object managers.
    ConfigError(format!("{kind} {} not found", go_quote(name)))
}

fn lookup_error(e: anyhow::Error) -> ConfigError {
    ConfigError(format!("{e:#}"))
}

/// ConfigMaps and Secrets fetched once per container, as upstream caches them.
struct Objects<'a> {
    lookup: &'a dyn Lookup,
    namespace: &'a str,
    config_maps: HashMap<String, ConfigMap>,
    secrets: HashMap<String, Secret>,
}

impl Objects<'_> {
    /// `Ok(None)` when the object is missing and `optional`.
    async fn config_map(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<&ConfigMap>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            match self
                .lookup
                .config_map(self.namespace, name)
                .await
                .map_err(lookup_error)?
            {
                Some(cm) => {
                    self.config_maps.insert(name.to_string(), cm);
                }
                None if optional => return Ok(None),
                None => return Err(not_found("configmap", name)),
            }
        }
        Ok(self.config_maps.get(name))
    }

    async fn secret(&mut self, name: &str, optional: bool) -> Result<Option<&Secret>, ConfigError> {
        if !self.secrets.contains_key(name) {
            match self
                .lookup
                .secret(self.namespace, name)
                .await
                .map_err(lookup_error)?
            {
                Some(s) => {
                    self.secrets.insert(name.to_string(), s);
                }
                None if optional => return Ok(None),
                None => return Err(not_found("secret", name)),
            }
        }
        Ok(self.secrets.get(name))
    }
}

/// The value an `env` entry resolves to; `None` when an optional source is missing (the
/// variable is then not set at all).
async fn resolve(
    var: &EnvVar,
    ctx: &EnvContext<'_>,
    container: &Container,
    objects: &mut Objects<'_>,
    env: &OrderedEnv,
    service_env: &BTreeMap<String, String>,
) -> Result<Option<String>, ConfigError> {
    if let Some(value) = var.value.as_deref().filter(|v| !v.is_empty()) {
        let mapping = |name: &str| {
            env.get(name)
                .or_else(|| service_env.get(name).map(String::as_str))
                .map(str::to_string)
        };
        return Ok(Some(expand(value, mapping)));
    }
    let Some(from) = var.value_from.as_ref() else {
        return Ok(Some(String::new()));
    };
    if let Some(field) = from.field_ref.as_ref() {
        return field_ref_value(field, ctx.pod, ctx.pod_ips, ctx.host_ips).map(Some);
    }
    if let Some(resource) = from.resource_field_ref.as_ref() {
        return resource_field_ref_value(resource, ctx.pod, container, ctx.node_allocatable)
            .map(Some);
    }
    if let Some(sel) = from.config_map_key_ref.as_ref() {
        let optional = sel.optional.unwrap_or(false);
        let Some(cm) = objects.config_map(&sel.name, optional).await? else {
            return Ok(None);
        };
        return match cm.data.as_ref().and_then(|d| d.get(&sel.key)) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {} in ConfigMap {}/{}",
                sel.key,
                pod_namespace(ctx.pod),
                sel.name
            ))),
        };
    }
    if let Some(sel) = from.secret_key_ref.as_ref() {
        let optional = sel.optional.unwrap_or(false);
        let Some(secret) = objects.secret(&sel.name, optional).await? else {
            return Ok(None);
        };
        return match secret.data.as_ref().and_then(|d| d.get(&sel.key)) {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {} in Secret {}/{}",
                sel.key,
                pod_namespace(ctx.pod),
                sel.name
            ))),
        };
    }
    Ok(Some(String::new()))
}

/// The container's environment (upstream's `makeEnvironmentVariables`): `envFrom` sources in
/// order (keys with their prefix; a missing optional source is skipped), then `env` in order,
/// each `value` expanded against the variables defined so far and the Service variables, each
/// `valueFrom` resolved; then the Service variables not already defined. Later definitions
/// override earlier ones.
///
/// Keys of `envFrom` sources are taken as they are: since v1.30 upstream no longer drops keys
/// that are not C identifiers (the relaxed environment-variable-name rules).
pub async fn make_environment(
    ctx: &EnvContext<'_>,
    container: &Container,
    lookup: &dyn Lookup,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod_namespace(ctx.pod);
    let enable_links = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let service_env = service_env(namespace, enable_links, ctx.services);
    let mut objects = Objects {
        lookup,
        namespace,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env = OrderedEnv::default();

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(r) = source.config_map_ref.as_ref() {
            let Some(cm) = objects
                .config_map(&r.name, r.optional.unwrap_or(false))
                .await?
            else {
                continue;
            };
            for (k, v) in cm.data.iter().flatten() {
                env.set(format!("{prefix}{k}"), v.clone());
            }
        } else if let Some(r) = source.secret_ref.as_ref() {
            let Some(secret) = objects.secret(&r.name, r.optional.unwrap_or(false)).await? else {
                continue;
            };
            for (k, v) in secret.data.iter().flatten() {
                env.set(
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v.0).into_owned(),
                );
            }
        }
    }

    for var in container.env.iter().flatten() {
        if let Some(value) = resolve(var, ctx, container, &mut objects, &env, &service_env).await? {
            env.set(var.name.clone(), value);
        }
    }

    let mut result = env.entries;
    for (k, v) in service_env {
        if !env.index.contains_key(&k) {
            result.push((k, v));
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, PodSpec,
        SecretEnvSource, SecretKeySelector, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Every case of upstream's expand_test.go.
    #[test]
    fn expansion_matches_upstream() {
        let ctx = map(&[
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]);
        let mapping = |n: &str| ctx.get(n).cloned();
        let cases = [
            ("$(VAR_A)", "A"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)-1", "A-1"),
            ("___$(VAR_B)___", "___B___"),
            ("___$(VAR_C)", "___C"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
            ("f00__(VAR_A)__", "f00__(VAR_A)__"),
            ("$?_boo_$!", "$?_boo_$!"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
            ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
            ("$$$$$$$(VAR_A)", "$$$A"),
            ("$VAR_A)", "$VAR_A)"),
            ("${VAR_A}", "${VAR_A}"),
            ("$(VAR_B)_______$(A", "B_______$(A"),
            ("$(VAR_C)_______$(", "C_______$("),
            ("$(VAR_A)foobarzab$", "Afoobarzab$"),
            ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
            ("--$($($($($--", "--$($($($($--"),
            ("$($($($($--foo$(", "$($($($($--foo$("),
            ("foo0--$($($($(", "foo0--$($($($("),
            ("$(foo$$var)", "$(foo$$var)"),
            ("\n", "\n"),
            ("$é$(VAR_A)", "$éA"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, mapping), want, "{input:?}");
        }
    }

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: n.map(str::to_string),
                            port: *p,
                            protocol: proto.map(str::to_string),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_variables_docker_links() {
        let s = svc(
            "ns",
            "my-svc",
            "10.0.0.5",
            &[(None, 80, None), (Some("metrics-port"), 9090, Some("UDP"))],
        );
        let vars: BTreeMap<_, _> = service_variables(&s).into_iter().collect();
        let want: BTreeMap<String, String> = [
            ("MY_SVC_SERVICE_HOST", "10.0.0.5"),
            ("MY_SVC_SERVICE_PORT", "80"),
            ("MY_SVC_SERVICE_PORT_METRICS_PORT", "9090"),
            ("MY_SVC_PORT", "tcp://10.0.0.5:80"),
            ("MY_SVC_PORT_80_TCP", "tcp://10.0.0.5:80"),
            ("MY_SVC_PORT_80_TCP_PROTO", "tcp"),
            ("MY_SVC_PORT_80_TCP_PORT", "80"),
            ("MY_SVC_PORT_80_TCP_ADDR", "10.0.0.5"),
            ("MY_SVC_PORT_9090_UDP", "udp://10.0.0.5:9090"),
            ("MY_SVC_PORT_9090_UDP_PROTO", "udp"),
            ("MY_SVC_PORT_9090_UDP_PORT", "9090"),
            ("MY_SVC_PORT_9090_UDP_ADDR", "10.0.0.5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, want);
        let v6 = svc("ns", "v6", "fd00::1", &[(None, 443, None)]);
        assert!(service_variables(&v6).contains(&("V6_PORT".into(), "tcp://[fd00::1]:443".into())));
        assert!(service_variables(&svc("ns", "headless", "None", &[(None, 80, None)])).is_empty());
    }

    #[test]
    fn service_env_selection() {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                "10.0.0.1",
                &[(Some("https"), 443, None)],
            ),
            svc("ns", "web", "10.0.0.2", &[(None, 80, None)]),
            svc("other", "db", "10.0.0.3", &[(None, 5432, None)]),
        ];
        let env = service_env("ns", true, &services);
        assert_eq!(
            env.get("KUBERNETES_SERVICE_HOST").map(String::as_str),
            Some("10.0.0.1")
        );
        assert_eq!(
            env.get("KUBERNETES_SERVICE_PORT").map(String::as_str),
            Some("443")
        );
        assert_eq!(
            env.get("KUBERNETES_SERVICE_PORT_HTTPS").map(String::as_str),
            Some("443")
        );
        assert_eq!(
            env.get("WEB_SERVICE_HOST").map(String::as_str),
            Some("10.0.0.2")
        );
        assert!(!env.contains_key("DB_SERVICE_HOST"));
        let env = service_env("ns", false, &services);
        assert!(env.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!env.contains_key("WEB_SERVICE_HOST"));
        // A namespace's own `kubernetes` Service wins when links are on.
        let mut with_own = services.clone();
        with_own.push(svc("ns", "kubernetes", "10.9.9.9", &[(None, 1, None)]));
        let env = service_env("ns", true, &with_own);
        assert_eq!(
            env.get("KUBERNETES_SERVICE_HOST").map(String::as_str),
            Some("10.9.9.9")
        );
    }

    fn test_pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-1".into()),
                labels: Some(
                    [
                        ("app".to_string(), "web".to_string()),
                        ("tier".to_string(), "a\"b".to_string()),
                    ]
                    .into(),
                ),
                annotations: Some([("example.com/x".to_string(), "y".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                service_account_name: Some("sa".into()),
                containers: vec![Container {
                    name: "app".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn field(path: &str) -> ObjectFieldSelector {
        ObjectFieldSelector {
            api_version: None,
            field_path: path.into(),
        }
    }

    #[test]
    fn field_refs() {
        let pod = test_pod();
        let ips = ["10.1.0.4".to_string(), "fd00::4".to_string()];
        let hosts = ["192.168.1.2".to_string()];
        let get = |p: &str| field_ref_value(&field(p), &pod, &ips, &hosts);
        assert_eq!(get("metadata.name").unwrap(), "web-1");
        assert_eq!(get("metadata.namespace").unwrap(), "ns");
        assert_eq!(get("metadata.uid").unwrap(), "uid-1");
        assert_eq!(get("metadata.labels['app']").unwrap(), "web");
        assert_eq!(get("metadata.labels['missing']").unwrap(), "");
        assert_eq!(get("metadata.annotations['example.com/x']").unwrap(), "y");
        assert_eq!(
            get("metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"a\\\"b\""
        );
        assert_eq!(get("spec.nodeName").unwrap(), "node-a");
        assert_eq!(get("spec.serviceAccountName").unwrap(), "sa");
        assert_eq!(get("status.podIP").unwrap(), "10.1.0.4");
        assert_eq!(get("status.podIPs").unwrap(), "10.1.0.4,fd00::4");
        assert_eq!(get("status.hostIP").unwrap(), "192.168.1.2");
        assert_eq!(get("status.hostIPs").unwrap(), "192.168.1.2");
        assert_eq!(
            get("spec.schedulerName").unwrap_err().0,
            "unsupported fieldPath: spec.schedulerName"
        );
        assert_eq!(
            get("spec.bogus").unwrap_err().0,
            "field label not supported: spec.bogus"
        );
        assert_eq!(
            get("metadata.name['x']").unwrap_err().0,
            "field label does not support subscript: metadata.name['x']"
        );
        let v2 = ObjectFieldSelector {
            api_version: Some("v2".into()),
            field_path: "metadata.name".into(),
        };
        assert_eq!(
            field_ref_value(&v2, &pod, &ips, &hosts).unwrap_err().0,
            "unsupported pod version: v2"
        );
    }

    fn rsel(
        resource: &str,
        divisor: Option<&str>,
        container: Option<&str>,
    ) -> ResourceFieldSelector {
        ResourceFieldSelector {
            resource: resource.into(),
            divisor: divisor.map(|d| ApiQuantity(d.into())),
            container_name: container.map(str::to_string),
        }
    }

    #[test]
    fn resource_field_refs() {
        let mut pod = test_pod();
        let c = crate::container::qos::tests::container(
            "app",
            &[("cpu", "250m"), ("memory", "64Mi")],
            &[("memory", "128Mi")],
        );
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers = vec![c.clone()];
        }
        let alloc: BTreeMap<String, ApiQuantity> = [
            ("cpu".to_string(), ApiQuantity("4".into())),
            ("memory".to_string(), ApiQuantity("8Gi".into())),
        ]
        .into();
        let get = |s: ResourceFieldSelector| resource_field_ref_value(&s, &pod, &c, &alloc);
        assert_eq!(get(rsel("requests.cpu", None, None)).unwrap(), "1");
        assert_eq!(get(rsel("requests.cpu", Some("1m"), None)).unwrap(), "250");
        assert_eq!(
            get(rsel("requests.memory", Some("1Mi"), None)).unwrap(),
            "64"
        );
        assert_eq!(get(rsel("limits.memory", None, None)).unwrap(), "134217728");
        // No cpu limit: the node's allocatable.
        assert_eq!(get(rsel("limits.cpu", None, None)).unwrap(), "4");
        assert_eq!(
            get(rsel("limits.cpu", Some("1m"), Some("app"))).unwrap(),
            "4000"
        );
        assert_eq!(get(rsel("limits.memory", Some("1Gi"), None)).unwrap(), "1");
        assert_eq!(
            get(rsel("limits.cpu", None, Some("nope"))).unwrap_err().0,
            "container nope not found"
        );
        assert_eq!(
            get(rsel("limits.gpu", None, None)).unwrap_err().0,
            "unsupported container resource : limits.gpu"
        );
    }

    fn cm(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn lookup() -> StaticLookup {
        let mut l = StaticLookup::default();
        l.config_maps.insert(
            ("ns".into(), "cfg".into()),
            cm(
                "ns",
                "cfg",
                &[("A", "from-cm"), ("B", "b"), ("1-weird.key", "kept")],
            ),
        );
        l.secrets.insert(
            ("ns".into(), "sec".into()),
            secret("ns", "sec", &[("PASSWORD", "hunter2")]),
        );
        l
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(source),
        }
    }

    fn cm_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
        EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: name.into(),
                key: key.into(),
                optional,
            }),
            ..Default::default()
        }
    }

    async fn run(
        container: &Container,
        services: &[Service],
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let pod = test_pod();
        let alloc = BTreeMap::new();
        let ctx = EnvContext {
            pod: &pod,
            pod_ips: &["10.1.0.4".to_string()],
            host_ips: &["192.168.1.2".to_string()],
            node_allocatable: &alloc,
            services,
        };
        make_environment(&ctx, container, &lookup()).await
    }

    #[tokio::test]
    async fn precedence_and_expansion() {
        let services = vec![svc(
            "default",
            "kubernetes",
            "10.0.0.1",
            &[(Some("https"), 443, None)],
        )];
        let container = Container {
            name: "app".into(),
            env_from: Some(vec![
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "cfg".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
                EnvFromSource {
                    prefix: Some("S_".into()),
                    secret_ref: Some(SecretEnvSource {
                        name: "sec".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "absent".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
            ]),
            env: Some(vec![
                var("A", "from-env"),
                var("REF", "$(A)-$(B)-$(KUBERNETES_SERVICE_HOST)-$(LATER)-$$(A)"),
                var("LATER", "x"),
                from(
                    "POD",
                    EnvVarSource {
                        field_ref: Some(field("metadata.name")),
                        ..Default::default()
                    },
                ),
                from("OPT", cm_key("cfg", "missing", Some(true))),
                from("OPT2", cm_key("absent", "k", Some(true))),
                from(
                    "SECRET",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "sec".into(),
                            key: "PASSWORD".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                var("KUBERNETES_SERVICE_PORT", "override"),
                var("EMPTY", ""),
            ]),
            command: Some(vec!["sh".into(), "-c".into(), "echo $(REF) $(NOPE)".into()]),
            args: Some(vec!["$(POD)".into()]),
            ..Default::default()
        };
        let env = run(&container, &services).await.unwrap();
        let m: HashMap<_, _> = env.iter().cloned().collect();
        assert_eq!(m["A"], "from-env");
        assert_eq!(m["B"], "b");
        assert_eq!(m["1-weird.key"], "kept");
        assert_eq!(m["S_PASSWORD"], "hunter2");
        assert_eq!(m["REF"], "from-env-b-10.0.0.1-$(LATER)-$(A)");
        assert_eq!(m["POD"], "web-1");
        assert_eq!(m["SECRET"], "hunter2");
        assert_eq!(m["EMPTY"], "");
        assert!(!m.contains_key("OPT") && !m.contains_key("OPT2"));
        assert_eq!(m["KUBERNETES_SERVICE_PORT"], "override");
        assert_eq!(
            env.iter()
                .filter(|(k, _)| k == "KUBERNETES_SERVICE_PORT")
                .count(),
            1
        );
        assert_eq!(m["KUBERNETES_PORT_443_TCP"], "tcp://10.0.0.1:443");
        // envFrom first (the cm's keys in key order), env after, services last.
        let order: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).take(4).collect();
        assert_eq!(order, ["1-weird.key", "A", "B", "S_PASSWORD"]);
        assert_eq!(
            env.last().map(|(k, _)| k.as_str()),
            Some("KUBERNETES_SERVICE_PORT_HTTPS")
        );

        let (cmd, args) = expand_command_and_args(&container, &env);
        assert_eq!(
            cmd,
            ["sh", "-c", "echo from-env-b-10.0.0.1-$(LATER)-$(A) $(NOPE)"]
        );
        assert_eq!(args, ["web-1"]);
    }

    #[tokio::test]
    async fn missing_sources_are_errors_unless_optional() {
        let c = |env: Vec<EnvVar>| Container {
            name: "app".into(),
            env: Some(env),
            ..Default::default()
        };
        let err = run(&c(vec![from("X", cm_key("cfg", "nope", None))]), &[])
            .await
            .unwrap_err();
        assert_eq!(err.0, "couldn't find key nope in ConfigMap ns/cfg");
        let err = run(&c(vec![from("X", cm_key("absent", "k", None))]), &[])
            .await
            .unwrap_err();
        assert_eq!(err.0, "configmap \"absent\" not found");
        let sec = EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "sec".into(),
                key: "nope".into(),
                optional: Some(false),
            }),
            ..Default::default()
        };
        let err = run(&c(vec![from("X", sec)]), &[]).await.unwrap_err();
        assert_eq!(err.0, "couldn't find key nope in Secret ns/sec");
        let env_from = Container {
            name: "app".into(),
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "gone".into(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            run(&env_from, &[]).await.unwrap_err().0,
            "secret \"gone\" not found"
        );
    }

    #[test]
    fn sub_path_expr() {
        let env = vec![
            ("POD".to_string(), "web-1".to_string()),
            ("E".to_string(), String::new()),
        ];
        assert_eq!(
            expand_sub_path_expr("logs/$(POD)", &env).unwrap(),
            "logs/web-1"
        );
        assert_eq!(
            expand_sub_path_expr("$(E)/$(X)/$(A)", &env).unwrap_err().0,
            "missing value for A, E, X"
        );
    }
}
