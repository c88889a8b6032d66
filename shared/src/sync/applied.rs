//! Monotonic apply: the highest version applied per entity. Applying an
//! event whose version is not newer is a no-op, so duplicates and
//! reordering cannot move an entity backwards.

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::Result;

/// Records `version` for `entity` if it is newer than what was applied;
/// returns whether it was. Call in the transaction that applies the change.
pub async fn advance<C: ConnectionTrait>(db: &C, entity: &str, version: i64) -> Result<bool> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO sync_applied (entity, version) VALUES ($1, $2) \
             ON CONFLICT (entity) DO UPDATE SET version = excluded.version \
             WHERE sync_applied.version < excluded.version"
        }
        _ => {
            "INSERT INTO sync_applied (entity, version) VALUES (?, ?) \
             ON CONFLICT (entity) DO UPDATE SET version = excluded.version \
             WHERE sync_applied.version < excluded.version"
        }
    };
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [entity.into(), version.into()],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Lets the current PostgreSQL transaction commit without waiting for its
/// WAL flush. For a replica's apply only: the owner keeps the truth, and a
/// change a crash takes back is applied again by the resync at start and by
/// anti-entropy. A no-op on SQLite (already `synchronous=NORMAL`).
pub async fn relaxed_commit<C: ConnectionTrait>(txn: &C) -> Result<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL synchronous_commit = off")
            .await?;
    }
    Ok(())
}

/// The version applied for `entity`, if any.
pub async fn current<C: ConnectionTrait>(db: &C, entity: &str) -> Result<Option<i64>> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT version FROM sync_applied WHERE entity = $1",
        _ => "SELECT version FROM sync_applied WHERE entity = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [entity.into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "version")).transpose()?)
}

/// Forgets the versions applied of every entity whose name starts with
/// `prefix` (a purged tenant's entities, which no event may bring back).
pub async fn forget_prefix<C: ConnectionTrait>(db: &C, prefix: &str) -> Result<u64> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "DELETE FROM sync_applied WHERE starts_with(entity, $1)",
        _ => "DELETE FROM sync_applied WHERE substr(entity, 1, length(?1)) = ?1",
    };
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [prefix.into()],
        ))
        .await?;
    Ok(res.rows_affected())
}
