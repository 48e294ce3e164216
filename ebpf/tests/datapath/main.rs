//! kube-lb's programs in the kernel, driven by the real binary watching a real apiserver,
//! with real TCP and UDP between network namespaces set up as pods, nodes and an outside
//! host. Needs root (netns, cgroups, BPF), iproute2 and python3.

mod kube_lb;
mod net;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use ferrokube_testkit::TestServer;

use crate::kube_lb::KubeLb;
use crate::net::{client, Cluster, From, Held, Pod};

/// Creates the Service `default/<name>` and returns its cluster IP.
async fn create_service(server: &TestServer, name: &str, spec: serde_json::Value) -> Ipv4Addr {
    let api: Api<Service> = Api::namespaced(server.client().await, "default");
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("service");
    let svc = api
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    svc.spec
        .and_then(|s| s.cluster_ip)
        .and_then(|ip| ip.parse().ok())
        .expect("a cluster IP")
}

/// Writes the service's one EndpointSlice, `<service>-1`, with `(pod, ready)` endpoints, as
/// the EndpointSlice controller would (the apiserver has no server-side apply yet).
async fn set_endpoints(
    server: &TestServer,
    service: &str,
    ports: serde_json::Value,
    endpoints: &[(&Pod, bool)],
) {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(pod, ready)| {
            json!({"addresses": [pod.ip.to_string()], "nodeName": pod.node,
                   "conditions": {"ready": ready, "serving": ready, "terminating": false}})
        })
        .collect();
    let name = format!("{service}-1");
    let mut slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("slice");
    let api: Api<EndpointSlice> = Api::namespaced(server.client().await, "default");
    match api.get_opt(&name).await.expect("get slice") {
        Some(old) => {
            slice.metadata.resource_version = old.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &slice)
                .await
                .expect("replace slice");
        }
        None => {
            api.create(&PostParams::default(), &slice)
                .await
                .expect("create slice");
        }
    }
}

async fn clear_endpoints(server: &TestServer, service: &str) {
    let api: Api<EndpointSlice> = Api::namespaced(server.client().await, "default");
    api.delete(&format!("{service}-1"), &DeleteParams::default())
        .await
        .expect("delete slice");
}

