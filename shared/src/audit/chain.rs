//! The hash chain: each entry holds its `seq`, the hash of the entry before
//! it and its own hash, sha256 over its canonical content and that previous
//! hash. Appends serialize on the chain's head row (`audit_chain_head`,
//! `FOR UPDATE` on PostgreSQL; on SQLite the caller's transaction began
//! IMMEDIATE), so the chain has no forks and no gaps. A cell's head names
//! the cell (`ship_origin`), and each append then also enqueues the entry on
//! the `cell.audit` stream in the same transaction.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entity::{self, Model as Entry};
use crate::error::{Error, Result};
use crate::sync::{Event, outbox};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Cell → global: every entry of a cell's chain.
pub const SHIP_STREAM: &str = "cell.audit";

/// This tier's own chain.
pub const OWN: &str = "";

/// Now, at the microsecond precision both databases keep, so an entry
/// hashes the same before and after a round trip.
pub fn now() -> DateTime<Utc> {
    let n = Utc::now();
    DateTime::from_timestamp_micros(n.timestamp_micros()).unwrap_or(n)
}

/// sha256 over the entry's canonical content (everything but its chain
/// name and its own hash) and `prev_hash`.
pub fn content_hash(e: &Entry) -> String {
    let canonical = serde_json::json!([
        e.seq,
        e.id,
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.actor,
        e.roles,
        e.action,
        e.tenant_id,
        e.target,
        e.outcome,
        e.request_id,
        e.break_glass_id,
        e.detail,
        e.diff,
        e.prev_hash,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

struct Head {
    seq: i64,
    hash: String,
    ship_origin: Option<String>,
}

/// A PostgreSQL statement for `backend`: SQLite has no row locks (the
/// transaction holds the write lock) and numbers parameters `?1`, `?2`.
fn params(backend: DbBackend, pg: &str) -> String {
    match backend {
        DbBackend::Postgres => pg.to_owned(),
        _ => pg.replace(" FOR UPDATE", "").replace('$', "?"),
    }
}

async fn lock_head<C: ConnectionTrait>(txn: &C) -> Result<Head> {
    let backend = txn.get_database_backend();
    let q = params(
        backend,
        "SELECT seq, hash, ship_origin FROM audit_chain_head WHERE source = $1 FOR UPDATE",
    );
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(backend, q, [OWN.into()]))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("the audit chain has no head row")))?;
    Ok(Head {
        seq: row.try_get("", "seq")?,
        hash: row.try_get("", "hash")?,
        ship_origin: row.try_get("", "ship_origin")?,
    })
}

async fn set_head<C: ConnectionTrait>(txn: &C, seq: i64, hash: &str) -> Result<()> {
    let backend = txn.get_database_backend();
    let q = params(
        backend,
        "UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE source = $3",
    );
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        q,
        [seq.into(), hash.into(), OWN.into()],
    ))
    .await?;
    Ok(())
}

/// Appends `e` (its chain fields are filled here) to this tier's chain.
/// Call inside a write transaction, as late as possible: the head stays
/// locked until it commits.
pub async fn append<C: ConnectionTrait>(txn: &C, mut e: Entry) -> Result<Entry> {
    let head = lock_head(txn).await?;
    e.source = OWN.to_owned();
    e.seq = head.seq + 1;
    e.prev_hash = head.hash;
    e.hash = content_hash(&e);
    entity::ActiveModel::from(e.clone()).insert(txn).await?;
    set_head(txn, e.seq, &e.hash).await?;
    if let Some(origin) = head.ship_origin {
        ship(txn, &origin, &e).await?;
    }
    Ok(e)
}

async fn ship<C: ConnectionTrait>(txn: &C, origin: &str, e: &Entry) -> Result<()> {
    let payload = serde_json::to_value(e).map_err(Error::internal)?;
    let event = Event::new(
        SHIP_STREAM,
        &format!("audit:{origin}:{}", e.seq),
        e.seq,
        origin,
        payload,
    );
    outbox::enqueue(txn, &event).await
}

