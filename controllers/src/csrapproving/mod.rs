//! CSR approving (upstream's `pkg/controller/certificates/approver`, the SubjectAccessReview
//! approver): kubelet client certificate requests for the
//! `kubernetes.io/kube-apiserver-client-kubelet` signer whose request is a well-formed node
//! client certificate are approved. The apiserver here authorizes everything, so the
//! SubjectAccessReview that upstream asks before approving always allows and is not issued.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::context::Context;
use crate::shared::informer;
use crate::shared::retry::{is_status, Backoff, ReconcileError};

pub const NAME: &str = "csrapproving";

pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

struct State {
    ctx: Arc<Context>,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        let (store, main) = informer::watch_main(api, watcher::Config::default());
        let state = Arc::new(State {
            ctx,
            backoff: Backoff::default(),
        });
        informer::run(store, main, Vec::new(), reconcile, error_policy, state).await;
        Ok(())
    })
}

/// The subject and extensions of a request that the approver and signer judge it by.
#[derive(Debug, Default)]
pub struct Request {
    pub common_name: Vec<String>,
    pub organizations: Vec<String>,
    /// Whether any subject alternative name (DNS, email, IP, URI) is asked for.
    pub has_sans: bool,
}

/// Parses a PEM-encoded PKCS#10 request as found in spec.request.
pub fn parse_request(pem: &[u8]) -> anyhow::Result<Request> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| anyhow::anyhow!("request is not PEM: {e}"))?;
    if block.label != "CERTIFICATE REQUEST" {
        anyhow::bail!("PEM block type must be CERTIFICATE REQUEST");
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| anyhow::anyhow!("request is not a PKCS#10 request: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let mut out = Request {
        common_name: strings(&mut subject.iter_common_name()),
        organizations: strings(&mut subject.iter_organization()),
        has_sans: false,
    };
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                out.has_sans |= !san.general_names.is_empty();
            }
        }
    }
    Ok(out)
}

/// Whether usages are exactly a node client's: client auth and digital signature, with key
/// encipherment allowed (RSA keys need it, ECDSA keys do not).
pub fn node_client_usages(usages: &[String]) -> bool {
    let mut set: Vec<&str> = usages.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    set == ["client auth", "digital signature"]
        || set == ["client auth", "digital signature", "key encipherment"]
}

/// Whether a request is for a node client certificate (`system:node:<name>` in
/// `system:nodes`, no alternative names, client usages), as upstream's `IsKubeletClientCSR`.
pub fn is_node_client(req: &Request, usages: &[String]) -> bool {
    req.organizations == ["system:nodes"]
        && !req.has_sans
        && req.common_name.len() == 1
        && req.common_name[0].starts_with("system:node:")
        && node_client_usages(usages)
}

/// Approved or Denied: a decision was made and the approver must not make another.
pub fn has_decision(csr: &CertificateSigningRequest) -> bool {
    condition(csr, "Approved") || condition(csr, "Denied")
}

pub fn condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

pub fn new_condition(
    type_: &str,
    reason: &str,
    message: &str,
) -> CertificateSigningRequestCondition {
    let now = Time(Timestamp::now());
    CertificateSigningRequestCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    st: Arc<State>,
) -> Result<Action, ReconcileError> {
    st.ctx.metrics.inc("workqueue_adds_total", NAME);
    let name = csr.metadata.name.clone().unwrap_or_default();
    let issued = csr
        .status
        .as_ref()
        .is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.0.is_empty()));
    if has_decision(&csr) || issued || csr.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Ok(Action::await_change());
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let req = match parse_request(&csr.spec.request.0) {
        Ok(r) => r,
        Err(e) => {
            // A malformed request is not ours to deny; the signer reports it as failed.
            tracing::debug!(csr = %name, "not approving: {e:#}");
            return Ok(Action::await_change());
        }
    };
    if !is_node_client(&req, &usages) {
        return Ok(Action::await_change());
    }
    // A node renewing its own certificate and a bootstrap identity asking for one are told
    // apart as upstream does, by whether the requester is the node the certificate names.
    let message = if csr.spec.username.as_deref() == req.common_name.first().map(String::as_str) {
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    } else {
        "Auto approving kubelet client certificate after SubjectAccessReview."
    };
    let mut updated = (*csr).clone();
    let status = updated.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(new_condition("Approved", "AutoApproved", message));
    let api: Api<CertificateSigningRequest> = Api::all(st.ctx.client.clone());
    match api
        .replace_subresource("approval", &name, &PostParams::default(), &updated)
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
    tracing::warn!(csr = %name, error = %err, "CSR approval failed");
    let delay = st.backoff.failed(&name);
    Action::requeue(delay.max(Duration::from_millis(1)))
}
