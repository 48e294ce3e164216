//! The server's own metrics, under upstream's names: `kubelet_http_requests_total`,
//! `kubelet_http_inflight_requests` and `kubelet_http_requests_duration_seconds`, labelled
//! by method, path bucket, server type and whether the request is long-running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrokube_component::metrics::Registry;
use http::Method;

const REQUESTS: &str = "kubelet_http_requests_total";
const INFLIGHT: &str = "kubelet_http_inflight_requests";
const DURATION: &str = "kubelet_http_requests_duration_seconds";

/// Prometheus' default buckets, which upstream uses for the request duration.
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The path buckets upstream registers; any other path counts as `other`.
const PATH_BUCKETS: &[&str] = &[
    "healthz",
    "pods",
    "stats",
    "metrics",
    "metrics/cadvisor",
    "metrics/probes",
    "metrics/resource",
    "run",
    "exec",
    "attach",
    "portForward",
    "containerLogs",
    "configz",
    "runningpods",
    "logs",
    "debug",
];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct RequestLabels {
    method: &'static str,
    path: &'static str,
    long_running: &'static str,
}

impl RequestLabels {
    pub(super) fn of(method: &Method, path: &str) -> RequestLabels {
        let method = match *method {
            Method::OPTIONS => "OPTIONS",
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::TRACE => "TRACE",
            Method::CONNECT => "CONNECT",
            _ => "other",
        };
        // The first segment, or the first two under /metrics/.
        let mut parts = path.trim_start_matches('/').splitn(3, '/');
        let first = parts.next().unwrap_or("");
        let root = match (first, parts.next()) {
            ("metrics", Some(second)) => format!("metrics/{second}"),
            _ => first.to_string(),
        };
        let path = PATH_BUCKETS
            .iter()
            .find(|b| **b == root)
            .copied()
            .unwrap_or("other");
        // Upstream lists "portforward" in lower case, so port-forwards do not count.
        let long_running = if matches!(path, "exec" | "attach" | "debug") {
            "true"
        } else {
            "false"
        };
        RequestLabels {
            method,
            path,
            long_running,
        }
    }

    fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            ("long_running", self.long_running),
            ("method", self.method),
            ("path", self.path),
            ("server_type", "readwrite"),
        ]
    }
}

pub(super) struct ServerMetrics {
    registry: Arc<Registry>,
    inflight: Mutex<HashMap<RequestLabels, i64>>,
}

impl ServerMetrics {
    pub(super) fn new(registry: Arc<Registry>) -> ServerMetrics {
        registry.describe(
            REQUESTS,
            "Number of the http requests received since the server started",
        );
        registry.describe(INFLIGHT, "Number of the inflight http requests");
        registry.describe(DURATION, "Duration in seconds to serve http requests");
        ServerMetrics {
            registry,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    fn add_inflight(&self, labels: &RequestLabels, by: i64) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let n = inflight.entry(labels.clone()).or_insert(0);
        *n += by;
        self.registry.set(INFLIGHT, &labels.pairs(), *n as f64);
    }

    pub(super) fn started(&self, labels: &RequestLabels) {
        self.registry.inc(REQUESTS, &labels.pairs());
        self.add_inflight(labels, 1);
    }

    pub(super) fn finished(&self, labels: &RequestLabels, took: Duration) {
        self.add_inflight(labels, -1);
        self.registry.observe(
            DURATION,
            &DURATION_BUCKETS,
            &labels.pairs(),
            took.as_secs_f64(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_as_upstream() {
        let l = RequestLabels::of(&Method::GET, "/containerLogs/ns/p/c");
        assert_eq!(
            (l.method, l.path, l.long_running),
            ("GET", "containerLogs", "false")
        );
        let l = RequestLabels::of(&Method::POST, "/exec/ns/p/c");
        assert_eq!((l.path, l.long_running), ("exec", "true"));
        assert_eq!(
            RequestLabels::of(&Method::GET, "/metrics/cadvisor").path,
            "metrics/cadvisor"
        );
        assert_eq!(RequestLabels::of(&Method::GET, "/nope").path, "other");
        assert_eq!(RequestLabels::of(&Method::PATCH, "/pods").method, "other");
    }
}
