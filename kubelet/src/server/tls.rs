//! The serving certificate (given, or self-signed for the node as upstream makes one) and the
//! client-certificate verification against `authentication.x509.clientCAFile`.

use std::io::BufReader;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::ServerConfig;

fn read_pem_certs(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// A self-signed certificate for the node's name and addresses.
fn self_signed(
    config: &ServerConfig,
) -> Result<(
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
)> {
    let mut names = vec![config.node_name.clone()];
    names.extend(config.node_ips.iter().map(|ip| ip.to_string()));
    if !names.iter().any(|n| n == "localhost") {
        names.push("localhost".into());
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        format!(
            "{}@{}",
            config.node_name,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ),
    );
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    ))
}

pub(super) fn server_config(config: &ServerConfig) -> Result<rustls::ServerConfig> {
    let (certs, key) = match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_pem_certs(cert)?;
            let file =
                std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?;
            let key = rustls_pemfile::private_key(&mut BufReader::new(file))?
                .with_context(|| format!("no private key in {}", key.display()))?;
            (certs, key)
        }
        (None, None) => self_signed(config)?,
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file go together"),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut server = match &config.auth.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_pem_certs(ca)? {
                roots.add(cert)?;
            }
            // Clients without a certificate may still present a token.
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
