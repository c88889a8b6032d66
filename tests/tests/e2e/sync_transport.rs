//! The sync layer: both transports pass the same conformance checks; the
//! outbox publishes committed changes only and keeps them through a
//! transport outage; applying is monotonic per entity.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2e::backing;
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::json;
use shared::sync::{Event, Transport, applied, consumer, memory::Memory, outbox, redis::Redis};
use tokio_util::sync::CancellationToken;

fn event(i: i64) -> Event {
    Event::new("conf", &format!("thing:{i}"), i, "test", json!({ "n": i }))
}

async fn redis_transport() -> Arc<dyn Transport> {
    let prefix = backing::redis_prefix().await;
    Arc::new(Redis::new(&backing::redis_url(), &prefix, 10_000).unwrap())
}

async fn conformance(t: Arc<dyn Transport>) {
    let sent: Vec<Event> = (1..=5).map(event).collect();
    for e in &sent {
        t.publish("conf", e).await.unwrap();
    }
    assert!(!t.group_status("conf", "g1").await.unwrap().exists);
    t.ensure_group("conf", "g1").await.unwrap();
    t.ensure_group("conf", "g1").await.unwrap(); // idempotent
    let fresh = t.group_status("conf", "g1").await.unwrap();
    assert!(fresh.exists);
    assert_eq!((fresh.pending, fresh.undelivered), (0, 5));
    assert_eq!(fresh.last_applied, None);
    assert_eq!(fresh.oldest_unapplied, Some(sent[0].created_at));

    let got = t
        .read("conf", "g1", "c1", 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|d| d.event.clone()).collect::<Vec<_>>(),
        sent,
        "all entries, in order"
    );
    let positions: Vec<String> = got.iter().map(|d| d.position.clone()).collect();
    t.ack("conf", "g1", &positions[..3]).await.unwrap();
    let mid = t.group_status("conf", "g1").await.unwrap();
    assert_eq!((mid.pending, mid.undelivered), (2, 0));
    assert_eq!(mid.last_applied.as_deref(), Some(positions[2].as_str()));
    assert_eq!(mid.oldest_unapplied, Some(sent[3].created_at));
    let none = t
        .read("conf", "g1", "c1", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(none.is_empty(), "nothing new for the group");

    // c1 "dies" with two entries unacked: c2 takes them over once they are idle.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let claimed = t
        .claim_stale("conf", "g1", "c2", Duration::from_millis(100), 10)
        .await
        .unwrap();
    assert_eq!(
        claimed
            .deliveries
            .iter()
            .map(|d| d.event.version)
            .collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(claimed.trimmed.is_empty());
    let claimed_pos: Vec<String> = claimed
        .deliveries
        .iter()
        .map(|d| d.position.clone())
        .collect();
    t.ack("conf", "g1", &claimed_pos).await.unwrap();
    let done = t.group_status("conf", "g1").await.unwrap();
    assert_eq!((done.pending, done.undelivered), (0, 0));
    assert_eq!(done.last_applied.as_deref(), Some(positions[4].as_str()));
    assert_eq!(done.oldest_unapplied, None);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let again = t
        .claim_stale("conf", "g1", "c2", Duration::from_millis(100), 10)
        .await
        .unwrap();
    assert!(
        again.deliveries.is_empty(),
        "acked entries are never redelivered"
    );

    // Another group reads the whole stream independently.
    t.ensure_group("conf", "g2").await.unwrap();
    let g2 = t
        .read("conf", "g2", "x", 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(g2.len(), 5);

    // A blocked read wakes for a new entry.
    let t2 = t.clone();
    let reader = tokio::spawn(async move {
        t2.read("conf", "g1", "c1", 10, Duration::from_secs(5))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.publish("conf", &event(6)).await.unwrap();
    let woke = reader.await.unwrap();
    assert_eq!(woke.len(), 1);
    assert_eq!(woke[0].event.version, 6);

    // Groups and how idle they are; a group nobody read has no idle time.
    t.ensure_group("conf", "g3").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let groups = t.groups("conf").await.unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["g1", "g2", "g3"]);
    // g2 last read 300 ms+ ago (before g1's blocked read).
    let idle = |n: &str| groups.iter().find(|g| g.name == n).unwrap().idle;
    assert!(
        idle("g2").unwrap() >= Duration::from_millis(300),
        "{groups:?}"
    );
    assert!(idle("g1").unwrap() < idle("g2").unwrap(), "{groups:?}");
    assert_eq!(idle("g3"), None);
    t.drop_group("conf", "g2").await.unwrap();
    t.drop_group("conf", "g2").await.unwrap(); // a no-op now
    let left: Vec<String> = t
        .groups("conf")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(left, ["g1", "g3"]);
    assert!(t.groups("no-such-stream").await.unwrap().is_empty());
    t.drop_group("no-such-stream", "g1").await.unwrap();
    // A dropped group's consumer reading again recreates it from the start.
    t.ensure_group("conf", "g2").await.unwrap();
    let reread = t
        .read("conf", "g2", "x", 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(reread.len(), 6);
}

#[tokio::test]
async fn memory_transport_conforms() {
    conformance(Arc::new(Memory::new())).await;
}

#[tokio::test]
async fn redis_transport_conforms() {
    conformance(redis_transport().await).await;
}

/// A migrated cell database (it carries the sync tables) on `backend`.
async fn database(
    postgres: bool,
) -> (
    DatabaseConnection,
    Option<String>,
    Option<tempfile::TempDir>,
) {
    let (url, name, dir) = if postgres {
        let (name, url) = backing::create_database().await;
        (url, Some(name), None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        (
            shared::config::sqlite_url(&dir.path().join("sync.db")),
            None,
            Some(dir),
        )
    };
    let db = shared::db::connect(&url, 4).await.unwrap();
    shared::db::migrate::<cell::migration::Migrator>(&db, 42)
        .await
        .unwrap();
    (db, name, dir)
}

async fn outbox_publishes_only_committed_changes(postgres: bool) {
    let (db, name, _dir) = database(postgres).await;
    let transport: Arc<dyn Transport> = Arc::new(Memory::new());
    let committed = Event::new("out", "thing:1", 1, "test", json!({ "kept": true }));
    let rolled_back = Event::new("out", "thing:2", 1, "test", json!({ "kept": false }));
    let txn = db.begin().await.unwrap();
    outbox::enqueue(&txn, &committed).await.unwrap();
    txn.commit().await.unwrap();
    let txn = db.begin().await.unwrap();
    outbox::enqueue(&txn, &rolled_back).await.unwrap();
    txn.rollback().await.unwrap();

    let shutdown = CancellationToken::new();
    let relay = outbox::Relay::spawn(db.clone(), transport.clone(), shutdown.clone());
    relay.nudge();
    transport.ensure_group("out", "g").await.unwrap();
    let got = transport
        .read("out", "g", "c", 10, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, committed);
    let none = transport
        .read("out", "g", "c", 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.is_empty(), "a rolled-back change is never published");
    assert_eq!(outbox::backlog(&db).await.unwrap(), 0);
    shutdown.cancel();

    // Pruning drops published rows past retention, never unpublished ones.
    outbox::enqueue(&db, &event(9)).await.unwrap();
    assert_eq!(
        outbox::prune(&db, Duration::from_secs(3600)).await.unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        outbox::prune(&db, Duration::from_millis(10)).await.unwrap(),
        1
    );
    assert_eq!(
        outbox::backlog(&db).await.unwrap(),
        1,
        "the unpublished row stays"
    );
    db.close().await.unwrap();
    if let Some(n) = name {
        backing::drop_databases(&[n]).await;
    }
}

#[tokio::test]
async fn outbox_publishes_only_committed_changes_postgres() {
    outbox_publishes_only_committed_changes(true).await;
}

#[tokio::test]
async fn outbox_publishes_only_committed_changes_sqlite() {
    outbox_publishes_only_committed_changes(false).await;
}

#[tokio::test]
async fn outbox_keeps_events_while_redis_is_unreachable() {
    let (db, name, _dir) = database(true).await;
    outbox::enqueue(&db, &event(1)).await.unwrap();
    // Nothing listens on port 1: the transport is really down.
    let down = Redis::new("redis://127.0.0.1:1", "down", 1000).unwrap();
    let err = outbox::drain(&db, &down).await.unwrap_err();
    assert_eq!(err.code(), shared::Code::Unavailable);
    assert_eq!(
        outbox::backlog(&db).await.unwrap(),
        1,
        "the event waits in the outbox"
    );

    let up = redis_transport().await;
    assert_eq!(outbox::drain(&db, up.as_ref()).await.unwrap(), 1);
    assert_eq!(outbox::backlog(&db).await.unwrap(), 0);
    up.ensure_group("conf", "g").await.unwrap();
    let got = up
        .read("conf", "g", "c", 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    db.close().await.unwrap();
    backing::drop_databases(&[name.unwrap()]).await;
}

async fn duplicates_and_reordering_apply_once(postgres: bool) {
    let (db, name, _dir) = database(postgres).await;
    let transport = redis_transport().await;
    // Versions of one entity delivered duplicated and out of order.
    for v in [1, 3, 2, 3, 1, 2] {
        transport
            .publish(
                "apply",
                &Event::new("apply", "tenant:x", v, "test", json!({ "v": v })),
            )
            .await
            .unwrap();
    }
    let applied_count = Arc::new(AtomicUsize::new(0));
    let handler: consumer::Handler = {
        let db = db.clone();
        let applied_count = applied_count.clone();
        Arc::new(move |events: Vec<Event>| {
            let db = db.clone();
            let applied_count = applied_count.clone();
            Box::pin(async move {
                for e in events {
                    if applied::advance(&db, &e.entity, e.version).await? {
                        applied_count.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(())
            })
        })
    };
    let cfg = consumer::Config {
        stream: "apply".into(),
        group: "cells".into(),
        consumer: "c1".into(),
        batch: 100,
        block: Duration::from_millis(200),
        claim_idle: Duration::from_secs(30),
    };
    transport.ensure_group("apply", "cells").await.unwrap();
    let n = consumer::poll_once(transport.as_ref(), &cfg, &handler, None)
        .await
        .unwrap();
    assert_eq!(n, 6, "every delivery is acked");
    assert_eq!(applied::current(&db, "tenant:x").await.unwrap(), Some(3));
    assert_eq!(
        applied_count.load(Ordering::SeqCst),
        2,
        "only versions 1 and 3 moved the entity forward"
    );
    assert!(!applied::advance(&db, "tenant:x", 3).await.unwrap());
    assert!(applied::advance(&db, "tenant:x", 4).await.unwrap());
    db.close().await.unwrap();
    if let Some(n) = name {
        backing::drop_databases(&[n]).await;
    }
}

#[tokio::test]
async fn duplicates_and_reordering_apply_once_postgres() {
    duplicates_and_reordering_apply_once(true).await;
}

#[tokio::test]
async fn duplicates_and_reordering_apply_once_sqlite() {
    duplicates_and_reordering_apply_once(false).await;
}

#[tokio::test]
async fn a_consumer_that_dies_mid_batch_has_its_entries_applied_by_another() {
    let transport = redis_transport().await;
    for i in 1..=10 {
        transport.publish("batch", &event(i)).await.unwrap();
    }
    transport.ensure_group("batch", "g").await.unwrap();
    // The first consumer reads the batch and dies before acking any of it.
    let taken = transport
        .read("batch", "g", "doomed", 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(taken.len(), 10);

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler: consumer::Handler = {
        let seen = seen.clone();
        Arc::new(move |events: Vec<Event>| {
            seen.lock()
                .unwrap()
                .extend(events.iter().map(|e| e.version));
            Box::pin(async { Ok(()) })
        })
    };
    let cfg = consumer::Config {
        stream: "batch".into(),
        group: "g".into(),
        consumer: "survivor".into(),
        batch: 100,
        block: Duration::from_millis(100),
        claim_idle: Duration::from_millis(200),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer::run(
        transport.clone(),
        cfg,
        handler,
        None,
        shutdown.clone(),
    ));
    for _ in 0..50 {
        if seen.lock().unwrap().len() >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        (1..=10).collect::<Vec<_>>(),
        "each entry applied exactly once"
    );
}
