//! CSR signing (upstream's `pkg/controller/certificates/signer`): approved requests for the
//! built-in kubelet and apiserver-client signers get a certificate from the cluster CA
//! (--cluster-signing-cert-file / --cluster-signing-key-file). A request the signer will not
//! sign gets the Failed condition instead, so it is not retried forever.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

use crate::context::Context;
use crate::csrapproving::{self, condition, is_node_client, new_condition, parse_request};
use crate::shared::informer;
use crate::shared::retry::{is_status, Backoff, ReconcileError};

pub const NAME: &str = "csrsigning";

const SIGNERS: [&str; 3] = [
    csrapproving::KUBELET_CLIENT_SIGNER,
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kubelet-serving",
];

/// Upstream's --cluster-signing-duration default, and the shortest expirationSeconds allowed.
const DEFAULT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
const MIN_TTL: Duration = Duration::from_secs(600);
/// Clocks of the machines using the certificate may lag the signer's.
const BACKDATE: Duration = Duration::from_secs(300);
/// Below this lifetime, backdating by the full amount would eat too much of it.
const SHORT: Duration = Duration::from_secs(8 * 3600);

struct State {
    ctx: Arc<Context>,
    ca_pem: String,
    key_pem: String,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let (Some(ca_pem), Some(key_pem)) = (
            ctx.settings.signing_cert.clone(),
            ctx.settings.signing_key.clone(),
        ) else {
            tracing::info!("CSR signing is off: no --cluster-signing-cert-file/key-file");
            return Ok(());
        };
        // A bad CA is a configuration error worth failing loudly on, not per request.
        let key = KeyPair::from_pem(&key_pem)?;
        Issuer::from_ca_cert_pem(&ca_pem, key)?;
        let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        let (store, main) = informer::watch_main(api, watcher::Config::default());
        let state = Arc::new(State {
            ctx,
            ca_pem,
            key_pem,
            backoff: Backoff::default(),
        });
        informer::run(store, main, Vec::new(), reconcile, error_policy, state).await;
        Ok(())
    })
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The lifetime a request asks for, clamped as upstream: at least ten minutes, at most the
/// configured signing duration.
pub fn ttl(expiration_seconds: Option<i32>) -> Duration {
    match expiration_seconds {
        Some(s) if s > 0 => Duration::from_secs(s as u64).clamp(MIN_TTL, DEFAULT_TTL),
        Some(_) => MIN_TTL,
        None => DEFAULT_TTL,
    }
}

/// Why `signer` refuses this request, if it does.
fn refusal(signer: &str, csr: &CertificateSigningRequest) -> Option<String> {
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let req = match parse_request(&csr.spec.request.0) {
        Ok(r) => r,
        Err(e) => return Some(format!("{e:#}")),
    };
    match signer {
        csrapproving::KUBELET_CLIENT_SIGNER if !is_node_client(&req, &usages) => {
            Some("invalid kubelet client certificate request".into())
        }
        "kubernetes.io/kubelet-serving" => {
            let node_named = req.organizations == ["system:nodes"]
                && req.common_name.len() == 1
                && req.common_name[0].starts_with("system:node:");
            let allowed = ["digital signature", "key encipherment", "server auth"];
            let usages_ok = usages.iter().any(|u| u == "server auth")
                && usages.iter().all(|u| allowed.contains(&u.as_str()));
            (!node_named || !usages_ok || !req.has_sans)
                .then(|| "invalid kubelet serving certificate request".into())
        }
        "kubernetes.io/kube-apiserver-client" => {
            let allowed = ["digital signature", "key encipherment", "client auth"];
            let usages_ok = usages.iter().any(|u| u == "client auth")
                && usages.iter().all(|u| allowed.contains(&u.as_str()));
            (!usages_ok).then(|| "invalid usages for a client certificate".into())
        }
        _ => None,
    }
}

/// Signs the request's key with the CA, subject and alternative names as requested, usages
/// and lifetime as the spec says.
fn sign(st: &State, csr: &CertificateSigningRequest) -> anyhow::Result<String> {
    let pem = std::str::from_utf8(&csr.spec.request.0)?;
    let mut req = CertificateSigningRequestParams::from_pem(pem)?;
    let params = &mut req.params;
    let ttl = ttl(csr.spec.expiration_seconds);
    let backdate = if ttl < SHORT {
        (ttl / 10).min(BACKDATE)
    } else {
        BACKDATE
    };
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = unix_now();
    params.not_before = epoch + now.saturating_sub(backdate);
    params.not_after = epoch + now.saturating_sub(backdate) + ttl;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages.clear();
    params.extended_key_usages.clear();
    params.custom_extensions.clear();
    params.use_authority_key_identifier_extension = true;
    for u in csr.spec.usages.iter().flatten() {
        match u.as_str() {
            "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
            "content commitment" => params.key_usages.push(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => params.key_usages.push(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => params.key_usages.push(KeyUsagePurpose::DataEncipherment),
            "cert sign" => params.key_usages.push(KeyUsagePurpose::KeyCertSign),
            "crl sign" => params.key_usages.push(KeyUsagePurpose::CrlSign),
            "encipher only" => params.key_usages.push(KeyUsagePurpose::EncipherOnly),
            "decipher only" => params.key_usages.push(KeyUsagePurpose::DecipherOnly),
            "server auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::EmailProtection),
            "timestamping" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::OcspSigning),
            _ => {}
        }
    }
    let mut serial: [u8; 16] = rand::random();
    // A positive serial: DER integers are signed.
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let issuer = Issuer::from_ca_cert_pem(&st.ca_pem, KeyPair::from_pem(&st.key_pem)?)?;
    Ok(req.signed_by(&issuer)?.pem())
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    st: Arc<State>,
) -> Result<Action, ReconcileError> {
    st.ctx.metrics.inc("workqueue_adds_total", NAME);
    let name = csr.metadata.name.clone().unwrap_or_default();
    let signer = csr.spec.signer_name.as_str();
    let issued = csr
        .status
        .as_ref()
        .is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.0.is_empty()));
    if !SIGNERS.contains(&signer)
        || issued
        || !condition(&csr, "Approved")
        || condition(&csr, "Denied")
        || condition(&csr, "Failed")
    {
        return Ok(Action::await_change());
    }
    let mut updated = (*csr).clone();
    let status = updated.status.get_or_insert_with(Default::default);
    match refusal(signer, &csr) {
        Some(why) => status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(new_condition("Failed", "SignerValidationFailure", &why)),
        None => status.certificate = Some(ByteString(sign(&st, &csr)?.into_bytes())),
    }
    let api: Api<CertificateSigningRequest> = Api::all(st.ctx.client.clone());
    match api
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {}
        // Gone, or changed since the cache saw it: the watch brings the current state.
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
        Err(e) => return Err(e.into()),
    }
    st.backoff.succeeded(&name);
    Ok(Action::await_change())
}

fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    err: &ReconcileError,
    st: Arc<State>,
) -> Action {
    st.ctx.metrics.inc("workqueue_retries_total", NAME);
    let name = csr.metadata.name.clone().unwrap_or_default();
    tracing::warn!(csr = %name, error = %err, "CSR signing failed");
    Action::requeue(st.backoff.failed(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_defaults_and_clamps() {
        assert_eq!(ttl(None), DEFAULT_TTL);
        assert_eq!(ttl(Some(60)), MIN_TTL);
        assert_eq!(ttl(Some(3600)), Duration::from_secs(3600));
        assert_eq!(ttl(Some(i32::MAX)), DEFAULT_TTL);
    }
}
