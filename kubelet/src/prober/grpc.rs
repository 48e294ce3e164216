//! The gRPC probe: `grpc.health.v1.Health/Check` over plaintext HTTP/2, as upstream's prober
//! calls it (a blocking dial that keeps retrying until the probe's timeout).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::gofmt::{self, quote};
use super::http::KUBE_VERSION;
use super::net::dial;
use super::Outcome;

/// Upstream's grpc probe: the outcome and its output.
pub(crate) async fn probe(
    host: &str,
    port: i32,
    service: &str,
    timeout: Duration,
) -> (Outcome, String) {
    let deadline = Instant::now() + timeout;
    // `net.JoinHostPort` with the port as given, even one out of range.
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let Some(channel) = connect(host, port, &addr, deadline).await else {
        return (
            Outcome::Failure,
            format!(
                "timeout: failed to connect service {} within {}: context deadline exceeded",
                quote(&addr),
                gofmt::duration(timeout)
            ),
        );
    };
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest {
        service: service.to_string(),
    });
    let rpc_timeout = || {
        format!(
            "timeout: health rpc did not complete within {}",
            gofmt::duration(timeout)
        )
    };
    let response = match tokio::time::timeout_at(deadline, check).await {
        Err(_) => return (Outcome::Failure, rpc_timeout()),
        Ok(Err(status)) => {
            let message = match status.code() {
                Code::Unimplemented => format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    status.message()
                ),
                Code::DeadlineExceeded => rpc_timeout(),
                _ => format!(
                    "error: health rpc probe failed: {}",
                    gofmt::grpc_error(&status)
                ),
            };
            return (Outcome::Failure, message);
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    if status != ServingStatus::Serving {
        return (
            Outcome::Failure,
            format!(
                "service unhealthy (responded with {})",
                quote(status.as_str_name())
            ),
        );
    }
    (Outcome::Success, "service healthy".into())
}

/// Dials and completes the HTTP/2 handshake, retrying failures until `deadline` as grpc-go's
/// blocking dial does; `None` when the deadline passes first.
async fn connect(host: &str, port: i32, addr: &str, deadline: Instant) -> Option<Channel> {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok(port) = u16::try_from(port) {
            if let Ok(stream) = dial(host, port, Some(deadline)).await {
                let attempt = tokio::time::timeout_at(deadline, channel_over(stream, addr));
                match attempt.await {
                    Err(_) => return None,
                    Ok(Some(channel)) => return Some(channel),
                    Ok(None) => {}
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep_until((now + backoff).min(deadline)).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// A channel over one already-dialled connection, so the dial above decides where it goes.
async fn channel_over(stream: TcpStream, addr: &str) -> Option<Channel> {
    let slot = Arc::new(Mutex::new(Some(stream)));
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .user_agent(format!("kube-probe/{KUBE_VERSION}"))
        .ok()?;
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let stream = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                stream
                    .map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("probe connection already used"))
            }
        }))
        .await
        .ok()
}
