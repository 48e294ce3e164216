//! The storage suite. Every test in `backend` runs against both backends (a fresh embedded
//! store in a temp dir, and etcd); `embedded` holds what only the embedded store has (files,
//! crashes, restarts).

#[path = "suite/backend.rs"]
mod backend;
mod common;
#[path = "suite/embedded.rs"]
mod embedded_only;

/// Instantiates each named test of `backend` once per backend. Tests on the shared etcd use
/// a key prefix of their own; `own_etcd` tests compact, which is cluster-wide, so each gets
/// an etcd of its own.
macro_rules! for_both_backends {
    (shared_etcd: [$($shared:ident),* $(,)?], own_etcd: [$($own:ident),* $(,)?] $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    let fixture = crate::common::Fixture::embedded();
                    crate::backend::$shared(fixture.store.clone()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $own() {
                    let fixture = crate::common::Fixture::embedded();
                    crate::backend::$own(fixture.store.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    let fixture = crate::common::Fixture::shared_etcd(stringify!($shared)).await;
                    crate::backend::$shared(fixture.store.clone()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $own() {
                    let fixture = crate::common::Fixture::own_etcd().await;
                    crate::backend::$own(fixture.store.clone()).await;
                }
            )*
        }
    };
}

for_both_backends!(
    shared_etcd: [
        create_get_update_delete,
        preconditions_report_current_revision,
        list_by_prefix,
        paginated_list_is_a_consistent_snapshot,
        list_at_old_revisions,
        watch_replays_history_then_follows,
        watch_filters_by_prefix,
        concurrent_increments_lose_no_update,
    ],
    own_etcd: [compaction],
);

mod etcd_only {
    use std::time::Duration;

    use ferrokube_storage::etcd::{EtcdOptions, EtcdStore};
    use ferrokube_storage::Error;

    #[tokio::test]
    async fn unreachable_etcd_is_unavailable() {
        // A port that was free a moment ago: nothing answers there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let options = EtcdOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            ..EtcdOptions::default()
        };
        let result = EtcdStore::connect_with(&[format!("http://127.0.0.1:{port}")], options).await;
        assert!(matches!(result.map(|_| ()), Err(Error::Unavailable(_))));
    }
}
