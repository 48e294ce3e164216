//! ServiceAccount tokens end to end: `kubectl create token` (TokenRequest), the tokens as
//! bearer credentials (`kubectl auth whoami`, kube-rs), TokenReview, the issuer discovery
//! documents, the ServiceAccount admission plugin, and keys given as files.

use base64::Engine;
use ferrokube_testkit::{path_str, TestServer};
use futures::TryStreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A server with the ServiceAccount admission plugin on, as a real cluster runs it.
async fn server() -> TestServer {
    TestServer::start_configured(|c| c.disable_admission_plugins.clear()).await
}

fn b64decode(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url")
}

/// The header and claims of a JWT.
fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    (
        serde_json::from_slice(&b64decode(parts[0])).unwrap(),
        serde_json::from_slice(&b64decode(parts[1])).unwrap(),
    )
}

/// Checks a token's signature against a JWK set, as a relying party would.
fn verify_with_jwks(token: &str, jwks: &Value) {
    let token = token.trim();
    let (header, _) = decode(token);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("no key {} in {jwks}", header["kid"]));
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = b64decode(sig);
    let ok = match (
        header["alg"].as_str().unwrap(),
        key["kty"].as_str().unwrap(),
    ) {
        ("ES256" | "ES384", "EC") => {
            let mut point = vec![4u8];
            point.extend(b64decode(key["x"].as_str().unwrap()));
            point.extend(b64decode(key["y"].as_str().unwrap()));
            let alg = if header["alg"] == "ES256" {
                &ring::signature::ECDSA_P256_SHA256_FIXED
            } else {
                &ring::signature::ECDSA_P384_SHA384_FIXED
            };
            ring::signature::UnparsedPublicKey::new(alg, point)
                .verify(input.as_bytes(), &sig)
                .is_ok()
        }
        ("RS256", "RSA") => ring::signature::RsaPublicKeyComponents {
            n: b64decode(key["n"].as_str().unwrap()),
            e: b64decode(key["e"].as_str().unwrap()),
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &sig,
        )
        .is_ok(),
        other => panic!("unexpected algorithm {other:?}"),
    };
    assert!(ok, "the signature does not verify with the published key");
}

/// A kubeconfig that authenticates with `token` only.
fn token_kubeconfig(s: &TestServer, name: &str, token: &str) -> std::path::PathBuf {
    let ca = s.path("pki/ca.crt");
    s.write(
        name,
        &format!(
            "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {}
    certificate-authority: {}
users:
- name: sa
  user:
    token: {}
contexts:
- name: sa
  context:
    cluster: test
    user: sa
current-context: sa
",
            s.url,
            path_str(&ca),
            token.trim()
        ),
    )
}

async fn whoami(s: &TestServer, token: &str) -> ferrokube_testkit::Kubectl {
    let kc = token_kubeconfig(s, "token.kubeconfig", token);
    s.kubectl_with(&["auth", "whoami"], None, &[("KUBECONFIG", path_str(&kc))])
        .await
}

/// A raw request with the admin credentials: status code and JSON body.
async fn raw(client: &kube::Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default()
                .into(),
        )
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn create_account(
    client: &kube::Client,
    ns: &str,
    name: &str,
    extra: Value,
) -> ServiceAccount {
    let mut sa = json!({"metadata": {"name": name}});
    if let (Some(o), Some(e)) = (sa.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
        .await
        .unwrap()
}

fn pod(name: &str, spec_extra: Value) -> Pod {
    let mut spec = json!({
        "initContainers": [{"name": "init", "image": "busybox"}],
        "containers": [{"name": "c", "image": "busybox"}],
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn token_review(client: &kube::Client, token: &str, audiences: Value) -> Value {
    let (code, body) = raw(
        client,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token.trim(), "audiences": audiences},
        })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body["status"].clone()
}

/// Waits until a watch on the object `name`, from resourceVersion `after`, reports an event
/// that `done` accepts. Watches are served from the watch cache, which the token validator
/// reads, so a change a watch has reported is one a TokenReview sees.
async fn watch_until<K>(
    api: &Api<K>,
    name: &str,
    after: &str,
    done: impl Fn(&WatchEvent<K>) -> bool,
) where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    let events = api.watch(&params, after).await.unwrap();
    let mut events = std::pin::pin!(events);
    // Only a guard against a hung test: the event is due as soon as the change is stored.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(event) = events.try_next().await.unwrap() {
            if let WatchEvent::Error(e) = &event {
                panic!("watching {name}: {e:?}");
            }
            if done(&event) {
                return;
            }
        }
        panic!("the watch on {name} ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no awaited event for {name} in 30s"));
}

