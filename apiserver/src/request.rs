//! What a request is about, read off its path and method, as upstream's RequestInfo.

use http::Method;

/// A request for a resource (`/api/v1/namespaces/ns/pods/name/status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Path segments after the subresource (`pods/x/proxy/some/path`).
    pub rest: Vec<String>,
    /// The API verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
}

/// What the path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Resource(ResourceRequest),
    /// `/api` and `/apis`, `/apis/<group>` and group-version discovery.
    Discovery {
        /// True for `/api...`, false for `/apis...`.
        legacy: bool,
        group: Option<String>,
        version: Option<String>,
    },
    /// Anything else: `/healthz`, `/version`, `/openapi/v2`...
    NonResource(String),
}

/// Splits and percent-decodes a path into its segments.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// Reads the target of a request; `watch` is the `watch` query parameter.
pub fn parse(method: &Method, path: &str, watch: bool) -> Target {
    let parts = segments(path);
    let (legacy, rest) = match parts.first().map(String::as_str) {
        Some("api") => (true, &parts[1..]),
        Some("apis") => (false, &parts[1..]),
        _ => return Target::NonResource(path.to_string()),
    };
    let (group, version, rest) = if legacy {
        match rest {
            [] => {
                return Target::Discovery {
                    legacy: true,
                    group: None,
                    version: None,
                }
            }
            [v] => {
                return Target::Discovery {
                    legacy: true,
                    group: Some(String::new()),
                    version: Some(v.clone()),
                }
            }
            [v, rest @ ..] => (String::new(), v.clone(), rest),
        }
    } else {
        match rest {
            [] => {
                return Target::Discovery {
                    legacy: false,
                    group: None,
                    version: None,
                }
            }
            [g] => {
                return Target::Discovery {
                    legacy: false,
                    group: Some(g.clone()),
                    version: None,
                }
            }
            [g, v] => {
                return Target::Discovery {
                    legacy: false,
                    group: Some(g.clone()),
                    version: Some(v.clone()),
                }
            }
            [g, v, rest @ ..] => (g.clone(), v.clone(), rest),
        }
    };

    let mut rest: Vec<String> = rest.to_vec();
    // The deprecated `/watch/` prefix turns any list or get into a watch.
    let mut watch = watch;
    if rest.first().map(String::as_str) == Some("watch") {
        watch = true;
        rest.remove(0);
    }

    let mut req = ResourceRequest {
        group,
        version,
        ..Default::default()
    };
    if rest.first().map(String::as_str) == Some("namespaces") && rest.len() > 1 {
        req.namespace = Some(rest[1].clone());
        // `namespaces/<name>/status` and `/finalize` are subresources of the namespace itself.
        let own_subresource = rest.len() > 2 && matches!(rest[2].as_str(), "status" | "finalize");
        if rest.len() > 2 && !own_subresource {
            rest.drain(..2);
        }
    }
    req.resource = rest.first().cloned().unwrap_or_default();
    req.name = rest.get(1).cloned();
    req.subresource = rest.get(2).cloned();
    req.rest = rest.iter().skip(3).cloned().collect();

    req.verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => {
            if watch {
                "watch"
            } else if req.name.is_some() {
                "get"
            } else {
                "list"
            }
        }
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => {
            if req.name.is_some() {
                "delete"
            } else {
                "deletecollection"
            }
        }
        _ => "",
    };
    Target::Resource(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(method: Method, path: &str) -> ResourceRequest {
        match parse(&method, path, false) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_pod_status() {
        let r = res(Method::PUT, "/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "pods");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert_eq!(r.verb, "update");
    }

    #[test]
    fn namespace_objects_themselves() {
        let r = res(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        let r = res(Method::PUT, "/api/v1/namespaces/x/finalize");
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        let r = res(Method::GET, "/api/v1/namespaces");
        assert_eq!((r.resource.as_str(), r.verb), ("namespaces", "list"));
    }

    #[test]
    fn groups_and_watch_prefix() {
        let r = res(Method::GET, "/apis/apps/v1/watch/namespaces/a/deployments");
        assert_eq!((r.group.as_str(), r.verb), ("apps", "watch"));
        assert_eq!(r.namespace.as_deref(), Some("a"));
        let r = res(Method::DELETE, "/apis/apps/v1/namespaces/a/deployments");
        assert_eq!(r.verb, "deletecollection");
        assert_eq!(
            parse(&Method::GET, "/apis/apps", false),
            Target::Discovery {
                legacy: false,
                group: Some("apps".into()),
                version: None
            }
        );
    }

    #[test]
    fn proxy_keeps_the_rest_of_the_path() {
        let r = res(Method::GET, "/api/v1/namespaces/a/pods/p/proxy/x/y");
        assert_eq!(r.rest, vec!["x".to_string(), "y".to_string()]);
    }
}
