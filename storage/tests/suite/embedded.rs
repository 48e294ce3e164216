//! What only the embedded store has: a file that must survive restarts, crashes and torn
//! writes, and compaction that has to keep it small.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use ferrokube_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use ferrokube_storage::{Error, EventKind, ListOptions, Store};

use crate::common::{bytes, next_event, next_item};

fn open(dir: &Path) -> Arc<EmbeddedStore> {
    EmbeddedStore::open(dir).expect("open embedded store")
}

#[tokio::test]
async fn reopen_keeps_data_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r1 = store.create("a", bytes("a1")).await.unwrap();
    let r2 = store.update("a", bytes("a2"), r1).await.unwrap();
    let r3 = store.create("b", bytes("b1")).await.unwrap();
    // The newest write is a delete, so no live key carries the head revision.
    let (r4, _) = store.delete("b", None).await.unwrap();
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), r4);
    let a = store.get("a").await.unwrap().unwrap();
    assert_eq!(
        (a.value, a.create_revision, a.mod_revision),
        (bytes("a2"), r1, r2)
    );
    assert_eq!(store.get("b").await.unwrap(), None);
    // History survives too.
    let at_r3 = store
        .list(
            "",
            ListOptions {
                revision: Some(r3),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at_r3.items.len(), 2);
    let mut watch = store.watch("", r2).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision, r3);
    let delete = next_event(&mut watch).await;
    assert_eq!(
        (delete.kind, delete.revision, delete.create_revision),
        (EventKind::Delete, r4, r3)
    );
    assert_eq!(store.create("c", bytes("c1")).await.unwrap(), r4 + 1);
}

#[tokio::test]
async fn a_dir_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(matches!(
        EmbeddedStore::open(dir.path()).map(|_| ()),
        Err(Error::Unavailable(_))
    ));
    drop(store);
    open(dir.path());
}

#[tokio::test]
async fn torn_and_garbage_tails_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.log_path().to_owned();
    for i in 0..10 {
        store.create(&format!("k{i}"), bytes("v")).await.unwrap();
    }
    drop(store);
    let valid_len = std::fs::metadata(&log).unwrap().len();

    let tails: [(&str, Vec<u8>); 4] = [
        // A frame header promising more payload than was written.
        (
            "torn record",
            [&100u32.to_le_bytes()[..], &[7; 4], &[1; 10]].concat(),
        ),
        ("half a header", vec![3, 0]),
        // What a filesystem may leave past the last synced write.
        ("zeroes", vec![0; 4096]),
        ("garbage", pseudo_random(5000)),
    ];
    let mut revision = 10;
    for (what, tail) in tails {
        OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(&tail)
            .unwrap();
        let store = open(dir.path());
        assert_eq!(store.count("").await.unwrap(), revision, "after {what}");
        assert_eq!(
            store.current_revision().await.unwrap(),
            revision,
            "after {what}"
        );
        // The tail is gone from the file, and new writes land after the valid part.
        revision += 1;
        assert_eq!(
            store
                .create(&format!("k{revision}"), bytes("v"))
                .await
                .unwrap(),
            revision
        );
        drop(store);
        assert!(std::fs::metadata(&log).unwrap().len() > valid_len);
        let store = open(dir.path());
        assert_eq!(
            store.count("").await.unwrap(),
            revision,
            "reopened after {what}"
        );
    }
}

#[tokio::test]
async fn a_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).log_path().to_owned();
    std::fs::write(&log, b"this is not a store log").unwrap();
    assert!(matches!(
        EmbeddedStore::open(dir.path()).map(|_| ()),
        Err(Error::Internal(_))
    ));
}

