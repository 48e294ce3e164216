//! Tests every backend must pass. Revisions are only compared with ones the store returned:
//! on a shared etcd other tests' writes advance them too.

use std::sync::Arc;

use ferrokube_storage::{Error, Event, EventKind, KeyValue, ListOptions, Store};

use crate::common::{bytes, next_event};

pub async fn create_get_update_delete(store: Arc<dyn Store>) {
    assert_eq!(store.get("k").await.unwrap(), None);

    let r1 = store.create("k", bytes("v1")).await.unwrap();
    assert!(r1 > 0);
    assert_eq!(
        store.get("k").await.unwrap(),
        Some(KeyValue {
            key: "k".into(),
            value: bytes("v1"),
            create_revision: r1,
            mod_revision: r1,
        })
    );
    assert!(store.current_revision().await.unwrap() >= r1);
    assert_eq!(
        store.create("k", bytes("again")).await,
        Err(Error::AlreadyExists("k".into()))
    );

    let r2 = store.update("k", bytes("v2"), r1).await.unwrap();
    assert!(r2 > r1);
    let kv = store.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision),
        (bytes("v2"), r1, r2)
    );

    let (r3, removed) = store.delete("k", Some(r2)).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(
        removed,
        KeyValue {
            key: "k".into(),
            value: bytes("v2"),
            create_revision: r1,
            mod_revision: r2,
        }
    );
    assert_eq!(store.get("k").await.unwrap(), None);

    // A new incarnation gets a new create revision.
    let r4 = store.create("k", bytes("v3")).await.unwrap();
    assert!(r4 > r3);
    let (r5, removed) = store.delete("k", None).await.unwrap();
    assert!(r5 > r4);
    assert_eq!((removed.value, removed.create_revision), (bytes("v3"), r4));
    assert!(store.current_revision().await.unwrap() >= r5);
}

pub async fn preconditions_report_current_revision(store: Arc<dyn Store>) {
    let not_found = Err(Error::NotFound("missing".into()));
    assert_eq!(
        store.update("missing", bytes("x"), 1).await.map(|_| ()),
        not_found
    );
    // Revision 0 is what a missing key "has" in etcd; an update must still not create it.
    assert_eq!(
        store.update("missing", bytes("x"), 0).await.map(|_| ()),
        not_found
    );
    assert_eq!(store.delete("missing", None).await.map(|_| ()), not_found);
    assert_eq!(
        store.delete("missing", Some(1)).await.map(|_| ()),
        not_found
    );
    assert_eq!(store.get("missing").await.unwrap(), None);

    let r1 = store.create("k", bytes("v1")).await.unwrap();
    let r2 = store.update("k", bytes("v2"), r1).await.unwrap();
    let conflict = Err(Error::Conflict {
        key: "k".into(),
        expected: r1,
        current: r2,
    });
    assert_eq!(
        store.update("k", bytes("v3"), r1).await.map(|_| ()),
        conflict
    );
    assert_eq!(store.delete("k", Some(r1)).await.map(|_| ()), conflict);
    // Failed writes change nothing.
    let kv = store.get("k").await.unwrap().unwrap();
    assert_eq!((kv.value, kv.mod_revision), (bytes("v2"), r2));

    let (r3, _) = store.delete("k", Some(r2)).await.unwrap();
    assert_eq!(
        store.update("k", bytes("v4"), r2).await,
        Err(Error::NotFound("k".into()))
    );
    assert_eq!(
        store.delete("k", Some(r3)).await.map(|_| ()),
        Err(Error::NotFound("k".into()))
    );
}

