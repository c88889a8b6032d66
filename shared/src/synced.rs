//! Synced definitions: documents the global tier owns and every cell holds
//! a copy of (config keys, metrics, flags, rollout plans). Each kind is one
//! table of the same shape, `(key, body, version[, updated_at])`, with the
//! definition as JSON in `body`; this module is the one store for all of
//! them: [`get`], [`all`], [`put`], the monotonic [`apply`] of what a
//! stream or a resync brings, and the [`Migration`] that creates the table.
//!
//! # Adding a synced kind
//!
//! 1. In `shared`, one small file beside the definition type (which is
//!    `Serialize + Deserialize + Clone + PartialEq`): `impl Definition`,
//!    naming its [`Table`], its stream and its sync entity, plus a
//!    `MIGRATION` constant ([`Migration`] with a new migration name and the
//!    table). See `configkeys/store.rs` for the whole of it.
//! 2. Add the `MIGRATION` to both tiers' migrators (`global/src/migration.rs`
//!    and `cell/src/migration.rs`).
//! 3. Global tier: a mutation writes with [`put`] in its transaction, with
//!    the event (`D::STREAM`, `def.entity()`, the version) in the outbox;
//!    a query answers the whole kind with versions, for the cells' resync;
//!    anti-entropy lists it with [`versions`].
//! 4. Cell: one small file implementing `follow::Kind` (`cell/src/follow.rs`):
//!    the streams, how events decode, the resync query, and what to rebuild
//!    after a change. `follow::spawn` runs the stream consumers and the
//!    resync loop for it.
//!
//! Stored table and column names are part of existing databases: a kind's
//! [`Table`] must keep naming them as they were created.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, TransactionTrait, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sync::applied;
use crate::{Error, Result};

/// The type of a table's key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// A text key.
    Text,
    /// A UUID key.
    Uuid,
}

/// Where a kind is stored: table and column names as existing databases
/// hold them. The version column is always `version`, the time of the last
/// write (when the table has one) `updated_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The table's name.
    pub name: &'static str,
    /// The primary key column.
    pub key: &'static str,
    /// The key column's type.
    pub key_type: KeyType,
    /// The column holding the definition as JSON text.
    pub body: &'static str,
    /// Whether the table has an `updated_at` column.
    pub updated_at: bool,
}

impl Table {
    /// The usual shape: a text key, the definition in `def`, `updated_at`.
    pub const fn keyed(name: &'static str, key: &'static str) -> Self {
        Self {
            name,
            key,
            key_type: KeyType::Text,
            body: "def",
            updated_at: true,
        }
    }
}

/// A kind of synced definition.
pub trait Definition:
    Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static
{
    /// Where definitions of this kind are stored.
    const TABLE: Table;
    /// The stream its changes travel on from the global tier to cells.
    const STREAM: &'static str;
    /// Its primary key (a string, or a UUID for a UUID key).
    fn key(&self) -> Value;
    /// The sync entity its versions are kept under (`kind:key`).
    fn entity(&self) -> String;
}

/// A stored definition with its version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stored<D> {
    /// The definition.
    pub def: D,
    /// Its version: increases with every change, so the newest one wins.
    pub version: i64,
}

/// A stored row: the definition, its version and, when the table records
/// it, when it was last written.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<D> {
    /// The definition.
    pub def: D,
    /// Its version: increases with every change, so the newest one wins.
    pub version: i64,
    /// When the row was last written; none when the table does not record it.
    pub updated_at: Option<DateTime<Utc>>,
}

impl<D> Row<D> {
    /// The definition and version, without the write time.
    pub fn stored(self) -> Stored<D> {
        Stored {
            def: self.def,
            version: self.version,
        }
    }
}

const VERSION: &str = "version";
const UPDATED_AT: &str = "updated_at";

fn select<D: Definition>() -> SelectStatement {
    let t = D::TABLE;
    let mut q = Query::select();
    q.columns([t.body, VERSION]).from(t.name);
    if t.updated_at {
        q.column(UPDATED_AT);
    }
    q
}

fn decode<D: Definition>(r: &QueryResult) -> Result<Row<D>> {
    let t = D::TABLE;
    let body: String = r.try_get("", t.body)?;
    Ok(Row {
        def: serde_json::from_str(&body).map_err(Error::internal)?,
        version: r.try_get("", VERSION)?,
        updated_at: if t.updated_at {
            Some(r.try_get("", UPDATED_AT)?)
        } else {
            None
        },
    })
}

/// The row of `key`, if any.
pub async fn get<D: Definition, C: ConnectionTrait>(
    db: &C,
    key: impl Into<Value>,
) -> Result<Option<Row<D>>> {
    let mut q = select::<D>();
    q.and_where(Expr::col(D::TABLE.key).eq(key.into()));
    db.query_one(&q).await?.as_ref().map(decode).transpose()
}

/// The row of `key`, locked until the transaction `txn` ends (PostgreSQL's
/// `FOR UPDATE`; SQLite's write transaction already excludes other writers).
pub async fn lock<D: Definition, C: ConnectionTrait>(
    txn: &C,
    key: impl Into<Value>,
) -> Result<Option<Row<D>>> {
    let mut q = select::<D>();
    q.and_where(Expr::col(D::TABLE.key).eq(key.into()))
        .lock_exclusive();
    txn.query_one(&q).await?.as_ref().map(decode).transpose()
}

