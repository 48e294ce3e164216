//! Paths outside the API groups: health checks, version, OpenAPI documents.

use http::{Request, Response, StatusCode};
use serde_json::json;

use super::{bytes_response, query_value, respond, Body};
use crate::encoding::Format;
use crate::server::App;
use crate::status::{ApiError, ApiResult};

/// Paths anyone may read, authenticated or not.
pub fn is_public(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

pub async fn serve(
    app: &App,
    req: &Request<hyper::body::Incoming>,
    path: &str,
    query: &[(String, String)],
) -> ApiResult<Response<Body>> {
    let trimmed = path.trim_end_matches('/');
    match trimmed {
        "/healthz" | "/livez" | "/readyz" => health(app, trimmed, query).await,
        "/version" => Ok(respond(StatusCode::OK, &version(), Format::Json)),
        "" => {
            let mut paths: Vec<String> = vec![
                "/api".into(),
                "/api/v1".into(),
                "/apis".into(),
                "/healthz".into(),
                "/livez".into(),
                "/openapi/v2".into(),
                "/openapi/v3".into(),
                "/readyz".into(),
                "/version".into(),
            ];
            if app.service_accounts.discovery().is_some() {
                paths.push(crate::serviceaccount::oidc::OPENID_CONFIG_PATH.into());
                paths.push(crate::serviceaccount::oidc::JWKS_PATH.into());
            }
            for (g, versions) in app.table.groups() {
                if g.is_empty() {
                    continue;
                }
                paths.push(format!("/apis/{g}"));
                for v in versions {
                    paths.push(format!("/apis/{g}/{v}"));
                }
            }
            paths.sort();
            Ok(respond(
                StatusCode::OK,
                &json!({ "paths": paths }),
                Format::Json,
            ))
        }
        p if p == "/openapi/v2" || p == "/openapi/v3" || p.starts_with("/openapi/v3/") => {
            crate::openapi::serve(app, req, p)
        }
        crate::serviceaccount::oidc::OPENID_CONFIG_PATH
        | crate::serviceaccount::oidc::JWKS_PATH => {
            crate::serviceaccount::oidc::serve(app, trimmed).ok_or_else(ApiError::path_not_found)
        }
        p if p.starts_with("/healthz/")
            || p.starts_with("/livez/")
            || p.starts_with("/readyz/") =>
        {
            let (base, check) = p[1..].split_once('/').unwrap_or(("", ""));
            let checks = checks(app, base).await;
            match checks.iter().find(|(name, _)| *name == check) {
                Some((_, Ok(()))) => Ok(text(StatusCode::OK, "ok")),
                Some((_, Err(e))) => Ok(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("internal server error: {e}"),
                )),
                None => Err(ApiError::path_not_found()),
            }
        }
        _ => Err(ApiError::path_not_found()),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    bytes_response(status, body.to_string().into(), "text/plain; charset=utf-8")
}

/// The named checks behind one health endpoint.
async fn checks(app: &App, endpoint: &str) -> Vec<(&'static str, Result<(), String>)> {
    let mut out = vec![("ping", Ok(())), ("log", Ok(()))];
    let store = app
        .registry
        .store
        .current_revision()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    out.push(("etcd", store));
    if endpoint == "readyz" {
        let cache = app
            .registry
            .cache
            .sync()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        out.push(("watch-cache", cache));
        let bootstrapped = if app.bootstrapped() {
            Ok(())
        } else {
            Err("not finished".to_string())
        };
        out.push(("poststarthook/bootstrap-controller", bootstrapped));
    }
    out
}

async fn health(
    app: &App,
    endpoint: &str,
    query: &[(String, String)],
) -> ApiResult<Response<Body>> {
    let name = &endpoint[1..];
    let checks = checks(app, name).await;
    let excluded: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let failed = checks
        .iter()
        .any(|(n, r)| r.is_err() && !excluded.contains(n));
    let verbose = query_value(query, "verbose").is_some();
    let status = if failed {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    if !verbose {
        let body = if failed {
            format!("{name} check failed")
        } else {
            "ok".to_string()
        };
        return Ok(text(status, &body));
    }
    let mut body = String::new();
    for (n, r) in &checks {
        if excluded.contains(n) {
            body.push_str(&format!("[+]{n} excluded: ok\n"));
            continue;
        }
        match r {
            Ok(()) => body.push_str(&format!("[+]{n} ok\n")),
            Err(_) => body.push_str(&format!("[-]{n} failed: reason withheld\n")),
        }
    }
    if failed {
        body.push_str(&format!("{name} check failed\n"));
    } else {
        body.push_str(&format!("{name} check passed\n"));
    }
    Ok(text(status, &body))
}

/// The Kubernetes version this server is compatible with.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";

pub fn version() -> serde_json::Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "emulationMajor": KUBE_MAJOR,
        "emulationMinor": KUBE_MINOR,
        "minCompatibilityMajor": KUBE_MAJOR,
        "minCompatibilityMinor": "32",
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0+ferrokube-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": option_env!("FERROKUBE_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": option_env!("FERROKUBE_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": "none (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}
