//! Putting the server together: storage, watch cache, registry, TLS listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use ferrokube_storage::Store;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::alloc::{Allocators, Cidr};
use crate::authn::{self, TokenFile, User};
use crate::registry::Registry;
use crate::resources::{builtin_resources, ResourceTable};
use crate::watchcache::WatchCache;

/// Everything the server needs to know at start.
#[derive(Clone, Debug)]
pub struct Config {
    pub tls_cert_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub token_auth_file: Option<PathBuf>,
    /// host:port clients should use, as `/api` reports it.
    pub advertise_address: String,
    pub service_cluster_ip_range: String,
    pub service_node_port_range: (u16, u16),
    /// How often old revisions are compacted away (0 turns compaction off).
    pub compaction_interval: std::time::Duration,
    /// How long Events live after their last activity (0 keeps them forever).
    pub event_ttl: std::time::Duration,
    /// Events each resource's watch cache keeps for watches resuming from a resourceVersion.
    pub watch_cache_size: usize,
    /// Service-account token issuing and verification (`--service-account-*`).
    pub service_account: crate::serviceaccount::Options,
    /// `--disable-admission-plugins`.
    pub disable_admission_plugins: Vec<String>,
}

pub struct App {
    pub table: Arc<ResourceTable>,
    pub registry: Arc<Registry>,
    pub config: Config,
    pub tokens: TokenFile,
    /// How the apiserver reaches kubelets (`--kubelet-*` flags).
    pub kubelet: crate::proxy::KubeletClient,
    pub service_accounts: crate::serviceaccount::ServiceAccounts,
    bootstrapped: AtomicBool,
    pub openapi: crate::openapi::Documents,
}

impl App {
    pub fn bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Relaxed)
    }
}

/// Builds the application on a store: loads the caches and creates the system objects.
pub async fn build(config: Config, store: Arc<dyn Store>) -> Result<Arc<App>> {
    let table = Arc::new(ResourceTable::new(builtin_resources()));
    let mut prefixes: Vec<String> = table
        .all()
        .iter()
        .filter_map(|r| r.key_prefix(None))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    let cache = WatchCache::start(store.clone(), prefixes, config.watch_cache_size).await?;
    let cidr = Cidr::parse(&config.service_cluster_ip_range).map_err(anyhow::Error::msg)?;
    let alloc = Allocators::new(cidr, config.service_node_port_range);
    let registry = Arc::new(Registry {
        store,
        table: table.clone(),
        cache,
        alloc,
        admission: crate::admission::Plugins::without(&config.disable_admission_plugins)
            .map_err(anyhow::Error::msg)?,
    });
    let tokens = match &config.token_auth_file {
        Some(p) => TokenFile::load(p)?,
        None => TokenFile::default(),
    };
    let service_accounts = crate::serviceaccount::ServiceAccounts::new(
        &config.service_account,
        &config.tls_private_key_file,
        &config.advertise_address,
    )?;
    let openapi = crate::openapi::Documents::new(&table);
    let app = Arc::new(App {
        table,
        registry,
        config,
        tokens,
        kubelet: Default::default(),
        service_accounts,
        bootstrapped: AtomicBool::new(false),
        openapi,
    });
    crate::bootstrap::run(&app).await?;
    app.bootstrapped.store(true, Ordering::Relaxed);
    if !app.config.event_ttl.is_zero() {
        tokio::spawn(crate::eventttl::run(app.clone(), app.config.event_ttl));
    }
    if !app.config.compaction_interval.is_zero() {
        tokio::spawn(compactor(app.clone()));
    }
    Ok(app)
}

/// Compacts the store as upstream's apiserver does: at every interval, up to the revision
/// seen at the previous one, so watches have at least one interval to resume.
async fn compactor(app: Arc<App>) {
    let mut last = None;
    let mut tick = tokio::time::interval(app.config.compaction_interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let current = match app.registry.store.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("compaction: {e}");
                continue;
            }
        };
        if let Some(rev) = last {
            if let Err(e) = app.registry.store.compact(rev).await {
                tracing::warn!("compacting to {rev}: {e}");
            }
        }
        last = Some(current);
    }
}

fn tls_config(config: &Config) -> Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&config.tls_cert_file)
            .with_context(|| format!("opening {}", config.tls_cert_file.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&config.tls_private_key_file)
            .with_context(|| format!("opening {}", config.tls_private_key_file.display()))?,
    ))?
    .context("no private key found")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut server = match &config.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(
                std::fs::File::open(ca).with_context(|| format!("opening {}", ca.display()))?,
            )) {
                roots.add(cert?)?;
            }
            // Clients without a certificate may still use a token, or reach public paths.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(certs, key)?,
    };
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// Serves HTTPS on `listener` until the task is dropped.
pub async fn serve(app: Arc<App>, listener: TcpListener) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&app.config)?));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer}: {e}");
                    return;
                }
                Err(_) => return,
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| authn::from_certificate(c.as_ref()));
            serve_connection(app, tls, cert_user, peer).await;
        });
    }
}

async fn serve_connection<S>(app: Arc<App>, io: S, cert_user: Option<User>, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let app = app.clone();
            req.extensions_mut().insert(crate::proxy::ClientAddr(peer));
            let cert_user = cert_user.clone();
            async move {
                let user = match cert_user {
                    Some(u) => Some(u),
                    None => authn::authenticate_request(&app, req.headers()).await,
                };
                Ok::<_, std::convert::Infallible>(crate::http::handle(app, req, user).await)
            }
        });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Upgrades are proxied to kubelets, pods and services (exec, attach, port-forward).
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!("connection from {peer}: {e}");
    }
}