/// Waits until a watch from `after` has reported `name` deleted.
async fn watch_until_deleted<K>(api: &Api<K>, name: &str, after: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    watch_until(api, name, after, |e| matches!(e, WatchEvent::Deleted(_))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token_authenticates() {
    let s = server().await;
    let client = s.client().await;
    let sa = create_account(&client, "default", "default", json!({})).await;
    let sa_rv = sa.metadata.resource_version.unwrap();
    let sa_uid = sa.metadata.uid.unwrap();

    // A token for another audience: signed by a published key, but not for the API.
    let token = s
        .kubectl(&[
            "create",
            "token",
            "default",
            "--audience",
            "x",
            "--duration",
            "10m",
        ])
        .await
        .expect_ok("create token");
    let (header, claims) = decode(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["aud"], json!(["x"]));
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 36));
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "default", "serviceaccount": {"name": "default", "uid": sa_uid}})
    );
    let (code, jwks) = raw(&client, "GET", "/openid/v1/jwks", None).await;
    assert_eq!(code, 200);
    verify_with_jwks(&token, &jwks);
    let status = token_review(&client, &token, json!(["x"])).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], json!(["x"]));
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:default:default"
    );
    let status = token_review(&client, &token, json!([])).await;
    assert!(status.get("authenticated").is_none(), "{status}");
    assert_eq!(
        status["error"],
        format!("[invalid bearer token, token audiences [\"x\"] is invalid for the target audiences [\"{ISSUER}\"]]")
    );
    let out = whoami(&s, &token).await;
    assert!(
        !out.ok && out.stderr.contains("Unauthorized"),
        "{}",
        out.stderr
    );

    // A token for the API: kubectl and kube-rs are that account.
    let token = s
        .kubectl(&["create", "token", "default"])
        .await
        .expect_ok("create token");
    let (_, claims) = decode(&token);
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let out = whoami(&s, &token).await.expect_ok("auth whoami");
    assert!(
        out.contains("system:serviceaccount:default:default"),
        "{out}"
    );
    assert!(out.contains(&sa_uid), "{out}");
    assert!(
        out.contains(
            "[system:serviceaccounts system:serviceaccounts:default system:authenticated]"
        ),
        "{out}"
    );
    let jti = claims["jti"].as_str().unwrap();
    assert!(
        out.contains("authentication.kubernetes.io/credential-id"),
        "{out}"
    );
    assert!(out.contains(&format!("[JTI={jti}]")), "{out}");

    let kc = token_kubeconfig(&s, "kube-rs.kubeconfig", &token);
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kc).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let as_sa = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(as_sa, "default");
    pods.list(&Default::default()).await.unwrap();

    // The account's deletion ends its tokens.
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), "default");
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    watch_until_deleted(&accounts, "default", &sa_rv).await;
    let status = token_review(&client, &token, json!([])).await;
    assert_eq!(
        status["error"],
        "[invalid bearer token, serviceaccounts \"default\" not found]"
    );
    assert!(!whoami(&s, &token).await.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_bound_tokens_end_with_their_pod() {
    let s = server().await;
    let client = s.client().await;
    create_account(&client, "default", "default", json!({})).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pods
        .create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap();
    let pod_rv = p.metadata.resource_version.unwrap();
    let pod_uid = p.metadata.uid.unwrap();
    let on_node = pods
        .create(
            &PostParams::default(),
            &pod("on-node", json!({"nodeName": "n1"})),
        )
        .await
        .unwrap();

    let token = s
        .kubectl(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "p",
            "--bound-object-uid",
            &pod_uid,
        ])
        .await
        .expect_ok("create bound token");
    let (_, claims) = decode(&token);
    assert_eq!(
        claims["kubernetes.io"]["pod"],
        json!({"name": "p", "uid": pod_uid})
    );
    assert!(claims["kubernetes.io"].get("node").is_none());
    let out = whoami(&s, &token).await.expect_ok("whoami");
    assert!(
        out.contains("authentication.kubernetes.io/pod-name") && out.contains("[p]"),
        "{out}"
    );
    assert!(out.contains(&format!("[{pod_uid}]")), "{out}");

    // A pod on a node: the node is in the claims and the user's extra.
    let token_on_node = s
        .kubectl(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "on-node",
        ])
        .await
        .expect_ok("create token for a pod on a node");
    let (_, claims) = decode(&token_on_node);
    let node_uid = node.metadata.uid.unwrap();
    assert_eq!(
        claims["kubernetes.io"]["node"],
        json!({"name": "n1", "uid": node_uid})
    );
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        json!(on_node.metadata.uid.unwrap())
    );
    let status = token_review(&client, &token_on_node, json!([])).await;
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/node-name"],
        json!(["n1"])
    );
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/node-uid"],
        json!([node_uid])
    );

    // The pod goes, and its token with it.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    watch_until_deleted(&pods, "p", &pod_rv).await;
    let status = token_review(&client, &token, json!([])).await;
    let out = whoami(&s, &token).await;
    assert!(
        !out.ok && out.stderr.contains("Unauthorized"),
        "{}",
        out.stderr
    );
    assert_eq!(
        status,
        json!({"user": {}, "error": "[invalid bearer token, service account token has been invalidated]"})
    );
    // A pod of the same name is another pod.
    pods.create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap();
    let status = token_review(&client, &token, json!([])).await;
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("does not match service account pod ref claim"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_validated() {
    let s = server().await;
    let client = s.client().await;
    create_account(&client, "default", "robot", json!({})).await;

    let err = s
        .kubectl(&["create", "token", "robot", "--duration", "5m"])
        .await
        .expect_err("a 5m token");
    assert!(
        err.contains(r#"failed to create token: TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"#),
        "{err}"
    );
    let path = "/api/v1/namespaces/default/serviceaccounts/robot/token";
    let request = |spec: Value| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let (code, body) = raw(
        &client,
        "POST",
        path,
        Some(request(json!({"expirationSeconds": 10}))),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["details"],
        json!({"name": "", "group": "authentication.k8s.io", "kind": "TokenRequest", "causes": [{
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 10: may not specify a duration less than 10 minutes",
            "field": "spec.expirationSeconds",
        }]})
    );
    let (code, body) = raw(
        &client,
        "POST",
        path,
        Some(request(json!({"expirationSeconds": 5_000_000_000i64}))),
    )
    .await;
    assert_eq!(code, 422);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("may not specify a duration larger than 2^32 seconds"));

    // The whole answer, as upstream gives it.
    let (code, body) = raw(&client, "POST", path, Some(request(json!({})))).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["kind"], "TokenRequest");
    assert_eq!(body["metadata"]["name"], "robot");
    assert_eq!(body["metadata"]["namespace"], "default");
    assert_eq!(
        body["spec"],
        json!({"audiences": [ISSUER], "expirationSeconds": 3600})
    );
    let (_, claims) = decode(body["status"]["token"].as_str().unwrap());
    let expires = chrono::DateTime::parse_from_rfc3339(
        body["status"]["expirationTimestamp"].as_str().unwrap(),
    )
    .unwrap()
    .timestamp();
    assert_eq!(expires, claims["exp"].as_i64().unwrap());

    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/ghost/token",
        Some(request(json!({}))),
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str().unwrap()),
        (404, "serviceaccounts \"ghost\" not found")
    );

    let bound = |kind: &str, name: &str, uid: &str| {
        request(
            json!({"boundObjectRef": {"kind": kind, "apiVersion": "v1", "name": name, "uid": uid}}),
        )
    };
    let (code, body) = raw(&client, "POST", path, Some(bound("Pod", "nowhere", ""))).await;
    assert_eq!(
        (code, body["message"].as_str().unwrap()),
        (404, "pods \"nowhere\" not found")
    );
    let (code, body) = raw(&client, "POST", path, Some(bound("ConfigMap", "x", ""))).await;
    assert_eq!(
        (code, body["message"].as_str().unwrap()),
        (
            400,
            "cannot bind token to object of type /v1, Kind=ConfigMap"
        )
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("robot-pod", json!({"serviceAccountName": "robot"})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("other", json!({"serviceAccountName": "robot"})),
    )
    .await
    .unwrap();
    let (code, body) = raw(
        &client,
        "POST",
        path,
        Some(bound("Pod", "robot-pod", "wrong-uid")),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "Conflict");
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on Pod \"robot-pod\": the UID in the bound object reference (wrong-uid) does not match the UID in record. The object might have been deleted and then recreated"
    );
    create_account(&client, "default", "default", json!({})).await;
    pods.create(&PostParams::default(), &pod("default-pod", json!({})))
        .await
        .unwrap();
    let (code, body) = raw(&client, "POST", path, Some(bound("Pod", "default-pod", ""))).await;
    assert_eq!(
        (code, body["message"].as_str().unwrap()),
        (400, "cannot bind token for serviceaccount \"robot\" to pod running with different serviceaccount name.")
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let (code, secret) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/secrets",
        Some(secret),
    )
    .await;
    assert_eq!(code, 201);
    let uid = secret["metadata"]["uid"].as_str().unwrap();
    let secret_rv = secret["metadata"]["resourceVersion"].as_str().unwrap();
    let (code, body) = raw(&client, "POST", path, Some(bound("Secret", "s", uid))).await;
    assert_eq!(code, 201, "{body}");
    let token = body["status"]["token"].as_str().unwrap().to_string();
    let (_, claims) = decode(&token);
    assert_eq!(
        claims["kubernetes.io"]["secret"],
        json!({"name": "s", "uid": uid})
    );
    assert_eq!(
        token_review(&client, &token, json!([])).await["authenticated"],
        true
    );
    raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/default/secrets/s",
        None,
    )
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");
    watch_until_deleted(&secrets, "s", secret_rv).await;
    assert_eq!(
        token_review(&client, &token, json!([])).await["error"],
        "[invalid bearer token, service account token has been invalidated]"
    );

    // TokenReview itself.
    let (code, body) = raw(
        &client,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}})),
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str().unwrap()),
        (400, "token is required for TokenReview in authentication")
    );
    let status = token_review(&client, "not-a-token", json!([])).await;
    assert_eq!(status, json!({"user": {}, "error": "invalid bearer token"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_discovery() {
    let s = server().await;
    let client = s.client().await;
    let (code, config) = raw(&client, "GET", "/.well-known/openid-configuration", None).await;
    assert_eq!(code, 200);
    let (code, jwks) = raw(&client, "GET", "/openid/v1/jwks", None).await;
    assert_eq!(code, 200);
    let addr = s.url.trim_start_matches("https://");
    assert_eq!(
        config,
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("https://{addr}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    );
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    // The key ID is derived from the key as upstream derives it.
    let sa_pub = std::fs::read_to_string(s.path("pki/sa.pub")).unwrap();
    let keys_from_file =
        kube_apiserver::serviceaccount::keys::public_keys_from_pem(&sa_pub).unwrap();
    assert_eq!(keys[0]["kid"], json!(keys_from_file[0].kid()));

    let req = http::Request::get("/openid/v1/jwks")
        .body(Vec::<u8>::new().into())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/jwk-set+json");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=3600");
    let (_, root) = raw(&client, "GET", "/", None).await;
    assert!(root["paths"]
        .as_array()
        .unwrap()
        .contains(&json!("/openid/v1/jwks")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_mounts_the_token_volume() {
    let s = server().await;
    let client = s.client().await;
    create_account(
        &client,
        "default",
        "default",
        json!({"imagePullSecrets": [{"name": "regcred"}]}),
    )
    .await;
    create_account(
        &client,
        "default",
        "quiet",
        json!({"automountServiceAccountToken": false}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    pods.create(&PostParams::default(), &pod("web", json!({})))
        .await
        .unwrap();
    let yaml = s
        .kubectl(&["get", "pod", "web", "-o", "json"])
        .await
        .expect_ok("get pod");
    let p: Value = serde_json::from_str(&yaml).unwrap();
    let spec = &p["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
    let volumes = spec["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 1);
    let name = volumes[0]["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == 21,
        "{name}"
    );
    assert_eq!(
        volumes[0]["projected"],
        json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
            ],
        })
    );
    let mount = json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": name, "readOnly": true});
    assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));

    // Turned off by the pod or by its account.
    let p = pods
        .create(
            &PostParams::default(),
            &pod("off", json!({"automountServiceAccountToken": false})),
        )
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    assert!(spec.volumes.is_none() && spec.containers[0].volume_mounts.is_none());
    let p = pods
        .create(
            &PostParams::default(),
            &pod("quiet", json!({"serviceAccountName": "quiet"})),
        )
        .await
        .unwrap();
    assert!(p.spec.unwrap().volumes.is_none());
    // The pod's word wins over its account's.
    let p = pods
        .create(
            &PostParams::default(),
            &pod(
                "loud",
                json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.unwrap().volumes.unwrap().len(), 1);

    // The account must exist.
    let err = pods
        .create(
            &PostParams::default(),
            &pod("lost", json!({"serviceAccountName": "missing"})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 403);
            assert_eq!(
                e.message,
                "pods \"lost\" is forbidden: error looking up service account default/missing: serviceaccount \"missing\" not found"
            );
        }
        other => panic!("{other:?}"),
    }
    // A namespace without its default account yet.
    s.kubectl(&["create", "namespace", "fresh"])
        .await
        .expect_ok("create ns");
    let fresh: Api<Pod> = Api::namespaced(client.clone(), "fresh");
    let err = fresh
        .create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "error looking up service account fresh/default: serviceaccount \"default\" not found"
        ),
        "{err}"
    );
}

/// Generates a key with the openssl command line (Debian's openssl).
fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_sec1_keys_from_files() {
    let dir = tempfile::tempdir().unwrap();
    // kubeadm's kind of key: PKCS#1 RSA, with its public key beside it.
    let rsa = openssl(&["genrsa", "-traditional", "2048"]);
    assert!(rsa.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let rsa_path = dir.path().join("sa-rsa.key");
    std::fs::write(&rsa_path, &rsa).unwrap();
    let rsa_pub = openssl(&["rsa", "-in", path_str(&rsa_path), "-pubout"]);
    let rsa_pub_path = dir.path().join("sa-rsa.pub");
    std::fs::write(&rsa_pub_path, &rsa_pub).unwrap();
    // An old signing key still trusted: SEC 1 P-384.
    let ec = openssl(&["ecparam", "-name", "secp384r1", "-genkey", "-noout"]);
    assert!(ec.contains("-----BEGIN EC PRIVATE KEY-----"));
    let ec_path = dir.path().join("old.key");
    std::fs::write(&ec_path, &ec).unwrap();

    let (rsa_key, ec_key, rsa_pub_key) = (rsa_path.clone(), ec_path.clone(), rsa_pub_path.clone());
    let s = TestServer::start_configured(move |c| {
        c.service_account.signing_key_file = Some(rsa_key);
        c.service_account.key_files = vec![rsa_pub_key, ec_key];
        c.service_account.issuers = vec!["https://issuer.example".into(), ISSUER.into()];
        c.service_account.api_audiences = vec!["api".into()];
    })
    .await;
    let client = s.client().await;
    create_account(&client, "default", "default", json!({})).await;
    let token = s
        .kubectl(&["create", "token", "default"])
        .await
        .expect_ok("create token");
    let (header, claims) = decode(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "https://issuer.example");
    assert_eq!(claims["aud"], json!(["api"]));
    let (_, jwks) = raw(&client, "GET", "/openid/v1/jwks", None).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(jwks["keys"][1]["crv"], "P-384");
    verify_with_jwks(&token, &jwks);
    let (_, config) = raw(&client, "GET", "/.well-known/openid-configuration", None).await;
    assert_eq!(
        config["id_token_signing_alg_values_supported"],
        json!(["ES384", "RS256"])
    );
    assert_eq!(config["issuer"], "https://issuer.example");
    whoami(&s, &token)
        .await
        .expect_ok("whoami with an RS256 token");

    // A token of the second issuer, signed by the older key, still authenticates.
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .get("default")
        .await
        .unwrap();
    let old = kube_apiserver::serviceaccount::keys::SigningKey::load(&ec_path).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "aud": ["api"], "exp": now + 600, "iat": now, "iss": ISSUER,
        "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "default", "uid": sa.metadata.uid.clone().unwrap()}},
        "nbf": now, "sub": "system:serviceaccount:default:default",
    });
    let old_token = kube_apiserver::serviceaccount::jwt::sign(&old, &claims).unwrap();
    let status = token_review(&client, &old_token, json!([])).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert!(status["user"].get("extra").is_none(), "{status}");
    // Expired a minute and more ago: refused.
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 120);
    let expired = kube_apiserver::serviceaccount::jwt::sign(&old, &expired).unwrap();
    assert_eq!(
        token_review(&client, &expired, json!([])).await["error"],
        "[invalid bearer token, service account token has expired]"
    );
    // Signed by a key nobody trusts.
    let stranger = kube_apiserver::serviceaccount::keys::SigningKey::from_pem(
        &rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let forged = kube_apiserver::serviceaccount::jwt::sign(&stranger, &claims).unwrap();
    assert_eq!(
        token_review(&client, &forged, json!([])).await["error"],
        "[invalid bearer token, go-jose/go-jose: error in cryptographic primitive]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_secret_tokens() {
    let s = server().await;
    let client = s.client().await;
    let sa = create_account(&client, "default", "builder", json!({})).await;
    let key =
        kube_apiserver::serviceaccount::keys::SigningKey::load(&s.path("pki/sa.key")).unwrap();
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "default",
        "kubernetes.io/serviceaccount/secret.name": "builder-token",
        "kubernetes.io/serviceaccount/service-account.name": "builder",
        "kubernetes.io/serviceaccount/service-account.uid": sa.metadata.uid.clone().unwrap(),
        "sub": "system:serviceaccount:default:builder",
    });
    let token = kube_apiserver::serviceaccount::jwt::sign(&key, &claims).unwrap();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "builder-token", "annotations": {"kubernetes.io/service-account.name": "builder"}},
        "data": {"token": base64::engine::general_purpose::STANDARD.encode(&token)},
    });
    let (code, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/secrets",
        Some(secret),
    )
    .await;
    assert_eq!(code, 201);
    let out = whoami(&s, &token)
        .await
        .expect_ok("whoami with a legacy token");
    assert!(
        out.contains("system:serviceaccount:default:builder"),
        "{out}"
    );
    let (_, secret) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/secrets/builder-token",
        None,
    )
    .await;
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(
        secret["metadata"]["labels"]["kubernetes.io/legacy-token-last-used"],
        json!(today)
    );

    // Invalidated by label, then by deletion.
    let secret_rv = secret["metadata"]["resourceVersion"].as_str().unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");
    let req = http::Request::patch("/api/v1/namespaces/default/secrets/builder-token")
        .header("content-type", "application/merge-patch+json")
        .body(serde_json::to_vec(&json!({"metadata": {"labels": {"kubernetes.io/legacy-token-invalid-since": "2024-01-01"}}})).unwrap().into())
        .unwrap();
    assert_eq!(client.send(req).await.unwrap().status().as_u16(), 200);
    watch_until(&secrets, "builder-token", secret_rv, |e| {
        matches!(e, WatchEvent::Modified(s) if s.metadata.labels.as_ref().is_some_and(|l| l.contains_key("kubernetes.io/legacy-token-invalid-since")))
    })
    .await;
    let status = token_review(&client, &token, json!([])).await;
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("has been marked invalid"),
        "{status}"
    );
    raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/default/secrets/builder-token",
        None,
    )
    .await;
    watch_until_deleted(&secrets, "builder-token", secret_rv).await;
    assert_eq!(
        token_review(&client, &token, json!([])).await["error"],
        "[invalid bearer token, Token has been invalidated]"
    );
}
