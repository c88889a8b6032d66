//! The generic store on SQLite and PostgreSQL, with two test kinds: a
//! text-keyed table with `updated_at`, and a UUID-keyed one without (the
//! shape of rollout plans).

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Thing {
    name: String,
    size: i64,
}

impl Definition for Thing {
    const TABLE: Table = Table::keyed("synced_test_things", "name");
    const STREAM: &'static str = "test.things";
    fn key(&self) -> Value {
        self.name.clone().into()
    }
    fn entity(&self) -> String {
        format!("thing:{}", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Plan {
    id: Uuid,
    stage: u32,
}

impl Definition for Plan {
    const TABLE: Table = Table {
        name: "synced_test_plans",
        key: "id",
        key_type: KeyType::Uuid,
        body: "plan",
        updated_at: false,
    };
    const STREAM: &'static str = "test.plans";
    fn key(&self) -> Value {
        self.id.into()
    }
    fn entity(&self) -> String {
        format!("plan:{}", self.id)
    }
}

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(crate::sync::migration::CreateSyncTables),
            Box::new(Migration {
                name: "m9001_synced_test_tables",
                tables: &[Thing::TABLE, Plan::TABLE],
            }),
        ]
    }
}

fn thing(name: &str, size: i64) -> Thing {
    Thing {
        name: name.into(),
        size,
    }
}

async fn sqlite() -> (DatabaseConnection, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("synced-{}.db", Uuid::new_v4().simple()));
    let db = crate::db::connect(&format!("sqlite://{}?mode=rwc", path.display()), 1)
        .await
        .unwrap();
    Migrator::up(&db, None).await.unwrap();
    (db, path)
}

fn postgres_admin() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database (absent servers fail the test: nothing skips).
async fn postgres() -> (DatabaseConnection, String) {
    let admin = postgres_admin();
    let conn = Database::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin}: {e}"));
    let name = format!("tcp_synced_{}", Uuid::new_v4().simple());
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let db = crate::db::connect(&format!("{base}/{name}"), 2)
        .await
        .unwrap();
    Migrator::up(&db, None).await.unwrap();
    (db, name)
}

async fn drop_postgres(db: DatabaseConnection, name: String) {
    let _ = db.close().await;
    if let Ok(conn) = Database::connect(&postgres_admin()).await {
        let _ = conn
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

async fn get_all_put(db: &DatabaseConnection) {
    assert_eq!(get::<Thing, _>(db, "a").await.unwrap(), None);
    put(db, &thing("b", 2), 1).await.unwrap();
    put(db, &thing("a", 1), 1).await.unwrap();
    let a = get::<Thing, _>(db, "a").await.unwrap().unwrap();
    assert_eq!((a.def.clone(), a.version), (thing("a", 1), 1));
    let first_write = a
        .updated_at
        .expect("the table records when a row was written");
    put(db, &thing("a", 10), 3).await.unwrap();
    let a = get::<Thing, _>(db, "a").await.unwrap().unwrap();
    assert_eq!(
        a.clone().stored(),
        Stored {
            def: thing("a", 10),
            version: 3
        }
    );
    assert!(a.updated_at.unwrap() >= first_write);
    let all = all::<Thing, _>(db).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.def.name.as_str(), r.def.size, r.version))
            .collect::<Vec<_>>(),
        [("a", 10, 3), ("b", 2, 1)],
        "every row, by key"
    );
    let v = versions::<Thing, _>(db).await.unwrap();
    assert_eq!(
        v.iter()
            .map(|(e, v, _)| (e.as_str(), *v))
            .collect::<Vec<_>>(),
        [("thing:a", 3), ("thing:b", 1)]
    );
    let txn = db.begin().await.unwrap();
    let locked = lock::<Thing, _>(&txn, "b").await.unwrap().unwrap();
    assert_eq!(locked.def, thing("b", 2));
    assert_eq!(lock::<Thing, _>(&txn, "zz").await.unwrap(), None);
    txn.commit().await.unwrap();
}

