//! The kube-apiserver binary: upstream's flag names where they exist, and a `pki`
//! subcommand that writes the cluster's certificates and an admin kubeconfig.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ferrokube_storage::Store;
use kube_apiserver::{pki, server};

// The server allocates and frees many small JSON values per request; mimalloc handles that
// pattern markedly better than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kube-apiserver",
    version,
    about = "ferrokube's Kubernetes API server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeFlags,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a cluster PKI (CA, serving and admin certificates, admin kubeconfig) to a folder.
    Pki(PkiFlags),
}

#[derive(Args)]
struct PkiFlags {
    /// Folder to write into.
    #[arg(long)]
    dir: PathBuf,
    /// Extra names and addresses for the serving certificate (repeat or comma-separate).
    #[arg(long = "host", value_delimiter = ',')]
    hosts: Vec<String>,
    /// The URL the admin kubeconfig points at.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    server: String,
    /// Same as the server's flag: its first address goes into the serving certificate.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    #[arg(long, default_value = "ferrokube")]
    cluster_name: String,
    /// Nodes to write kubelet kubeconfigs for (repeat or comma-separate).
    #[arg(long = "node", value_delimiter = ',')]
    nodes: Vec<String>,
}

#[derive(Args)]
struct ServeFlags {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Address advertised to clients (in `/api` and the `kubernetes` Endpoints).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Serving certificate (PEM).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// CA whose client certificates authenticate users (CN = user, O = groups).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Static bearer tokens, CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// `embedded` (one file under --data-dir) or `etcd` (--etcd-servers).
    #[arg(long, default_value = "embedded")]
    storage_backend: String,
    /// Where the embedded store keeps its log.
    #[arg(long, default_value = "/var/lib/ferrokube/apiserver")]
    data_dir: PathBuf,
    /// etcd endpoints, comma separated, for `--storage-backend etcd`.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// Prefix of every key in etcd.
    #[arg(long, default_value = "")]
    etcd_prefix: String,
    /// Interval between compactions of old revisions; 0 disables them.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    etcd_compaction_interval: std::time::Duration,
    /// CIDR Service ClusterIPs come from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Range NodePorts come from, as `first-last`.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// How long Events live after their last activity; 0 keeps them.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    event_ttl: std::time::Duration,
    /// Events each resource's watch cache keeps for watches that resume from a resourceVersion.
    #[arg(long, default_value_t = kube_apiserver::watchcache::DEFAULT_HISTORY)]
    default_watch_cache_size: usize,
    /// Authorization mode. Only AlwaysAllow exists until the authorization component lands.
    #[arg(long, default_value = "AlwaysAllow")]
    authorization_mode: String,
    /// Issuer of service-account tokens (repeatable: the first signs, all are accepted).
    #[arg(long = "service-account-issuer", default_value = kube_apiserver::serviceaccount::DEFAULT_ISSUER)]
    service_account_issuers: Vec<String>,
    /// PEM keys that verify service-account tokens (repeatable); default: the signing key.
    #[arg(long = "service-account-key-file")]
    service_account_key_files: Vec<PathBuf>,
    /// PEM private key that signs service-account tokens; default: sa.key beside the serving key.
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    /// Longest life of a requested token; 0 for no limit.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    service_account_max_token_expiration: std::time::Duration,
    /// Pod-bound tokens asked for 3607s live a year and report use after 3607s, as upstream.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    service_account_extend_token_expiration: bool,
    /// jwks_uri in the issuer discovery document; default: https://<advertise address>/openid/v1/jwks.
    #[arg(long)]
    service_account_jwks_uri: Option<String>,
    /// Audiences of the API: tokens must be for one of them; default: the issuers.
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// Admission plugins to turn off (only ServiceAccount can be).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
    /// Client certificate the apiserver presents to kubelets (PEM).
    #[arg(long)]
    kubelet_client_certificate: Option<PathBuf>,
    /// Key of --kubelet-client-certificate (PEM).
    #[arg(long)]
    kubelet_client_key: Option<PathBuf>,
    /// CA that signs kubelets' serving certificates; without it they are not verified.
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Node address types to reach kubelets at, in order of preference.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"
    )]
    kubelet_preferred_address_types: Vec<String>,
}

