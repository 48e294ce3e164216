//! CSR approving and signing against a real apiserver: a kubelet client request is
//! auto-approved and then signed by the cluster CA; an apiserver client request approved by
//! hand is signed with the lifetime it asked for.

use std::time::Duration;

use base64::Engine;
use ferrokube_testkit::TestServer;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use kube_controller_manager::context::{Context, Settings};
use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use serde_json::json;
use x509_parser::prelude::*;

const HANG_GUARD: Duration = Duration::from_secs(60);

fn ca() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "ferrokube-test-ca");
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn request(cn: &str, org: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

async fn create(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    pem: &str,
    signer: &str,
    usages: &[&str],
    expiration: Option<i32>,
) {
    let mut spec = json!({
        "request": base64::engine::general_purpose::STANDARD.encode(pem),
        "signerName": signer,
        "usages": usages,
    });
    if let Some(e) = expiration {
        spec["expirationSeconds"] = json!(e);
    }
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    api.create(&PostParams::default(), &csr).await.unwrap();
}

async fn wait_issued(
    api: &Api<CertificateSigningRequest>,
    name: &str,
) -> CertificateSigningRequest {
    let issued = |o: Option<&CertificateSigningRequest>| {
        o.and_then(|c| c.status.as_ref()?.certificate.as_ref())
            .is_some_and(|c| !c.0.is_empty())
    };
    tokio::time::timeout(HANG_GUARD, await_condition(api.clone(), name, issued))
        .await
        .unwrap_or_else(|_| panic!("{name} was never issued a certificate"))
        .unwrap()
        .unwrap()
}

/// Checks the issued certificate chains to the CA and names the requested subject; returns
/// its lifetime in seconds.
fn check_chain(csr: &CertificateSigningRequest, ca_pem: &str, cn: &str, org: &str) -> i64 {
    let (_, ca_block) = parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let ca = ca_block.parse_x509().unwrap();
    let cert_pem = &csr.status.as_ref().unwrap().certificate.as_ref().unwrap().0;
    let (_, block) = parse_x509_pem(cert_pem).unwrap();
    assert_eq!(block.label, "CERTIFICATE");
    let cert = block.parse_x509().unwrap();
    assert_eq!(cert.issuer().to_string(), ca.subject().to_string());
    cert.verify_signature(Some(ca.public_key()))
        .expect("certificate is signed by the CA");
    let cns: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let orgs: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cns, [cn]);
    assert_eq!(orgs, [org]);
    assert!(!cert.is_ca());
    cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_client_csr_is_approved_and_signed() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let (ca_pem, ca_key) = ca();
    let settings = Settings {
        signing_cert: Some(ca_pem.clone()),
        signing_key: Some(ca_key),
        ..Settings::default()
    };
    let ctx = Context::new(client.clone(), settings);
    tokio::spawn(kube_controller_manager::csrapproving::run(ctx.clone()));
    tokio::spawn(kube_controller_manager::csrsigning::run(ctx));
    let api: Api<CertificateSigningRequest> = Api::all(client);

    create(
        &api,
        "node-n1",
        &request("system:node:n1", "system:nodes"),
        "kubernetes.io/kube-apiserver-client-kubelet",
        &["digital signature", "client auth"],
        None,
    )
    .await;
    let csr = wait_issued(&api, "node-n1").await;
    let conds = csr.status.as_ref().unwrap().conditions.clone().unwrap();
    let approved = conds.iter().find(|c| c.type_ == "Approved").unwrap();
    assert_eq!(approved.status, "True");
    assert_eq!(approved.reason.as_deref(), Some("AutoApproved"));
    assert!(approved
        .message
        .as_deref()
        .unwrap()
        .contains("kubelet client certificate after SubjectAccessReview."));
    let lifetime = check_chain(&csr, &ca_pem, "system:node:n1", "system:nodes");
    assert_eq!(lifetime, 365 * 24 * 3600);

    // Not a kubelet request: the approver leaves it, a human approves, the signer signs it
    // for the ten minutes it asked for.
    create(
        &api,
        "alice",
        &request("alice", "devs"),
        "kubernetes.io/kube-apiserver-client",
        &["digital signature", "client auth"],
        Some(600),
    )
    .await;
    let mut csr = api.get("alice").await.unwrap();
    csr.status.get_or_insert_with(Default::default).conditions = Some(vec![
        k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("ByTest".into()),
            ..Default::default()
        },
    ]);
    api.replace_subresource("approval", "alice", &PostParams::default(), &csr)
        .await
        .unwrap();
    let csr = wait_issued(&api, "alice").await;
    let conds = csr.status.as_ref().unwrap().conditions.clone().unwrap();
    assert_eq!(conds.len(), 1, "only the manual approval: {conds:?}");
    assert_eq!(check_chain(&csr, &ca_pem, "alice", "devs"), 600);
}
