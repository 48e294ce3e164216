//! Objects the apiserver creates for itself at start, as upstream's bootstrap controller and
//! post-start hooks do: the system namespaces, the `kubernetes` Service with its Endpoints
//! and EndpointSlice, the default ServiceCIDR and the system PriorityClasses.

use serde_json::{json, Value};

use crate::registry::WriteOptions;
use crate::server::App;
use crate::status::ApiResult;

pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates an object unless it already exists.
async fn ensure(
    app: &App,
    group: &str,
    version: &str,
    plural: &str,
    namespace: Option<&str>,
    obj: Value,
) -> ApiResult<()> {
    let res = app
        .table
        .lookup(group, version, plural)
        .ok_or_else(|| crate::status::ApiError::internal(format!("{plural} not served")))?;
    // Look first: creating again would also try to allocate again (the Service's ClusterIP).
    match app
        .registry
        .get(&res, namespace, crate::meta::name(&obj), None)
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    match app
        .registry
        .create(&res, namespace, obj, &WriteOptions::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces an object's content (kept in step with the server's own address).
async fn ensure_current(
    app: &App,
    group: &str,
    version: &str,
    plural: &str,
    namespace: Option<&str>,
    obj: Value,
) -> ApiResult<()> {
    let res = app
        .table
        .lookup(group, version, plural)
        .ok_or_else(|| crate::status::ApiError::internal(format!("{plural} not served")))?;
    let name = crate::meta::name(&obj).to_string();
    match app.registry.get(&res, namespace, &name, None).await {
        Ok(current) => {
            let mut merged = current.clone();
            for (k, v) in obj.as_object().into_iter().flatten() {
                if k != "metadata" {
                    merged[k] = v.clone();
                }
            }
            if merged != current {
                app.registry
                    .update(
                        &res,
                        namespace,
                        &name,
                        None,
                        merged,
                        &WriteOptions::default(),
                    )
                    .await?;
            }
            Ok(())
        }
        Err(e) if e.code == 404 => ensure(app, group, version, plural, namespace, obj).await,
        Err(e) => Err(e),
    }
}

pub async fn run(app: &App) -> anyhow::Result<()> {
    for ns in SYSTEM_NAMESPACES {
        ensure(
            app,
            "",
            "v1",
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating namespace {ns}: {e}"))?;
    }

    let cidr = app.registry.alloc.service_cidr;
    ensure(
        app,
        "networking.k8s.io",
        "v1",
        "servicecidrs",
        None,
        json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": [cidr.to_string()]}}),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the default ServiceCIDR: {e}"))?;

    let (host, port) = split_address(&app.config.advertise_address);
    let service_ip = app.registry.alloc.kubernetes_service_ip().to_string();
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    ensure(
        app,
        "",
        "v1",
        "services",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": service_ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None",
            },
        }),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the kubernetes Service: {e}"))?;
    ensure_current(
        app,
        "",
        "v1",
        "endpoints",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        }),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the kubernetes Endpoints: {e}"))?;
    ensure_current(
        app,
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [host], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the kubernetes EndpointSlice: {e}"))?;

    for (name, value, description) in [
        ("system-node-critical", 2000001000, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2000000000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ] {
        ensure(
            app,
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            None,
            json!({"metadata": {"name": name}, "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority"}),
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating PriorityClass {name}: {e}"))?;
    }
    Ok(())
}

/// Splits "host:port" into an IP address for endpoints and the port.
fn split_address(addr: &str) -> (String, u16) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "6443"));
    let port = port.parse().unwrap_or(6443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    (ip, port)
}