/// Makes this tier's chain ship every entry to the global tier as cell
/// `origin`; the first time, the entries written so far are enqueued too.
pub async fn ship_as(db: &DatabaseConnection, origin: &str) -> Result<()> {
    let txn = crate::db::begin_write(db).await?;
    let head = lock_head(&txn).await?;
    if head.ship_origin.as_deref() == Some(origin) {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        params(
            backend,
            "UPDATE audit_chain_head SET ship_origin = $1 WHERE source = $2",
        ),
        [origin.into(), OWN.into()],
    ))
    .await?;
    let rows = entity::Entity::find()
        .filter(entity::Column::Source.eq(OWN))
        .order_by_asc(entity::Column::Seq)
        .all(&txn)
        .await?;
    for e in &rows {
        ship(&txn, origin, e).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Stores entries a cell shipped, once each: `(source, seq)` is unique, so
/// redelivery changes nothing. Returns how many were new.
pub async fn store_shipped<C: ConnectionTrait>(
    db: &C,
    cell: &str,
    entries: Vec<Entry>,
) -> Result<u64> {
    if entries.is_empty() {
        return Ok(0);
    }
    let models = entries.into_iter().map(|mut e| {
        e.source = cell.to_owned();
        entity::ActiveModel::from(e)
    });
    let r = entity::Entity::insert_many(models)
        .on_conflict_do_nothing_on([entity::Column::Source, entity::Column::Seq])
        .exec_without_returning(db)
        .await;
    match r {
        Ok(sea_orm::TryInsertResult::Inserted(n)) => Ok(n),
        Ok(_) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The first link that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The entry where the chain breaks; none when the tail is missing.
    pub id: Option<Uuid>,
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub valid: bool,
    /// Entries checked.
    pub checked: u64,
    pub first_broken: Option<Broken>,
}

const PAGE: u64 = 1000;

/// Checks chain `source` from `from` to `to` (seq, inclusive; default the
/// whole chain): consecutive seqs, each `prev_hash` the hash of the entry
/// before, each hash its content's. Stops at the first broken link.
pub async fn verify<C: ConnectionTrait>(
    db: &C,
    source: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Verdict> {
    let from = from.unwrap_or(1);
    if from < 1 {
        return Err(Error::bad_input("from", "from is a seq, at least 1"));
    }
    let last = last_seq(db, source).await?;
    let to = to.unwrap_or(last);
    if to < from {
        return Ok(Verdict {
            valid: true,
            checked: 0,
            first_broken: None,
        });
    }
    let mut prev: Option<String> = if from == 1 {
        Some(GENESIS.to_owned())
    } else {
        entity::Entity::find()
            .filter(entity::Column::Source.eq(source))
            .filter(entity::Column::Seq.eq(from - 1))
            .one(db)
            .await?
            .map(|e| e.hash)
    };
    let mut expected = from;
    let mut checked = 0u64;
    let broken = |id: Option<Uuid>, seq: i64, reason: String, checked: u64| Verdict {
        valid: false,
        checked,
        first_broken: Some(Broken { id, seq, reason }),
    };
    loop {
        let rows = entity::Entity::find()
            .filter(entity::Column::Source.eq(source))
            .filter(entity::Column::Seq.gte(expected))
            .filter(entity::Column::Seq.lte(to))
            .order_by_asc(entity::Column::Seq)
            .limit(PAGE)
            .all(db)
            .await?;
        let n = rows.len() as u64;
        for e in rows {
            if e.seq != expected {
                let reason = if e.seq == expected + 1 {
                    format!("entry {expected} is missing")
                } else {
                    format!("entries {expected} to {} are missing", e.seq - 1)
                };
                return Ok(broken(Some(e.id), e.seq, reason, checked));
            }
            if let Some(p) = &prev
                && *p != e.prev_hash
            {
                return Ok(broken(
                    Some(e.id),
                    e.seq,
                    format!(
                        "prev_hash does not match the hash of entry {}: an entry was altered, removed or inserted",
                        e.seq - 1
                    ),
                    checked,
                ));
            }
            if content_hash(&e) != e.hash {
                return Ok(broken(
                    Some(e.id),
                    e.seq,
                    "the entry's content does not match its hash: it was altered".into(),
                    checked,
                ));
            }
            checked += 1;
            expected = e.seq + 1;
            prev = Some(e.hash);
        }
        if n < PAGE {
            break;
        }
    }
    if expected <= to {
        return Ok(broken(
            None,
            expected,
            format!("entries {expected} to {to} are missing (the chain reaches {to})"),
            checked,
        ));
    }
    Ok(Verdict {
        valid: true,
        checked,
        first_broken: None,
    })
}

/// The highest seq of chain `source`: the head for this tier's own chain
/// (so removed tail entries are noticed), the highest stored for a shipped one.
async fn last_seq<C: ConnectionTrait>(db: &C, source: &str) -> Result<i64> {
    let backend = db.get_database_backend();
    let q = if source == OWN {
        params(
            backend,
            "SELECT seq FROM audit_chain_head WHERE source = $1",
        )
    } else {
        params(
            backend,
            "SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_log WHERE source = $1",
        )
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, q, [source.into()]))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "seq"))
        .transpose()?
        .unwrap_or(0))
}

/// Migration step: chains the entries written before the chain existed, in
/// id (time) order, and creates the head row.
pub(super) async fn backfill<C: ConnectionTrait>(db: &C) -> std::result::Result<(), DbErr> {
    let rows = entity::Entity::find()
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await?;
    let mut prev = GENESIS.to_owned();
    let mut seq = 0;
    for mut e in rows {
        seq += 1;
        e.source = OWN.to_owned();
        e.seq = seq;
        e.prev_hash = prev;
        e.at = DateTime::from_timestamp_micros(e.at.timestamp_micros()).unwrap_or(e.at);
        e.hash = content_hash(&e);
        prev = e.hash.clone();
        let am: entity::ActiveModel = e.into();
        am.reset_all().update(db).await?;
    }
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        params(
            backend,
            "INSERT INTO audit_chain_head (source, seq, hash) VALUES ($1, $2, $3)",
        ),
        [OWN.into(), seq.into(), prev.into()],
    ))
    .await?;
    Ok(())
}
