//! Database connection, migrations and readiness, for PostgreSQL and SQLite alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::server::ReadyCheck;

/// Opens a pool of at most `max_connections` (1 to 8 on SQLite) to `url`
/// (`postgres://…` or `sqlite://…`), waiting at most 5 s for a connection.
/// SQLite runs in WAL mode with a 5 s busy timeout.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    let sqlite = url.starts_with("sqlite:");
    opts.max_connections(if sqlite {
        1.max(max_connections.min(8))
    } else {
        max_connections
    })
    .min_connections(1)
    .connect_timeout(Duration::from_secs(5))
    .acquire_timeout(Duration::from_secs(5))
    .sqlx_logging(false);
    let db = Database::connect(opts).await?;
    if sqlite {
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL;",
        )
        .await?;
    }
    Ok(db)
}

/// Runs pending migrations. On PostgreSQL an advisory lock keeps replicas
/// starting together from migrating at the same time.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection, lock_id: i64) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        // Session-level lock: held on one dedicated connection of the pool.
        let map = |e: sea_orm::sqlx::Error| DbErr::Custom(format!("migration lock: {e}"));
        let mut lock = db
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(map)?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock_id)
            .execute(&mut *lock)
            .await
            .map_err(map)?;
        let result = M::up(db, None).await;
        sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(lock_id)
            .execute(&mut *lock)
            .await
            .map_err(map)?;
        result
    } else {
        M::up(db, None).await
    }
}

/// Ready once migrations ran and while the database answers.
pub struct DbReady {
    db: DatabaseConnection,
    migrated: AtomicBool,
}

impl DbReady {
    /// A check of `db`, not ready until [`DbReady::mark_migrated`].
    pub fn new(db: DatabaseConnection) -> Arc<Self> {
        Arc::new(Self {
            db,
            migrated: AtomicBool::new(false),
        })
    }

    /// Migrations ran: from now on the check pings the database (2 s timeout).
    pub fn mark_migrated(&self) {
        self.migrated.store(true, Ordering::Release);
    }
}

impl ReadyCheck for DbReady {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if !self.migrated.load(Ordering::Acquire) {
                return Err("database not migrated yet".into());
            }
            tokio::time::timeout(Duration::from_secs(2), self.db.ping())
                .await
                .map_err(|_| "database ping timed out".to_string())?
                .map_err(|_| "database unreachable".to_string())
        })
    }
}

/// True when `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Whether `e` is SQLite's "database is locked" (a transaction that read
/// first could not take the write lock): running it again is safe.
pub fn is_busy(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Internal(inner) if format!("{inner:#}").contains("database is locked"))
}

/// Begins a transaction that reads, then writes. On SQLite it takes the write
/// lock at BEGIN (`IMMEDIATE`), so its first write cannot fail with
/// "database is locked" because another connection wrote after its read; it
/// waits up to the busy timeout instead. On PostgreSQL it is a plain BEGIN.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}