#[tokio::test]
async fn compaction_shrinks_the_log_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.log_path().to_owned();
    let value = vec![b'x'; 1024];
    let mut revision = store.create("busy", value.clone()).await.unwrap();
    for _ in 0..300 {
        revision = store.update("busy", value.clone(), revision).await.unwrap();
    }
    let r_gone = store.create("gone", bytes("g")).await.unwrap();
    let (head, _) = store.delete("gone", None).await.unwrap();
    let before = std::fs::metadata(&log).unwrap().len();

    store.compact(head).await.unwrap();
    let after = std::fs::metadata(&log).unwrap().len();
    assert!(
        after * 50 < before,
        "log {before} bytes before compaction, {after} after"
    );
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.compacted_revision().await.unwrap(), head);
    // Both the compacted delete and the head revision it carried are remembered.
    assert_eq!(store.current_revision().await.unwrap(), head);
    assert_eq!(store.get("gone").await.unwrap(), None);
    assert_eq!(
        store.get("busy").await.unwrap().unwrap().mod_revision,
        revision
    );
    let old = ListOptions {
        revision: Some(r_gone),
        ..ListOptions::default()
    };
    assert_eq!(
        store.list("", old).await.map(|_| ()),
        Err(Error::Compacted {
            requested: r_gone,
            compacted: head
        })
    );
    assert_eq!(store.create("new", bytes("n")).await.unwrap(), head + 1);
    // Writes after a rewrite append to the new file and survive another reopen.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), head + 1);
    assert_eq!(store.count("").await.unwrap(), 2);
}

#[tokio::test]
async fn a_lagging_watcher_catches_up_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions { watch_buffer: 2 }).unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("", start).await.unwrap();
    let mut revisions = Vec::new();
    for i in 0..50 {
        revisions.push(store.create(&format!("k{i:02}"), bytes("v")).await.unwrap());
    }
    for (i, revision) in revisions.iter().enumerate() {
        let event = next_event(&mut watch).await;
        assert_eq!((event.key, event.revision), (format!("k{i:02}"), *revision));
    }
}

#[tokio::test]
async fn a_lagging_watcher_past_compaction_gets_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions { watch_buffer: 2 }).unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("", start).await.unwrap();
    for i in 0..10 {
        store.create(&format!("k{i}"), bytes("v")).await.unwrap();
    }
    let head = store.current_revision().await.unwrap();
    store.compact(head).await.unwrap();
    // What was buffered before the watcher fell behind is still delivered.
    assert_eq!(next_event(&mut watch).await.revision, start + 1);
    assert_eq!(next_event(&mut watch).await.revision, start + 2);
    assert_eq!(
        next_item(&mut watch).await,
        Some(Err(Error::Compacted {
            requested: start + 2,
            compacted: head
        }))
    );
    assert_eq!(next_item(&mut watch).await, None);
}

#[tokio::test]
async fn watches_end_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut watch = store.watch("", 0).await.unwrap();
    drop(store);
    assert!(matches!(
        next_item(&mut watch).await,
        Some(Err(Error::Unavailable(_)))
    ));
    assert_eq!(next_item(&mut watch).await, None);
}

/// Set in the child process of `kill_9_loses_no_acknowledged_write`: the data dir to write to.
const KILL9_DIR: &str = "FERROKUBE_STORAGE_KILL9_DIR";
/// Acknowledged writes the parent waits for before killing the child.
const KILL_AFTER: usize = 500;

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = ChildGuard(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "embedded_only::kill9_writer", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(KILL9_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(key) = line.strip_prefix("ACK ") {
            acknowledged.push(key.to_owned());
            if acknowledged.len() == KILL_AFTER {
                child.0.kill().unwrap();
            }
        }
    }
    // Lines already in the pipe when the child died are read too: they were acknowledged.
    child.0.wait().unwrap();
    assert!(
        acknowledged.len() >= KILL_AFTER,
        "the writer stopped after {} writes",
        acknowledged.len()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = open(dir.path());
        for key in &acknowledged {
            let kv = store.get(key).await.unwrap();
            assert_eq!(
                kv.map(|kv| kv.value),
                Some(key.clone().into_bytes()),
                "{key}"
            );
        }
        let count = store.count("").await.unwrap();
        assert!(count >= acknowledged.len() as i64);
        // Whatever the crash left, the store takes new writes.
        store.create("after-crash", bytes("x")).await.unwrap();
    });
}

/// The child side of `kill_9_loses_no_acknowledged_write`; does nothing in a normal run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_writer() {
    const WRITERS: usize = 8;
    let Some(dir) = std::env::var_os(KILL9_DIR) else {
        return;
    };
    let store = open(Path::new(&dir));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        // Bounded, in case the parent never kills us.
        tasks.push(tokio::spawn(async move {
            for i in 0..100_000 {
                let key = format!("w{w}/{i}");
                store.create(&key, key.clone().into_bytes()).await.unwrap();
                println!("ACK {key}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deterministic noise (an xorshift sequence), so a failure reproduces.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