pub async fn list_by_prefix(store: Arc<dyn Store>) {
    // Neighbours on both sides of the prefix in key order, to catch off-by-one range ends.
    for key in ["p", "p/", "p/a", "p/b/1", "p/b/2", "p0", "q/a"] {
        store.create(key, bytes(key)).await.unwrap();
    }
    let keys = |items: &[KeyValue]| items.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();

    let all = store.list("p/", ListOptions::default()).await.unwrap();
    assert_eq!(keys(&all.items), ["p/", "p/a", "p/b/1", "p/b/2"]);
    assert_eq!(all.items[1].value, bytes("p/a"));
    assert_eq!(all.remaining, 0);
    assert!(!all.more());
    assert!(all.revision >= store.get("q/a").await.unwrap().unwrap().mod_revision);

    let nested = store.list("p/b/", ListOptions::default()).await.unwrap();
    assert_eq!(keys(&nested.items), ["p/b/1", "p/b/2"]);
    let none = store
        .list("nothing/", ListOptions::default())
        .await
        .unwrap();
    assert!(none.items.is_empty());
    assert_eq!(none.remaining, 0);

    assert_eq!(store.count("p/").await.unwrap(), 4);
    assert_eq!(store.count("p").await.unwrap(), 6);
    assert_eq!(store.count("nothing/").await.unwrap(), 0);
    store.delete("p/a", None).await.unwrap();
    assert_eq!(store.count("p/").await.unwrap(), 3);

    let everything = store.list("", ListOptions::default()).await.unwrap();
    assert_eq!(
        keys(&everything.items),
        ["p", "p/", "p/b/1", "p/b/2", "p0", "q/a"]
    );
}

pub async fn paginated_list_is_a_consistent_snapshot(store: Arc<dyn Store>) {
    let key = |i: usize| format!("items/{i:02}");
    for i in 0..25 {
        store
            .create(&key(i), bytes(&format!("v{i}")))
            .await
            .unwrap();
    }
    store.create("items0", bytes("outside")).await.unwrap();

    let page = |start_after: Option<String>, revision: Option<i64>| ListOptions {
        start_after,
        limit: 10,
        revision,
    };
    let first = store.list("items/", page(None, None)).await.unwrap();
    let snapshot = first.revision;
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.items[0].key, key(0));
    assert_eq!(first.items[9].key, key(9));
    assert_eq!(first.remaining, 15);
    assert!(first.more());

    // Changes after the first page must not show in later pages read at its revision.
    let r20 = store.get(&key(20)).await.unwrap().unwrap().mod_revision;
    store.update(&key(20), bytes("changed"), r20).await.unwrap();
    store.delete(&key(15), None).await.unwrap();
    store.create(&key(30), bytes("new")).await.unwrap();

    let second = store
        .list("items/", page(Some(key(9)), Some(snapshot)))
        .await
        .unwrap();
    assert_eq!(second.revision, snapshot);
    let second_keys: Vec<_> = second.items.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(second_keys, (10..20).map(key).collect::<Vec<_>>());
    assert_eq!(second.remaining, 5);

    let third = store
        .list("items/", page(Some(key(19)), Some(snapshot)))
        .await
        .unwrap();
    let third_keys: Vec<_> = third.items.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(third_keys, (20..25).map(key).collect::<Vec<_>>());
    assert_eq!(third.items[0].value, bytes("v20"));
    assert_eq!(third.remaining, 0);
    assert!(!third.more());

    // Resuming before the prefix starts at its beginning; past its end finds nothing.
    let from_before = store
        .list("items/", page(Some("a".into()), Some(snapshot)))
        .await
        .unwrap();
    assert_eq!(from_before.items[0].key, key(0));
    let past_end = store
        .list("items/", page(Some("items/zz".into()), Some(snapshot)))
        .await
        .unwrap();
    assert!(past_end.items.is_empty());
    assert_eq!(past_end.remaining, 0);
    assert_eq!(past_end.revision, snapshot);
    // Past every key the prefix could have, too.
    let past_prefix = store
        .list("items/", page(Some("zzz".into()), Some(snapshot)))
        .await
        .unwrap();
    assert!(past_prefix.items.is_empty());
    assert_eq!((past_prefix.remaining, past_prefix.revision), (0, snapshot));

    // Now, without a revision, the changes are there.
    let now = store.list("items/", ListOptions::default()).await.unwrap();
    assert!(now.revision > snapshot);
    assert_eq!(now.items.len(), 25);
    assert!(now.items.iter().all(|kv| kv.key != key(15)));
    assert_eq!(now.items.last().unwrap().key, key(30));
    let changed = now.items.iter().find(|kv| kv.key == key(20)).unwrap();
    assert_eq!(changed.value, bytes("changed"));
}