/// Durations as Go writes them: 300ms, 5s, 5m, 1h, 0.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or("a duration needs a unit (ms, s, m, h)")?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}")),
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn parse_port_range(s: &str) -> Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .context("--service-node-port-range must look like 30000-32767")?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    if a > b {
        bail!("--service-node-port-range: {a} is above {b}");
    }
    Ok((a, b))
}

async fn open_store(flags: &ServeFlags) -> Result<Arc<dyn Store>> {
    Ok(match flags.storage_backend.as_str() {
        "embedded" => {
            let dir = flags.data_dir.clone();
            let store = tokio::task::spawn_blocking(move || {
                ferrokube_storage::embedded::EmbeddedStore::open(&dir)
            })
            .await?
            .map_err(|e| {
                anyhow::anyhow!(
                    "opening the embedded store in {}: {e}",
                    flags.data_dir.display()
                )
            })?;
            store
        }
        "etcd" => {
            if flags.etcd_servers.is_empty() {
                bail!("--storage-backend etcd needs --etcd-servers");
            }
            ferrokube_storage::etcd::EtcdStore::connect(&flags.etcd_servers, &flags.etcd_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("connecting to etcd: {e}"))?
        }
        other => bail!("unknown --storage-backend {other:?} (embedded or etcd)"),
    })
}

async fn serve(flags: ServeFlags) -> Result<()> {
    if flags.authorization_mode != "AlwaysAllow" {
        bail!(
            "--authorization-mode {} is not available yet: only AlwaysAllow",
            flags.authorization_mode
        );
    }
    let (Some(cert), Some(key)) = (
        flags.tls_cert_file.clone(),
        flags.tls_private_key_file.clone(),
    ) else {
        bail!("--tls-cert-file and --tls-private-key-file are required (kube-apiserver pki writes them)");
    };
    let advertise = flags
        .advertise_address
        .unwrap_or(if flags.bind_address.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            flags.bind_address
        });
    let config = server::Config {
        tls_cert_file: cert,
        tls_private_key_file: key,
        client_ca_file: flags.client_ca_file.clone(),
        token_auth_file: flags.token_auth_file.clone(),
        advertise_address: SocketAddr::new(advertise, flags.secure_port).to_string(),
        service_cluster_ip_range: flags.service_cluster_ip_range.clone(),
        service_node_port_range: parse_port_range(&flags.service_node_port_range)?,
        compaction_interval: flags.etcd_compaction_interval,
        watch_cache_size: flags.default_watch_cache_size,
        event_ttl: flags.event_ttl,
        service_account: kube_apiserver::serviceaccount::Options {
            issuers: flags.service_account_issuers.clone(),
            key_files: flags.service_account_key_files.clone(),
            signing_key_file: flags.service_account_signing_key_file.clone(),
            max_token_expiration: flags.service_account_max_token_expiration,
            extend_token_expiration: flags.service_account_extend_token_expiration,
            jwks_uri: flags.service_account_jwks_uri.clone(),
            api_audiences: flags.api_audiences.clone(),
        },
        disable_admission_plugins: flags.disable_admission_plugins.clone(),
    };
    let store = open_store(&flags).await?;
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(flags.bind_address, flags.secure_port))
            .await
            .with_context(|| {
                format!("listening on {}:{}", flags.bind_address, flags.secure_port)
            })?;
    let app = server::build(config, store).await?;
    app.kubelet
        .configure(&kube_apiserver::proxy::KubeletClientConfig {
            client_certificate: flags.kubelet_client_certificate.clone(),
            client_key: flags.kubelet_client_key.clone(),
            certificate_authority: flags.kubelet_certificate_authority.clone(),
            preferred_address_types: flags.kubelet_preferred_address_types.clone(),
        })
        .context("kubelet client flags")?;
    tracing::info!("serving on https://{}", listener.local_addr()?);
    server::serve(app, listener).await
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Pki(p)) => {
            let cidr = kube_apiserver::alloc::Cidr::parse(&p.service_cluster_ip_range)
                .map_err(anyhow::Error::msg)?;
            pki::generate(&pki::PkiOptions {
                dir: p.dir,
                hosts: p.hosts,
                service_ip: IpAddr::V4(cidr.nth(1)),
                server_url: p.server,
                cluster_name: p.cluster_name,
                nodes: p.nodes,
            })
        }
        None => runtime.block_on(serve(cli.serve)),
    }
}
