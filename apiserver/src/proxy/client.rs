//! Connections from the apiserver to backends: kubelets over TLS with the apiserver's kubelet
//! client certificate (`--kubelet-client-certificate`/`--kubelet-client-key`), verified
//! against `--kubelet-certificate-authority` or, without one, not verified, as upstream;
//! pods and services over plain HTTP (or TLS, unverified, for `https:` names).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::status::{ApiError, ApiResult};

/// How long a backend has to accept a connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Upstream's default `--kubelet-preferred-address-types`.
pub const DEFAULT_ADDRESS_TYPES: &[&str] = &[
    "Hostname",
    "InternalDNS",
    "InternalIP",
    "ExternalDNS",
    "ExternalIP",
];

/// The apiserver's flags for talking to kubelets.
#[derive(Clone, Debug, Default)]
pub struct KubeletClientConfig {
    /// `--kubelet-client-certificate` and `--kubelet-client-key`.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `--kubelet-certificate-authority`: without it, kubelets' certificates are not checked.
    pub certificate_authority: Option<PathBuf>,
    /// `--kubelet-preferred-address-types`; empty means upstream's default order.
    pub preferred_address_types: Vec<String>,
}

/// The TLS set-ups in use, replaceable at run time; built on first use with the defaults
/// when never configured.
#[derive(Default)]
pub struct KubeletClient {
    state: RwLock<Option<Arc<State>>>,
}

struct State {
    /// To kubelets, verifying them when a CA is configured.
    kubelet: Arc<rustls::ClientConfig>,
    /// To kubelets, never verifying (`insecureSkipTLSVerifyBackend`).
    kubelet_insecure: Arc<rustls::ClientConfig>,
    /// To `https:` pods, services and node ports: no client certificate, not verified.
    proxy: Arc<rustls::ClientConfig>,
    address_types: Vec<String>,
}

impl KubeletClient {
    /// Applies the flags; the previous set-up stays if they do not load.
    pub fn configure(&self, config: &KubeletClientConfig) -> anyhow::Result<()> {
        let state = State::new(config)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(state));
        Ok(())
    }

    fn state(&self) -> ApiResult<Arc<State>> {
        if let Some(s) = self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Ok(s.clone());
        }
        let state = Arc::new(
            State::new(&KubeletClientConfig::default())
                .map_err(|e| ApiError::internal(format!("kubelet client: {e:#}")))?,
        );
        let mut slot = self.state.write().unwrap_or_else(|p| p.into_inner());
        Ok(slot.get_or_insert(state).clone())
    }

    pub(crate) fn kubelet_tls(&self, insecure: bool) -> ApiResult<Arc<rustls::ClientConfig>> {
        let s = self.state()?;
        Ok(if insecure {
            s.kubelet_insecure.clone()
        } else {
            s.kubelet.clone()
        })
    }

    pub(crate) fn proxy_tls(&self) -> ApiResult<Arc<rustls::ClientConfig>> {
        Ok(self.state()?.proxy.clone())
    }

    pub(crate) fn address_types(&self) -> ApiResult<Vec<String>> {
        Ok(self.state()?.address_types.clone())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_certs(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

impl State {
    fn new(config: &KubeletClientConfig) -> anyhow::Result<State> {
        let identity = match (&config.client_certificate, &config.client_key) {
            (Some(cert), Some(key)) => {
                let certs = pem_certs(cert)?;
                let file = std::fs::File::open(key)
                    .with_context(|| format!("opening {}", key.display()))?;
                let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(file))?
                    .with_context(|| format!("no private key in {}", key.display()))?;
                Some((certs, key))
            }
            (None, None) => None,
            _ => anyhow::bail!("--kubelet-client-certificate and --kubelet-client-key go together"),
        };
        let unverified = || {
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous().with_custom_certificate_verifier(Arc::new(
                        ferrokube_common::tls::AcceptAnyServerCert(provider()),
                    ))
                })
        };
        let with_identity = |b: rustls::ConfigBuilder<
            rustls::ClientConfig,
            rustls::client::WantsClientCert,
        >|
         -> anyhow::Result<rustls::ClientConfig> {
            Ok(match &identity {
                Some((certs, key)) => b.with_client_auth_cert(certs.clone(), key.clone_key())?,
                None => b.with_no_client_auth(),
            })
        };
        let kubelet_insecure = with_identity(unverified()?)?;
        let kubelet = match &config.certificate_authority {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in pem_certs(ca)? {
                    roots.add(c)?;
                }
                with_identity(
                    rustls::ClientConfig::builder_with_provider(provider())
                        .with_safe_default_protocol_versions()?
                        .with_root_certificates(roots),
                )?
            }
            None => kubelet_insecure.clone(),
        };
        let proxy = unverified()?.with_no_client_auth();
        let address_types = if config.preferred_address_types.is_empty() {
            DEFAULT_ADDRESS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            config.preferred_address_types.clone()
        };
        Ok(State {
            kubelet: Arc::new(kubelet),
            kubelet_insecure: Arc::new(kubelet_insecure),
            proxy: Arc::new(proxy),
            address_types,
        })
    }
}

/// Where a request goes.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `http` or `https`.
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
    /// The TLS set-up for `https`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// `host:port`, with IPv6 addresses bracketed.
    pub fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}://{}{}", self.scheme, self.authority(), path_and_query)
    }
}

/// A connection to the target, ready for one request (upgrades included).
pub(crate) async fn connect<B>(target: &Target) -> Result<http1::SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = target.authority();
    let tcp = match tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("dial tcp {addr}: {e}")),
        Err(_) => return Err(format!("dial tcp {addr}: i/o timeout")),
    };
    let _ = tcp.set_nodelay(true);
    match (&target.tls, target.scheme) {
        (Some(tls), "https") => {
            let name = match target.host.parse::<IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("invalid server name {:?}: {e}", target.host))?,
            };
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            handshake(stream).await
        }
        _ => handshake(tcp).await,
    }
}

async fn handshake<S, B>(io: S) -> Result<http1::SendRequest<B>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (send, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("backend connection: {e}");
        }
    });
    Ok(send)
}

/// The request body type sent to backends.
pub(crate) type OutBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

pub(crate) fn empty_body() -> OutBody {
    use http_body_util::BodyExt;
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}