pub async fn list_at_old_revisions(store: Arc<dyn Store>) {
    let r1 = store.create("h/a", bytes("a1")).await.unwrap();
    let r2 = store.update("h/a", bytes("a2"), r1).await.unwrap();
    let r3 = store.create("h/b", bytes("b1")).await.unwrap();
    let (r4, _) = store.delete("h/a", None).await.unwrap();

    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    let values = |items: Vec<KeyValue>| {
        items
            .into_iter()
            .map(|kv| {
                (
                    kv.key,
                    String::from_utf8(kv.value).unwrap(),
                    kv.mod_revision,
                )
            })
            .collect::<Vec<_>>()
    };
    let list = store.list("h/", at(r1)).await.unwrap();
    assert_eq!(list.revision, r1);
    assert_eq!(values(list.items), [("h/a".into(), "a1".into(), r1)]);
    let list = store.list("h/", at(r2)).await.unwrap();
    assert_eq!(values(list.items), [("h/a".into(), "a2".into(), r2)]);
    let list = store.list("h/", at(r3)).await.unwrap();
    assert_eq!(
        values(list.items),
        [
            ("h/a".into(), "a2".into(), r2),
            ("h/b".into(), "b1".into(), r3)
        ]
    );
    let list = store.list("h/", at(r4)).await.unwrap();
    assert_eq!(values(list.items), [("h/b".into(), "b1".into(), r3)]);

    let future = store.current_revision().await.unwrap() + 1_000_000;
    match store.list("h/", at(future)).await {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!(requested, future);
            assert!(current >= r4 && current < future);
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

pub async fn watch_replays_history_then_follows(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let r1 = store.create("w/a", bytes("a1")).await.unwrap();
    let r2 = store.update("w/a", bytes("a2"), r1).await.unwrap();
    let r3 = store.create("w/b", bytes("b1")).await.unwrap();
    let (r4, _) = store.delete("w/a", Some(r2)).await.unwrap();

    let put = |key: &str, value: &str, prev: Option<&str>, revision, create_revision| Event {
        kind: EventKind::Put,
        key: key.into(),
        value: bytes(value),
        prev_value: prev.map(bytes),
        revision,
        create_revision,
    };
    let expected = [
        put("w/a", "a1", None, r1, r1),
        put("w/a", "a2", Some("a1"), r2, r1),
        put("w/b", "b1", None, r3, r3),
        Event {
            kind: EventKind::Delete,
            key: "w/a".into(),
            value: bytes("a2"),
            prev_value: Some(bytes("a2")),
            revision: r4,
            create_revision: r1,
        },
    ];

    let mut from_start = store.watch("w/", start).await.unwrap();
    for event in &expected {
        assert_eq!(&next_event(&mut from_start).await, event);
    }
    // From the middle of history: only what came after.
    let mut from_middle = store.watch("w/", r2).await.unwrap();
    for event in &expected[2..] {
        assert_eq!(&next_event(&mut from_middle).await, event);
    }
    // From now: nothing to replay; the next write is the first event.
    let now = store.current_revision().await.unwrap();
    let mut from_now = store.watch("w/", now).await.unwrap();

    let r5 = store.update("w/b", bytes("b2"), r3).await.unwrap();
    let (r6, _) = store.delete("w/b", None).await.unwrap();
    let live = [
        put("w/b", "b2", Some("b1"), r5, r3),
        Event {
            kind: EventKind::Delete,
            key: "w/b".into(),
            value: bytes("b2"),
            prev_value: Some(bytes("b2")),
            revision: r6,
            create_revision: r3,
        },
    ];
    for stream in [&mut from_start, &mut from_middle, &mut from_now] {
        for event in &live {
            assert_eq!(&next_event(stream).await, event);
        }
    }
}

pub async fn watch_filters_by_prefix(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut pods = store.watch("pods/", start).await.unwrap();
    let mut all = store.watch("", start).await.unwrap();
    let mut written = Vec::new();
    for key in ["pods/a", "podsx", "nodes/a", "pods/b"] {
        written.push((key, store.create(key, bytes(key)).await.unwrap()));
    }
    for (key, revision) in &written {
        let event = next_event(&mut all).await;
        assert_eq!((event.key.as_str(), event.revision), (*key, *revision));
    }
    for (key, revision) in written.iter().filter(|(k, _)| k.starts_with("pods/")) {
        let event = next_event(&mut pods).await;
        assert_eq!((event.key.as_str(), event.revision), (*key, *revision));
    }
}

pub async fn concurrent_increments_lose_no_update(store: Arc<dyn Store>) {
    const WRITERS: usize = 16;
    const INCREMENTS: usize = 25;
    store.create("counter", bytes("0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            while revisions.len() < INCREMENTS {
                let kv = store.get("counter").await.unwrap().unwrap();
                let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                let next = (n + 1).to_string().into_bytes();
                match store.update("counter", next, kv.mod_revision).await {
                    Ok(revision) => revisions.push(revision),
                    Err(Error::Conflict { current, .. }) => assert!(current > kv.mod_revision),
                    Err(e) => panic!("update failed: {e}"),
                }
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
        all.extend(revisions);
    }
    let kv = store.get("counter").await.unwrap().unwrap();
    assert_eq!(kv.value, bytes(&(WRITERS * INCREMENTS).to_string()));
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        WRITERS * INCREMENTS,
        "every update got its own revision"
    );
    assert_eq!(kv.mod_revision, *all.last().unwrap());
}

pub async fn compaction(store: Arc<dyn Store>) {
    let r1 = store.create("c/a", bytes("a1")).await.unwrap();
    let r2 = store.update("c/a", bytes("a2"), r1).await.unwrap();
    let r3 = store.update("c/a", bytes("a3"), r2).await.unwrap();
    let r4 = store.create("c/b", bytes("b1")).await.unwrap();
    let (r5, _) = store.delete("c/b", None).await.unwrap();
    let r6 = store.create("c/c", bytes("c1")).await.unwrap();
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };

    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    store.compact(r3).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), r3);

    let compacted = Err(Error::Compacted {
        requested: r2,
        compacted: r3,
    });
    assert_eq!(store.list("c/", at(r2)).await.map(|_| ()), compacted);
    assert_eq!(store.watch("c/", r2).await.map(|_| ()), compacted);
    assert_eq!(
        store.watch("c/", r1).await.map(|_| ()),
        Err(Error::Compacted {
            requested: r1,
            compacted: r3,
        })
    );

    // The compaction point itself is still readable and watchable.
    let at_r3 = store.list("c/", at(r3)).await.unwrap();
    assert_eq!(at_r3.items.len(), 1);
    assert_eq!(
        (at_r3.items[0].value.clone(), at_r3.items[0].mod_revision),
        (bytes("a3"), r3)
    );
    let at_r4 = store.list("c/", at(r4)).await.unwrap();
    assert_eq!(at_r4.items.len(), 2);
    let mut watch = store.watch("c/", r3).await.unwrap();
    let kinds: Vec<_> = [
        next_event(&mut watch).await,
        next_event(&mut watch).await,
        next_event(&mut watch).await,
    ]
    .into_iter()
    .map(|e| (e.kind, e.key, e.revision))
    .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Put, "c/b".into(), r4),
            (EventKind::Delete, "c/b".into(), r5),
            (EventKind::Put, "c/c".into(), r6),
        ]
    );

    // Compacting again below the point is a no-op; beyond the head is refused.
    store.compact(r2).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), r3);
    let head = store.current_revision().await.unwrap();
    match store.compact(head + 1000).await {
        Err(Error::FutureRevision { requested, .. }) => assert_eq!(requested, head + 1000),
        other => panic!("expected FutureRevision, got {other:?}"),
    }

    // Compacting everything keeps the live keys.
    store.compact(head).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), head);
    let live = store.list("c/", ListOptions::default()).await.unwrap();
    let keys: Vec<_> = live.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["c/a", "c/c"]);
    assert_eq!(store.get("c/a").await.unwrap().unwrap().create_revision, r1);

    // A watch open across a compaction keeps going.
    let r7 = store.update("c/c", bytes("c2"), r6).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!((event.revision, event.prev_value), (r7, Some(bytes("c1"))));
    let mut fresh = store.watch("c/", head).await.unwrap();
    assert_eq!(next_event(&mut fresh).await.revision, r7);
}