/// The answering backends' names, failing on any line that is not an answer.
fn answered_by(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| {
            assert!(!l.starts_with("error"), "a request failed: {l}");
            l.split_whitespace().next().expect("a name").to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_from_pods_and_from_the_node() {
    let server = TestServer::start().await;
    let mut cluster = Cluster::new(2);
    let a = cluster.pod("a", "node1", Some(8080)).await;
    let b = cluster.pod("b", "node2", Some(8080)).await;
    let c = cluster.pod("c", "node1", None).await;
    let mut lb = KubeLb::start(&server, &cluster, cluster.node("node1")).await;

    // Two ports, TCP and UDP, resolved by name through the slice.
    let vip = create_service(
        &server,
        "web",
        json!({"ports": [
                {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
                {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}]}),
    )
    .await;
    let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"},
                       {"name": "dns", "port": 8080, "protocol": "UDP"}]);
    set_endpoints(&server, "web", ports, &[(&a, true), (&b, true)]).await;
    lb.synced(
        "default/web",
        &[&format!("{vip}:80/tcp=2"), &format!("{vip}:53/udp=2")],
    )
    .await;

    let node1 = cluster.node("node1");
    let tcp = client(From::Pod(&c, node1), "tcp", vip, 80, 24).await;
    assert_eq!(
        answered_by(&tcp),
        BTreeSet::from(["a".into(), "b".into()]),
        "{tcp:?}"
    );
    // The socket reports the service, not the backend.
    assert!(
        tcp.iter().all(|l| l.ends_with(&format!("peer={vip}:80"))),
        "{tcp:?}"
    );

    for mode in ["udp", "udp-connected"] {
        let udp = client(From::Pod(&c, node1), mode, vip, 53, 16).await;
        assert!(!answered_by(&udp).is_empty());
        assert!(
            udp.iter().all(|l| l.ends_with(&format!("peer={vip}:53"))),
            "{mode}: {udp:?}"
        );
    }

    // The node's own processes are translated as well.
    let from_node = client(From::Node(node1), "tcp", vip, 80, 8).await;
    assert!(!answered_by(&from_node).is_empty());

    // A port the service does not have is left alone (nothing listens on the VIP).
    let other = client(From::Pod(&c, node1), "tcp", vip, 81, 1).await;
    assert!(other[0].starts_with("error"), "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hairpin_and_internal_traffic_policy_local() {
    let server = TestServer::start().await;
    let mut cluster = Cluster::new(2);
    let a = cluster.pod("a", "node1", Some(8080)).await;
    let b = cluster.pod("b", "node2", Some(8080)).await;
    let mut lb = KubeLb::start(&server, &cluster, cluster.node("node1")).await;
    let node1 = cluster.node("node1");

    let vip = create_service(
        &server,
        "self",
        json!({"ports": [{"port": 80, "targetPort": 8080}]}),
    )
    .await;
    set_endpoints(&server, "self", json!([{"port": 8080}]), &[(&a, true)]).await;
    lb.synced("default/self", &[&format!("{vip}:80/tcp=1")])
        .await;
    // A pod reaching itself through its own service.
    let hairpin = client(From::Pod(&a, node1), "tcp", vip, 80, 4).await;
    assert_eq!(answered_by(&hairpin), BTreeSet::from(["a".into()]));

    let local = create_service(
        &server,
        "local",
        json!({"internalTrafficPolicy": "Local", "ports": [{"port": 80, "targetPort": 8080}]}),
    )
    .await;
    set_endpoints(
        &server,
        "local",
        json!([{"port": 8080}]),
        &[(&a, true), (&b, true)],
    )
    .await;
    lb.synced("default/local", &[&format!("{local}:80/tcp=1")])
        .await;
    let got = client(From::Node(node1), "tcp", local, 80, 16).await;
    assert_eq!(
        answered_by(&got),
        BTreeSet::from(["a".into()]),
        "only node1's endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_affinity_holds_and_endpoint_removal_takes_effect() {
    let server = TestServer::start().await;
    let mut cluster = Cluster::new(1);
    let a = cluster.pod("a", "node1", Some(8080)).await;
    let b = cluster.pod("b", "node1", Some(8080)).await;
    let c = cluster.pod("c", "node1", None).await;
    let mut lb = KubeLb::start(&server, &cluster, cluster.node("node1")).await;
    let node1 = cluster.node("node1");

    let vip = create_service(
        &server,
        "sticky",
        json!({"sessionAffinity": "ClientIP", "ports": [
            {"name": "tcp", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "udp", "port": 80, "targetPort": 8080, "protocol": "UDP"}]}),
    )
    .await;
    let ports = json!([{"name": "tcp", "port": 8080, "protocol": "TCP"},
                       {"name": "udp", "port": 8080, "protocol": "UDP"}]);
    set_endpoints(&server, "sticky", ports.clone(), &[(&a, true), (&b, true)]).await;
    lb.synced(
        "default/sticky",
        &[&format!("{vip}:80/tcp=2"), &format!("{vip}:80/udp=2")],
    )
    .await;

    let first = answered_by(&client(From::Pod(&c, node1), "tcp", vip, 80, 20).await);
    assert_eq!(first.len(), 1, "one client, one backend: {first:?}");
    let chosen = first.into_iter().next().expect("a backend");

    // The chosen backend stops being ready: new connections go to the other at once.
    let (gone, remaining) = if chosen == "a" { (&a, &b) } else { (&b, &a) };
    set_endpoints(
        &server,
        "sticky",
        ports.clone(),
        &[(gone, false), (remaining, true)],
    )
    .await;
    lb.synced("default/sticky", &[&format!("{vip}:80/tcp=1")])
        .await;
    let after = answered_by(&client(From::Pod(&c, node1), "tcp", vip, 80, 10).await);
    assert_eq!(after, BTreeSet::from([remaining.name.clone()]));

    // No endpoints at all: refused at once, as upstream's REJECT does.
    clear_endpoints(&server, "sticky").await;
    lb.synced(
        "default/sticky",
        &[&format!("{vip}:80/tcp=0"), &format!("{vip}:80/udp=0")],
    )
    .await;
    let refused = client(From::Pod(&c, node1), "tcp", vip, 80, 1).await;
    assert_eq!(refused, vec!["error ECONNREFUSED".to_string()]);
    let refused = client(From::Pod(&c, node1), "udp", vip, 80, 1).await;
    assert_eq!(refused, vec!["error ECONNREFUSED".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_from_outside_to_a_backend_on_another_node() {
    let server = TestServer::start().await;
    let mut cluster = Cluster::new(2);
    let b = cluster.pod("b", "node2", Some(8080)).await;
    let mut lb1 = KubeLb::start(&server, &cluster, cluster.node("node1")).await;
    let _lb2 = KubeLb::start(&server, &cluster, cluster.node("node2")).await;

    create_service(&server, "np", json!({"type": "NodePort", "ports": [
            {"name": "tcp", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
            {"name": "udp", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "UDP"}]}))
    .await;
    set_endpoints(&server, "np", json!([{"name": "tcp", "port": 8080, "protocol": "TCP"}, {"name": "udp", "port": 8080, "protocol": "UDP"}]), &[(&b, true)]).await;
    lb1.synced(
        "default/np",
        &["0.0.0.0:30080/tcp/ext=1", "0.0.0.0:30080/udp/ext=1"],
    )
    .await;

    let node1 = cluster.node("node1").addr;
    for mode in ["tcp", "udp"] {
        let got = client(From::Outside(&cluster), mode, node1, 30080, 4).await;
        for line in &got {
            // Answered by b on node2, which saw node1 (masqueraded for the Cluster policy);
            // the client saw the node port it asked for.
            assert!(line.starts_with(&format!("b {node1}:")), "{mode}: {line}");
            assert!(
                line.ends_with(&format!("peer={node1}:30080")),
                "{mode}: {line}"
            );
        }
    }

    // Without endpoints the node port refuses at once, with ICMP as upstream's REJECT.
    clear_endpoints(&server, "np").await;
    lb1.synced(
        "default/np",
        &["0.0.0.0:30080/tcp/ext=0", "0.0.0.0:30080/udp/ext=0"],
    )
    .await;
    for mode in ["tcp", "udp-connected"] {
        let got = client(From::Outside(&cluster), mode, node1, 30080, 1).await;
        assert_eq!(got, vec!["error ECONNREFUSED".to_string()], "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_traffic_policy_local_preserves_the_client_address() {
    let server = TestServer::start().await;
    let mut cluster = Cluster::new(2);
    let a = cluster.pod("a", "node1", Some(8080)).await;
    let b = cluster.pod("b", "node2", Some(8080)).await;
    let _lb1 = KubeLb::start(&server, &cluster, cluster.node("node1")).await;
    let mut lb2 = KubeLb::start(&server, &cluster, cluster.node("node2")).await;

    create_service(
        &server,
        "local",
        json!({"type": "NodePort", "externalTrafficPolicy": "Local",
                     "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}]}),
    )
    .await;
    set_endpoints(
        &server,
        "local",
        json!([{"port": 8080}]),
        &[(&a, true), (&b, true)],
    )
    .await;
    lb2.synced("default/local", &["0.0.0.0:30081/tcp/ext=1"])
        .await;

    let node2 = cluster.node("node2").addr;
    let outside = cluster.outside_addr;
    let got = client(From::Outside(&cluster), "tcp", node2, 30081, 8).await;
    for line in &got {
        // Only node2's own endpoint, and it saw the real client.
        assert!(line.starts_with(&format!("b {outside}:")), "{line}");
        assert!(line.ends_with(&format!("peer={node2}:30081")), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_kube_lb_keeps_established_connections() {
    let server = TestServer::start().await;
    let mut cluster = Cluster::new(2);
    let b = cluster.pod("b", "node2", Some(8080)).await;
    let c = cluster.pod("c", "node1", None).await;
    let mut lb1 = KubeLb::start(&server, &cluster, cluster.node("node1")).await;
    let _lb2 = KubeLb::start(&server, &cluster, cluster.node("node2")).await;

    let vip = create_service(
        &server,
        "np",
        json!({"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30082}]}),
    )
    .await;
    set_endpoints(&server, "np", json!([{"port": 8080}]), &[(&b, true)]).await;
    lb1.synced(
        "default/np",
        &[&format!("{vip}:80/tcp=1"), "0.0.0.0:30082/tcp/ext=1"],
    )
    .await;

    let node1 = cluster.node("node1");
    let mut through_node_port = Held::open(From::Outside(&cluster), node1.addr, 30082);
    let mut through_vip = Held::open(From::Pod(&c, node1), vip, 80);
    assert!(through_node_port.exchange().starts_with("b "));
    assert!(through_vip.exchange().starts_with("b "));

    // While no kube-lb runs, the pinned links and maps keep translating.
    let stopped = lb1.stop();
    assert!(through_node_port.exchange().starts_with("b "));
    assert!(through_vip.exchange().starts_with("b "));
    // New connections too: the programs stay attached through their pinned links.
    let meanwhile = client(From::Pod(&c, node1), "tcp", vip, 80, 2).await;
    assert_eq!(answered_by(&meanwhile), BTreeSet::from(["b".into()]));
    let meanwhile = client(From::Outside(&cluster), "tcp", node1.addr, 30082, 2).await;
    assert_eq!(answered_by(&meanwhile), BTreeSet::from(["b".into()]));
    let mut lb1 = stopped.start().await;
    // The new kube-lb took over the connection tracking from the pinned maps.
    assert!(through_node_port.exchange().starts_with("b "));
    assert!(through_vip.exchange().starts_with("b "));
    // And the new kube-lb serves new connections, from what it found in the API.
    let again = client(From::Outside(&cluster), "tcp", node1.addr, 30082, 2).await;
    assert_eq!(answered_by(&again), BTreeSet::from(["b".into()]));
    let again = client(From::Pod(&c, node1), "tcp", vip, 80, 2).await;
    assert_eq!(answered_by(&again), BTreeSet::from(["b".into()]));

    let metrics = lb1.metrics().await;
    for family in [
        "kubelb_sync_duration_seconds_count",
        "kubelb_map_entries{map=\"slots\"}",
        "kubelb_conntrack_entries",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }

    // A change after the restart is picked up.
    clear_endpoints(&server, "np").await;
    lb1.synced("default/np", &[&format!("{vip}:80/tcp=0")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_ips_from_outside_and_from_a_pod() {
    let server = TestServer::start().await;
    let mut cluster = Cluster::new(2);
    let b = cluster.pod("b", "node2", Some(8080)).await;
    let c = cluster.pod("c", "node1", None).await;
    let mut lb1 = KubeLb::start(&server, &cluster, cluster.node("node1")).await;
    let _lb2 = KubeLb::start(&server, &cluster, cluster.node("node2")).await;

    let external = Ipv4Addr::new(192, 168, 78, 10);
    create_service(
        &server,
        "ext",
        json!({"externalIPs": [external.to_string()],
                     "ports": [{"port": 80, "targetPort": 8080}]}),
    )
    .await;
    set_endpoints(&server, "ext", json!([{"port": 8080}]), &[(&b, true)]).await;
    lb1.synced(
        "default/ext",
        &[
            &format!("{external}:80/tcp=1"),
            &format!("{external}:80/tcp/ext=1"),
        ],
    )
    .await;

    // The outside routes the external IP to node1, as a router in front of a cluster would.
    let node1 = cluster.node("node1");
    cluster
        .outside
        .ip(&format!("route add {external}/32 via {}", node1.addr));
    let got = client(From::Outside(&cluster), "tcp", external, 80, 4).await;
    for line in &got {
        assert!(line.starts_with(&format!("b {}:", node1.addr)), "{line}");
        assert!(line.ends_with(&format!("peer={external}:80")), "{line}");
    }
    // From inside, the socket programs take it.
    let got = client(From::Pod(&c, node1), "tcp", external, 80, 4).await;
    assert_eq!(answered_by(&got), BTreeSet::from(["b".into()]));
}