/// Every row, by key.
pub async fn all<D: Definition, C: ConnectionTrait>(db: &C) -> Result<Vec<Row<D>>> {
    let mut q = select::<D>();
    q.order_by(D::TABLE.key, Order::Asc);
    db.query_all(&q).await?.iter().map(decode).collect()
}

/// `(sync entity, version, last written)` of every row, for anti-entropy
/// (the Unix epoch where the table records no time).
pub async fn versions<D: Definition, C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
    Ok(all::<D, C>(db)
        .await?
        .into_iter()
        .map(|r| (r.def.entity(), r.version, r.updated_at.unwrap_or_default()))
        .collect())
}

/// Writes `def` at `version`, replacing what is there.
pub async fn put<D: Definition, C: ConnectionTrait>(db: &C, def: &D, version: i64) -> Result<()> {
    let t = D::TABLE;
    let body = serde_json::to_string(def).map_err(Error::internal)?;
    let mut columns = vec![t.key, t.body, VERSION];
    let mut values: Vec<Expr> = vec![Expr::val(def.key()), Expr::val(body), Expr::val(version)];
    if t.updated_at {
        columns.push(UPDATED_AT);
        values.push(Expr::val(Utc::now()));
    }
    let mut q = Query::insert();
    q.into_table(t.name)
        .columns(columns.iter().copied())
        .values_panic(values)
        .on_conflict(
            OnConflict::column(t.key)
                .update_columns(columns[1..].iter().copied())
                .to_owned(),
        );
    db.execute(&q).await?;
    Ok(())
}

/// What an [`apply_in`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The positions (in what was applied) of the definitions newer than
    /// what the database held, now written.
    pub changed: Vec<usize>,
    /// How many rows were rewritten because they no longer matched the
    /// version already applied (only with `repair`).
    pub repaired: usize,
}

/// Applies definitions in `txn`, each only if its version is newer than
/// the one applied for its entity (`sync_applied`), so duplicates and
/// reordering cannot move a definition backwards. With `repair` (a resync
/// of the global tier's whole state) it also rewrites a row that no longer
/// matches the definition at the version applied: changed or deleted
/// behind the consumer's back, which version-based sync and anti-entropy
/// digests cannot see.
pub async fn apply_in<D: Definition, C: ConnectionTrait>(
    txn: &C,
    defs: &[(D, i64)],
    repair: bool,
) -> Result<Applied> {
    let mut out = Applied::default();
    for (i, (def, version)) in defs.iter().enumerate() {
        let entity = def.entity();
        if applied::advance(txn, &entity, *version).await? {
            put(txn, def, *version).await?;
            out.changed.push(i);
        } else if repair
            && applied::current(txn, &entity).await? == Some(*version)
            && get::<D, C>(txn, def.key())
                .await?
                .is_none_or(|r| r.version != *version || r.def != *def)
        {
            put(txn, def, *version).await?;
            out.repaired += 1;
        }
    }
    Ok(out)
}

/// [`apply_in`] of events from a stream, in one transaction that commits
/// without waiting for the WAL flush (`applied::relaxed_commit`). Returns
/// how many changed anything.
pub async fn apply<D: Definition>(db: &DatabaseConnection, defs: &[(D, i64)]) -> Result<usize> {
    let txn = db.begin().await?;
    applied::relaxed_commit(&txn).await?;
    let n = apply_in(&txn, defs, false).await?.changed.len();
    txn.commit().await?;
    Ok(n)
}

/// [`apply_in`] with repair of the global tier's whole state, in one
/// transaction. Returns `(changed, repaired)`.
pub async fn repair<D: Definition>(
    db: &DatabaseConnection,
    defs: &[(D, i64)],
) -> Result<(usize, usize)> {
    let txn = db.begin().await?;
    let a = apply_in(&txn, defs, true).await?;
    txn.commit().await?;
    Ok((a.changed.len(), a.repaired))
}

/// Creates the tables of synced kinds, under a migration name that must
/// never change once released.
pub struct Migration {
    /// The migration's name, recorded in the database once it has run.
    pub name: &'static str,
    /// The tables it creates.
    pub tables: &'static [Table],
}

impl sea_orm_migration::MigrationName for Migration {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for Migration {
    async fn up(
        &self,
        manager: &sea_orm_migration::SchemaManager,
    ) -> std::result::Result<(), sea_orm::DbErr> {
        use sea_orm_migration::schema::{big_integer, string, text, timestamp_with_time_zone};
        for t in self.tables {
            let mut create = sea_orm::sea_query::Table::create();
            create.table(t.name).if_not_exists();
            match t.key_type {
                KeyType::Text => create.col(string(t.key).primary_key()),
                KeyType::Uuid => create.col(sea_orm_migration::schema::uuid(t.key).primary_key()),
            };
            create.col(text(t.body)).col(big_integer(VERSION));
            if t.updated_at {
                create.col(timestamp_with_time_zone(UPDATED_AT));
            }
            manager.create_table(create).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
