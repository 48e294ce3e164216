//! Fixtures for the storage suite: a fresh store of either backend per test, and helpers
//! for reading watch streams.

pub mod etcd_server;

use std::sync::Arc;
use std::time::Duration;

use ferrokube_storage::embedded::EmbeddedStore;
use ferrokube_storage::etcd::EtcdStore;
use ferrokube_storage::{Event, EventStream, Store};
use futures::StreamExt;
use tempfile::TempDir;

use etcd_server::EtcdServer;

/// How long a test waits for something that should already be on its way before failing.
/// A guard against hanging forever, not a synchronisation point.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Connection attempts to an etcd that reported itself healthy.
const CONNECT_ATTEMPTS: u32 = 20;

pub struct Fixture {
    pub store: Arc<dyn Store>,
    _keep: Keep,
}

/// What must outlive the store under test.
#[allow(dead_code)]
enum Keep {
    Dir(TempDir),
    SharedEtcd,
    OwnEtcd(EtcdServer),
}

impl Fixture {
    pub fn embedded() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
        Fixture {
            store,
            _keep: Keep::Dir(dir),
        }
    }

    /// A store on the binary's shared etcd, with keys under a prefix of the test's own.
    pub async fn shared_etcd(test: &str) -> Fixture {
        let endpoint = etcd_server::shared_endpoint();
        let store = connect(endpoint, &format!("/ferrokube-test/{test}/")).await;
        Fixture {
            store,
            _keep: Keep::SharedEtcd,
        }
    }

    /// A store on an etcd of its own, for tests that compact.
    pub async fn own_etcd() -> Fixture {
        let server = EtcdServer::start();
        let store = connect(&server.endpoint, "").await;
        Fixture {
            store,
            _keep: Keep::OwnEtcd(server),
        }
    }
}

async fn connect(endpoint: &str, prefix: &str) -> Arc<dyn Store> {
    let endpoints = [endpoint.to_owned()];
    let mut last_error = None;
    for _ in 0..CONNECT_ATTEMPTS {
        match EtcdStore::connect(&endpoints, prefix).await {
            Ok(store) => return store,
            Err(e) => last_error = Some(e),
        }
    }
    panic!("cannot connect to etcd at {endpoint}: {last_error:?}");
}

/// The next event of a watch, failing the test if the stream errs, ends or stalls.
pub async fn next_event(stream: &mut EventStream) -> Event {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {PATIENCE:?}"),
    }
}

/// The next item of a watch, whatever it is; `None` if the stream ended.
pub async fn next_item(stream: &mut EventStream) -> Option<ferrokube_storage::Result<Event>> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no watch item within {PATIENCE:?}"))
}

pub fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}