async fn uuid_keys(db: &DatabaseConnection) {
    let (p, q) = (Uuid::now_v7(), Uuid::now_v7());
    put(db, &Plan { id: p, stage: 0 }, 1).await.unwrap();
    put(db, &Plan { id: q, stage: 1 }, 4).await.unwrap();
    put(db, &Plan { id: p, stage: 2 }, 2).await.unwrap();
    let got = get::<Plan, _>(db, p).await.unwrap().unwrap();
    assert_eq!(
        got,
        Row {
            def: Plan { id: p, stage: 2 },
            version: 2,
            updated_at: None
        }
    );
    assert_eq!(get::<Plan, _>(db, Uuid::now_v7()).await.unwrap(), None);
    let all = all::<Plan, _>(db).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .any(|r| r.def == Plan { id: q, stage: 1 } && r.version == 4)
    );
    let (changed, repaired) = repair(db, &[(Plan { id: q, stage: 1 }, 4)]).await.unwrap();
    assert_eq!((changed, repaired), (1, 0), "first applied version");
}

async fn monotonic_apply(db: &DatabaseConnection) {
    let n = apply(db, &[(thing("k", 1), 2), (thing("j", 1), 1)])
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Older, equal and duplicate versions change nothing.
    let n = apply(
        db,
        &[(thing("k", 0), 1), (thing("k", 9), 2), (thing("j", 1), 1)],
    )
    .await
    .unwrap();
    assert_eq!(n, 0);
    assert_eq!(get::<Thing, _>(db, "k").await.unwrap().unwrap().def.size, 1);
    let txn = db.begin().await.unwrap();
    let a = apply_in(&txn, &[(thing("j", 0), 1), (thing("k", 5), 3)], false)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        a,
        Applied {
            changed: vec![1],
            repaired: 0
        },
        "positions of what changed"
    );
    assert_eq!(get::<Thing, _>(db, "k").await.unwrap().unwrap().version, 3);
}

async fn repair_rewrites_rows_changed_behind_its_back(db: &DatabaseConnection) {
    apply(
        db,
        &[(thing("r", 1), 5), (thing("s", 1), 5), (thing("t", 1), 5)],
    )
    .await
    .unwrap();
    // Changed behind the consumer's back: same version, other content; a
    // stale version; a deleted row.
    put(db, &thing("r", 666), 5).await.unwrap();
    put(db, &thing("s", 1), 4).await.unwrap();
    db.execute_unprepared("DELETE FROM synced_test_things WHERE name = 't'")
        .await
        .unwrap();
    let want = [(thing("r", 1), 5), (thing("s", 1), 5), (thing("t", 1), 5)];
    // A plain apply sees nothing newer and leaves them.
    assert_eq!(apply(db, &want).await.unwrap(), 0);
    assert_eq!(
        get::<Thing, _>(db, "r").await.unwrap().unwrap().def.size,
        666
    );
    let (changed, repaired) = repair(
        db,
        &[
            want[0].clone(),
            want[1].clone(),
            want[2].clone(),
            (thing("u", 1), 1),
        ],
    )
    .await
    .unwrap();
    assert_eq!((changed, repaired), (1, 3));
    for (def, version) in &want {
        let got = get::<Thing, _>(db, def.name.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&got.def, got.version), (def, *version));
    }
    // Now in agreement: nothing to repair.
    assert_eq!(repair(db, &want).await.unwrap(), (0, 0));
    // A row ahead of the applied version is the consumer's, not repaired.
    let (changed, repaired) = repair(db, &[(thing("u", 1), 0)]).await.unwrap();
    assert_eq!((changed, repaired), (0, 0));
}

async fn exercise(db: &DatabaseConnection) {
    get_all_put(db).await;
    uuid_keys(db).await;
    monotonic_apply(db).await;
    repair_rewrites_rows_changed_behind_its_back(db).await;
}

#[tokio::test]
async fn the_store_on_sqlite() {
    let (db, path) = sqlite().await;
    exercise(&db).await;
    let _ = db.close().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn the_store_on_postgres() {
    let (db, name) = postgres().await;
    exercise(&db).await;
    drop_postgres(db, name).await;
}

#[tokio::test]
async fn the_migration_keeps_existing_tables() {
    let (db, path) = sqlite().await;
    put(&db, &thing("kept", 1), 1).await.unwrap();
    // Running the migration again (IF NOT EXISTS) changes nothing.
    let manager = sea_orm_migration::SchemaManager::new(&db);
    Migration {
        name: "again",
        tables: &[Thing::TABLE],
    }
    .up(&manager)
    .await
    .unwrap();
    assert_eq!(all::<Thing, _>(&db).await.unwrap().len(), 1);
    let _ = db.close().await;
    let _ = std::fs::remove_file(&path);
}
