//! A change log on a table, kept by triggers so that no writer (a service,
//! a restore, an operator's SQL) can bypass it: every insert, update and
//! delete of a row appends `(seq, key)` to `{table}_log`. `seq` comes from
//! the one row of `{table}_seq`, which the writing transaction holds locked
//! until it commits, so transactions that change the table commit in `seq`
//! order: a reader that has seen entry n has seen every change up to n, and
//! the log has no gap except where it was pruned. An in-memory copy of the
//! table follows the log (`follow`) and stays exact without reading the
//! whole table on every question.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use crate::Result;

/// A follower with more changes than this behind reloads its table whole.
pub const RELOAD_AFTER: usize = 20_000;
/// Keys a follower re-reads per statement.
pub const KEYS_PER_READ: usize = 1_000;
/// Log entries kept behind the newest by `prune` (a follower further
/// behind reloads).
pub const KEPT: i64 = 200_000;

/// The statements that create the log of `table`, keyed by its uuid
/// column `key`.
pub fn create(backend: DbBackend, table: &str, key: &str) -> Vec<String> {
    let seq = format!("{table}_seq");
    let log = format!("{table}_log");
    let mut out = vec![
        format!("CREATE TABLE {seq} (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)"),
        format!("INSERT INTO {seq} (id, n) VALUES (1, 0)"),
    ];
    match backend {
        DbBackend::Postgres => out.extend([
            format!("CREATE TABLE {log} (seq BIGINT PRIMARY KEY, key UUID NOT NULL)"),
            // The statement-level trigger takes the counter's lock before
            // any row of the table is locked, so writers of several rows
            // cannot deadlock on the counter.
            format!(
                "CREATE FUNCTION {table}_log_lock() RETURNS trigger AS $$
                 BEGIN
                   PERFORM n FROM {seq} WHERE id = 1 FOR UPDATE;
                   RETURN NULL;
                 END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE FUNCTION {table}_log_append() RETURNS trigger AS $$
                 DECLARE s BIGINT;
                 BEGIN
                   UPDATE {seq} SET n = n + 1 WHERE id = 1 RETURNING n INTO s;
                   IF TG_OP = 'DELETE' THEN
                     INSERT INTO {log} (seq, key) VALUES (s, OLD.{key});
                   ELSE
                     INSERT INTO {log} (seq, key) VALUES (s, NEW.{key});
                   END IF;
                   RETURN NULL;
                 END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER {table}_log_lock BEFORE INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH STATEMENT EXECUTE FUNCTION {table}_log_lock()"
            ),
            format!(
                "CREATE TRIGGER {table}_log_append AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION {table}_log_append()"
            ),
        ]),
        // SQLite has one writer at a time: the order of writes is the
        // order of commits already.
        _ => {
            out.push(format!(
                "CREATE TABLE {log} (seq BIGINT PRIMARY KEY, key BLOB NOT NULL)"
            ));
            for (op, row) in [("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")] {
                out.push(format!(
                    "CREATE TRIGGER {table}_log_{} AFTER {op} ON {table} BEGIN
                       UPDATE {seq} SET n = n + 1 WHERE id = 1;
                       INSERT INTO {log} (seq, key) SELECT n, {row}.{key} FROM {seq} WHERE id = 1;
                     END",
                    op.to_lowercase()
                ));
            }
        }
    }
    out
}

/// Runs `create`'s statements.
pub async fn install<C: ConnectionTrait>(db: &C, table: &str, key: &str) -> Result<(), DbErr> {
    for sql in create(db.get_database_backend(), table, key) {
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// The migration that installs the log of `table` (keyed by `key`).
pub struct Migration {
    /// The migration's name, unique in its migrator (e.g. `m0021_directory_log`).
    pub name: &'static str,
    /// The table whose changes are logged; it must exist already.
    pub table: &'static str,
    /// The table's uuid column each log entry records.
    pub key: &'static str,
}

impl sea_orm_migration::MigrationName for Migration {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for Migration {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        install(manager.get_connection(), self.table, self.key).await
    }
}

/// What changed since a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    /// Nothing.
    Current,
    /// These keys (each once, oldest change first); the cursor moves to `to`.
    Changed {
        /// The changed rows' keys.
        keys: Vec<uuid::Uuid>,
        /// The `seq` of the newest entry read: the next cursor.
        to: i64,
    },
    /// Too much, or pruned past the cursor: read the table whole, taking
    /// `head` as the cursor read before it.
    Reload,
}

/// The log entries of `table` after `cursor`, up to `limit` of them (more
/// than that: `Reload`).
pub async fn follow<C: ConnectionTrait>(
    db: &C,
    table: &str,
    cursor: i64,
    limit: usize,
) -> Result<Follow> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            format!("SELECT seq, key FROM {table}_log WHERE seq > $1 ORDER BY seq LIMIT $2")
        }
        _ => format!("SELECT seq, key FROM {table}_log WHERE seq > ? ORDER BY seq LIMIT ?"),
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [cursor.into(), (limit as i64 + 1).into()],
        ))
        .await?;
    let entries: Vec<(i64, uuid::Uuid)> = rows
        .iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect::<Result<_, DbErr>>()?;
    let (Some(&(first, _)), Some(&(last, _))) = (entries.first(), entries.last()) else {
        return Ok(Follow::Current);
    };
    // Committed entries are numbered without gaps: a gap was pruned.
    let contiguous = first == cursor + 1 && last - first + 1 == entries.len() as i64;
    if !contiguous || entries.len() > limit {
        return Ok(Follow::Reload);
    }
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    let keys = entries
        .into_iter()
        .map(|(_, k)| k)
        .filter(|k| seen.insert(*k))
        .collect();
    Ok(Follow::Changed { keys, to: last })
}

/// The number of the newest change of `table`. Read before reading the
/// table whole: a change committed in between is then followed again,
/// and re-reading its row is harmless.
pub async fn head<C: ConnectionTrait>(db: &C, table: &str) -> Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT n FROM {table}_seq WHERE id = 1"),
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get_by_index(0)?,
        None => 0,
    })
}

/// Drops the entries of `table`'s log more than `keep` behind the newest
/// (a follower further behind reloads).
pub async fn prune<C: ConnectionTrait>(db: &C, table: &str, keep: i64) -> Result<u64> {
    let n = head(db, table).await?;
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!("DELETE FROM {table}_log WHERE seq <= $1"),
        _ => format!("DELETE FROM {table}_log WHERE seq <= ?"),
    };
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [(n - keep).into()],
        ))
        .await?;
    Ok(res.rows_affected())
}

/// Prunes every `every` until shutdown.
pub async fn prune_every(
    db: sea_orm::DatabaseConnection,
    table: &'static str,
    keep: i64,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = prune(&db, table, keep).await {
            tracing::warn!(table, error = %e, "change log prune failed; retrying");
        }
    }
}
