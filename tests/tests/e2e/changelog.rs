//! The trigger-kept change log (`shared::changelog`) on the real
//! PostgreSQL and on SQLite: every insert, update and delete is logged,
//! concurrent writers of several rows neither deadlock nor leave a reader
//! that follows the log with a wrong copy, and a pruned gap asks for a
//! reload.

use std::collections::BTreeMap;

use e2e::backing::{create_database, drop_databases};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait};
use shared::changelog::{self, Follow};
use uuid::Uuid;

const TABLE: &str = "items";

async fn setup(db: &DatabaseConnection) {
    let uuid = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "UUID",
        _ => "BLOB",
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE {TABLE} (id {uuid} PRIMARY KEY, n BIGINT NOT NULL)"
    ))
    .await
    .unwrap();
    changelog::install(db, TABLE, "id").await.unwrap();
}

fn p(db: &DatabaseConnection, i: usize) -> String {
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("${i}"),
        _ => "?".into(),
    }
}

async fn table(db: &DatabaseConnection) -> BTreeMap<Uuid, i64> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        format!("SELECT id, n FROM {TABLE}"),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index(1).unwrap(),
        )
    })
    .collect()
}

/// A copy of the table kept by following the log, as the impact caches do.
struct Copy {
    cursor: i64,
    rows: BTreeMap<Uuid, i64>,
    reloads: usize,
}

impl Copy {
    async fn follow(&mut self, db: &DatabaseConnection) {
        match changelog::follow(db, TABLE, self.cursor, 10_000)
            .await
            .unwrap()
        {
            Follow::Current => {}
            Follow::Reload => {
                self.cursor = changelog::head(db, TABLE).await.unwrap();
                self.rows = table(db).await;
                self.reloads += 1;
            }
            Follow::Changed { keys, to } => {
                let now = table(db).await;
                for k in keys {
                    match now.get(&k) {
                        Some(n) => self.rows.insert(k, *n),
                        None => self.rows.remove(&k),
                    };
                }
                self.cursor = to;
            }
        }
    }
}

async fn logs_every_write_and_reloads_past_a_pruned_gap(db: &DatabaseConnection) {
    setup(db).await;
    let mut copy = Copy {
        cursor: 0,
        rows: BTreeMap::new(),
        reloads: 0,
    };
    copy.follow(db).await;
    assert!(copy.rows.is_empty());
    assert_eq!(copy.reloads, 0, "an empty log is current");
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!("INSERT INTO {TABLE} (id, n) VALUES ({}, 1)", p(db, 1)),
            [(*id).into()],
        ))
        .await
        .unwrap();
    }
    // One statement changing several rows logs each.
    db.execute_unprepared(&format!("UPDATE {TABLE} SET n = n + 1"))
        .await
        .unwrap();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("DELETE FROM {TABLE} WHERE id = {}", p(db, 1)),
        [ids[0].into()],
    ))
    .await
    .unwrap();
    assert_eq!(changelog::head(db, TABLE).await.unwrap(), 11);
    match changelog::follow(db, TABLE, 0, 100).await.unwrap() {
        Follow::Changed { keys, to } => {
            assert_eq!(to, 11);
            assert_eq!(keys, ids, "each key once, in the order first changed");
        }
        other => panic!("expected changes, got {other:?}"),
    }
    assert_eq!(
        changelog::follow(db, TABLE, 0, 5).await.unwrap(),
        Follow::Reload,
        "more changes than the limit"
    );
    copy.follow(db).await;
    assert_eq!(copy.rows, table(db).await);
    assert_eq!(copy.rows.len(), 4);
    assert!(copy.rows.values().all(|n| *n == 2));
    assert_eq!(
        changelog::follow(db, TABLE, 11, 100).await.unwrap(),
        Follow::Current
    );

    // Pruned past a cursor: the follower reloads.
    assert_eq!(changelog::prune(db, TABLE, 3).await.unwrap(), 8);
    assert_eq!(
        changelog::follow(db, TABLE, 2, 100).await.unwrap(),
        Follow::Reload,
        "entries 3 to 8 are gone"
    );
    assert!(matches!(
        changelog::follow(db, TABLE, 8, 100).await.unwrap(),
        Follow::Changed { to: 11, .. }
    ));
}

#[tokio::test]
async fn sqlite_logs_every_write_and_reloads_past_a_pruned_gap() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("log.db").display());
    let db = shared::db::connect(&url, 4).await.unwrap();
    logs_every_write_and_reloads_past_a_pruned_gap(&db).await;
}

#[tokio::test]
async fn postgres_logs_every_write_and_reloads_past_a_pruned_gap() {
    let (name, url) = create_database().await;
    let db = Database::connect(&url).await.unwrap();
    logs_every_write_and_reloads_past_a_pruned_gap(&db).await;
    db.close().await.unwrap();
    drop_databases(&[name]).await;
}

/// Eight writers, each updating three rows per transaction in random
/// order (rows that other writers hold too), while a reader follows the
/// log: no transaction deadlocks, and the reader's copy equals the table
/// after every step of the way it could check.
#[tokio::test]
async fn postgres_concurrent_writers_commit_in_log_order() {
    let (name, url) = create_database().await;
    let db = Database::connect(&url).await.unwrap();
    setup(&db).await;
    let ids: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        db.execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            format!("INSERT INTO {TABLE} (id, n) VALUES ($1, 0)"),
            [(*id).into()],
        ))
        .await
        .unwrap();
    }
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let db = db.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                for i in 0..40usize {
                    let txn = db.begin().await.unwrap();
                    for k in 0..3 {
                        let id = ids[(w * 7 + i * 3 + k * 11) % ids.len()];
                        txn.execute_raw(Statement::from_sql_and_values(
                            sea_orm::DbBackend::Postgres,
                            format!("UPDATE {TABLE} SET n = n + 1 WHERE id = $1"),
                            [id.into()],
                        ))
                        .await
                        .expect("no deadlock");
                        tokio::task::yield_now().await;
                    }
                    txn.commit().await.unwrap();
                }
            })
        })
        .collect();
    let mut copy = Copy {
        cursor: 0,
        rows: BTreeMap::new(),
        reloads: 0,
    };
    copy.follow(&db).await;
    while !writers.iter().all(|w| w.is_finished()) {
        copy.follow(&db).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    copy.follow(&db).await;
    let now = table(&db).await;
    assert_eq!(copy.rows, now);
    assert_eq!(copy.reloads, 0, "the reader never met a gap in the log");
    assert_eq!(now.values().sum::<i64>(), 8 * 40 * 3);
    assert_eq!(changelog::head(&db, TABLE).await.unwrap(), 20 + 8 * 40 * 3);
    db.close().await.unwrap();
    drop_databases(&[name]).await;
}
