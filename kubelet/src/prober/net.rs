//! Dialling a probe target the way upstream's probe dialer does, with Go's error text.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::gofmt;

#[derive(Debug)]
pub(crate) enum DialError {
    /// The deadline passed; the address is the one being dialled (`10.0.0.1:80`).
    Timeout(String),
    /// Go's text for the failure: `dial tcp 10.0.0.1:80: connect: connection refused`.
    Failed(String),
}

impl DialError {
    /// The error as `net.DialTimeout` reports it.
    pub(crate) fn message(&self) -> String {
        match self {
            DialError::Timeout(addr) => format!("dial tcp {addr}: i/o timeout"),
            DialError::Failed(msg) => msg.clone(),
        }
    }
}

/// `net.JoinHostPort`: brackets around IPv6 literals.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to `host:port` before `deadline`. An empty host is the local machine, as Go's
/// dialer takes it.
pub(crate) async fn dial(
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> Result<TcpStream, DialError> {
    let target = if host.is_empty() { "127.0.0.1" } else { host };
    let addrs = match target.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((target, port));
            let found = match deadline {
                Some(d) => match tokio::time::timeout_at(d, lookup).await {
                    Ok(r) => r,
                    Err(_) => return Err(DialError::Timeout(join_host_port(host, port))),
                },
                None => lookup.await,
            };
            // Go names the resolver it asked; which one the system used is not known here.
            let failed = || DialError::Failed(format!("dial tcp: lookup {host}: no such host"));
            let addrs: Vec<SocketAddr> = found.map_err(|_| failed())?.collect();
            if addrs.is_empty() {
                return Err(failed());
            }
            addrs
        }
    };
    let mut first_error = None;
    for addr in addrs {
        let shown = if host.is_empty() {
            format!(":{port}")
        } else {
            addr.to_string()
        };
        let socket = match if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        } {
            Ok(s) => s,
            Err(e) => {
                first_error.get_or_insert(DialError::Failed(format!(
                    "dial tcp {shown}: socket: {}",
                    gofmt::errno_text(&e)
                )));
                continue;
            }
        };
        // Upstream lingers one second so that probes do not leave sockets in TIME_WAIT. A
        // probe's socket has no unsent data when it is closed, so the close does not block.
        #[allow(deprecated)]
        let _ = socket.set_linger(Some(Duration::from_secs(1)));
        let connect = socket.connect(addr);
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d, connect).await {
                Ok(r) => r,
                Err(_) => return Err(DialError::Timeout(shown)),
            },
            None => connect.await,
        };
        match result {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(DialError::Timeout(shown));
            }
            Err(e) => {
                first_error.get_or_insert(DialError::Failed(format!(
                    "dial tcp {shown}: connect: {}",
                    gofmt::errno_text(&e)
                )));
            }
        }
    }
    Err(first_error.unwrap_or_else(|| DialError::Failed(format!("dial tcp {host}: no address"))))
}
