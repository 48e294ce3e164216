//! Binding, the Scheduled and FailedScheduling events, the PodScheduled condition, and
//! pods waiting for a node that arrives later.

use crate::support::*;
use ferrokube_testkit::TestServer;
use serde_json::json;

#[tokio::test]
async fn binds_a_pod_and_records_scheduled() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(&client, vec![node("n1", "4", "8Gi", json!({}))]).await;
    create_pod(&client, "default", pod("p", "100m", json!({}))).await;
    assert_eq!(bound_node(&client, "default", "p").await, "n1");
    let note = wait_event(&client, "default", "p", "Scheduled").await;
    assert_eq!(note, "Successfully assigned default/p to n1");
}

#[tokio::test]
async fn failed_scheduling_counts_reasons_per_node() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(
        &client,
        vec![
            node("n1", "1", "8Gi", json!({})),
            node("n2", "1", "8Gi", json!({})),
            node(
                "n3",
                "8",
                "8Gi",
                json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
            ),
        ],
    )
    .await;
    create_pod(&client, "default", pod("big", "2", json!({}))).await;
    let message = unschedulable_message(&client, "default", "big").await;
    assert!(
        message.starts_with(
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu."
        ),
        "{message}"
    );
    let note = wait_event(&client, "default", "big", "FailedScheduling").await;
    assert_eq!(note, message);

    // A node that fits arrives: the pod is retried at once, not after a timeout.
    create_nodes(&client, vec![node("n4", "4", "8Gi", json!({}))]).await;
    assert_eq!(bound_node(&client, "default", "big").await, "n4");
}

#[tokio::test]
async fn an_empty_cluster_is_reported_and_retried() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_pod(&client, "default", pod("early", "100m", json!({}))).await;
    let note = wait_event(&client, "default", "early", "FailedScheduling").await;
    assert_eq!(note, "no nodes available to schedule pods");
    create_nodes(&client, vec![node("late", "4", "8Gi", json!({}))]).await;
    assert_eq!(bound_node(&client, "default", "early").await, "late");
}
