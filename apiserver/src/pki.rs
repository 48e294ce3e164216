//! The cluster PKI: a CA, the apiserver's serving certificate, an admin client certificate
//! (group system:masters) and its kubeconfig, and the service-account signing key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// What to put in the PKI.
pub struct PkiOptions {
    pub dir: PathBuf,
    /// Extra DNS names and addresses the apiserver is reached at.
    pub hosts: Vec<String>,
    /// The first address of the service range: the `kubernetes` Service's ClusterIP.
    pub service_ip: IpAddr,
    /// The URL the admin kubeconfig points at.
    pub server_url: String,
    pub cluster_name: String,
    /// Nodes to write a kubelet kubeconfig for (`kubelet-<node>.kubeconfig`, user
    /// `system:node:<node>` in group `system:nodes`).
    pub nodes: Vec<String>,
}

fn write(path: &Path, contents: &str, private: bool) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time_now();
    params.not_before = now - rcgen_duration(3600);
    params.not_after = now + rcgen_duration(days * 86400);
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn rcgen_duration(secs: i64) -> time::Duration {
    time::Duration::seconds(secs)
}

/// Generates every file into `opts.dir`, leaving files that already exist alone unless the
/// CA itself is missing.
pub fn generate(opts: &PkiOptions) -> Result<()> {
    std::fs::create_dir_all(&opts.dir)?;
    let dir = &opts.dir;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kubernetes");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    validity(&mut ca_params, 3650);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write(&dir.join("ca.crt"), &ca_cert.pem(), false)?;
    write(&dir.join("ca.key"), &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca_params, ca_key);

    // The serving certificate answers to every name the `kubernetes` Service has.
    let mut names: Vec<String> = vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        "localhost".into(),
    ];
    for h in &opts.hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut serving = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    serving.distinguished_name = dn;
    let mut sans = Vec::new();
    for n in &names {
        match n.parse::<IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(n.clone().try_into()?)),
        }
    }
    for ip in [IpAddr::from([127, 0, 0, 1]), opts.service_ip] {
        if !sans.contains(&SanType::IpAddress(ip)) {
            sans.push(SanType::IpAddress(ip));
        }
    }
    serving.subject_alt_names = sans;
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut serving, 365);
    let serving_key = KeyPair::generate()?;
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;
    write(&dir.join("apiserver.crt"), &serving_cert.pem(), false)?;
    write(
        &dir.join("apiserver.key"),
        &serving_key.serialize_pem(),
        true,
    )?;

    let (admin_cert, admin_key) = client_cert(&issuer, "kubernetes-admin", &["system:masters"])?;
    write(&dir.join("admin.crt"), &admin_cert, false)?;
    write(&dir.join("admin.key"), &admin_key, true)?;

    let sa_key = KeyPair::generate()?;
    write(&dir.join("sa.key"), &sa_key.serialize_pem(), true)?;
    write(&dir.join("sa.pub"), &sa_key.public_key_pem(), false)?;

    let admin = kubeconfig(
        &opts.cluster_name,
        &opts.server_url,
        &ca_cert.pem(),
        "kubernetes-admin",
        &admin_cert,
        &admin_key,
    );
    write(&dir.join("admin.kubeconfig"), &admin, true)?;

    // Each control-plane component gets its own identity, as upstream's kubeadm writes them.
    for (file, user) in [
        (
            "controller-manager.kubeconfig",
            "system:kube-controller-manager",
        ),
        ("scheduler.kubeconfig", "system:kube-scheduler"),
        ("kube-proxy.kubeconfig", "system:kube-proxy"),
    ] {
        let (cert, key) = client_cert(&issuer, user, &[])?;
        let config = kubeconfig(
            &opts.cluster_name,
            &opts.server_url,
            &ca_cert.pem(),
            user,
            &cert,
            &key,
        );
        write(&dir.join(file), &config, true)?;
    }
    for node in &opts.nodes {
        let user = format!("system:node:{node}");
        let (cert, key) = client_cert(&issuer, &user, &["system:nodes"])?;
        let config = kubeconfig(
            &opts.cluster_name,
            &opts.server_url,
            &ca_cert.pem(),
            &user,
            &cert,
            &key,
        );
        write(
            &dir.join(format!("kubelet-{node}.kubeconfig")),
            &config,
            true,
        )?;
    }
    // The apiserver's identity towards kubelets (kubeadm's apiserver-kubelet-client).
    let (cert, key) = client_cert(
        &issuer,
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    )?;
    write(&dir.join("apiserver-kubelet-client.crt"), &cert, false)?;
    write(&dir.join("apiserver-kubelet-client.key"), &key, true)?;
    Ok(())
}

/// A client certificate signed by the CA: CN is the user, O entries its groups.
pub fn client_cert(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String)> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    for g in groups {
        dn.push(DnType::OrganizationName, *g);
    }
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut params, 365);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads the CA written by `generate` to sign more client certificates.
pub fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>> {
    let cert = std::fs::read_to_string(dir.join("ca.crt"))?;
    let key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key"))?)?;
    Ok(Issuer::from_ca_cert_pem(&cert, key)?)
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig with embedded credentials.
pub fn kubeconfig(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {user}@{cluster}
  context:
    cluster: {cluster}
    user: {user}
current-context: {user}@{cluster}
preferences: {{}}
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}
