//! The hash chain: each entry holds its `seq`, the hash of the entry before
//! it and its own hash, sha256 over its canonical content and that previous
//! hash. Appends serialize on the chain's head row (`audit_chain_head`,
//! `FOR UPDATE` on PostgreSQL; on SQLite the caller's transaction began
//! IMMEDIATE), so the chain has no forks and no gaps. A cell's head names
//! the cell (`ship_origin`), and each append then also enqueues the entry on
//! the `cell.audit` stream in the same transaction.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
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
/// name and its own hash) and `prev_hash`. An entry with a `values_hash`
/// is hashed over that and the names of the fields it changed instead of
/// its `target`, `detail` and `diff`, which it may then lose (shipped
/// without them, or erased with its tenant) and still chain.
pub fn content_hash(e: &Entry) -> String {
    let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let canonical = match &e.values_hash {
        None => serde_json::json!([
            e.seq,
            e.id,
            at,
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
        ]),
        Some(values) => serde_json::json!([
            "v2",
            e.seq,
            e.id,
            at,
            e.actor,
            e.roles,
            e.action,
            e.tenant_id,
            e.outcome,
            e.request_id,
            e.break_glass_id,
            e.fields,
            values,
            e.prev_hash,
        ]),
    };
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// sha256 over an entry's salt and the values its chain hash leaves out.
pub fn values_hash(salt: &str, e: &Entry) -> String {
    let canonical = serde_json::json!([salt, e.target, e.detail, e.diff]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// What `detail` holds once an entry's values are gone.
pub const NO_DETAIL: &str = "{}";

/// Whether this copy of the entry holds its `target`, `detail` and
/// `diff`: written here and not erased (or written before values were
/// hashed apart).
pub fn holds_values(e: &Entry) -> bool {
    e.values_hash.is_none() || e.salt.is_some()
}

/// The entry without its values (target, detail, diff, salt): what a cell
/// ships, what remains after its tenant's purge. Entries written before
/// values were hashed apart cannot lose them and stay as they are.
pub fn sealed(mut e: Entry) -> Entry {
    if e.values_hash.is_some() {
        e.target = None;
        e.detail = NO_DETAIL.to_owned();
        e.diff = None;
        e.salt = None;
    }
    e
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
    let salt = Uuid::new_v4().simple().to_string();
    e.values_hash = Some(values_hash(&salt, &e));
    e.salt = Some(salt);
    e.hash = content_hash(&e);
    entity::ActiveModel::from(e.clone()).insert(txn).await?;
    set_head(txn, e.seq, &e.hash).await?;
    if let Some(origin) = head.ship_origin {
        ship(txn, &origin, &e).await?;
    }
    Ok(e)
}

/// Enqueues the entry on `cell.audit` without its values: the tenant's
/// data stays in its cell (residency); the global tier's copy names the
/// fields changed and chains through `values_hash`.
async fn ship<C: ConnectionTrait>(txn: &C, origin: &str, e: &Entry) -> Result<()> {
    let payload = serde_json::to_value(sealed(e.clone())).map_err(Error::internal)?;
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
    let models = entries.into_iter().map(|e| {
        // Sealed again here: whatever a cell sends, its tenants' values are
        // not stored at the global tier.
        let mut e = sealed(e);
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
    /// Its position in the chain.
    pub seq: i64,
    /// Why the link does not hold.
    pub reason: String,
}

/// What verifying a chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the whole chain holds.
    pub valid: bool,
    /// Entries checked.
    pub checked: u64,
    /// The first link that does not hold; none when the chain is valid.
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
            if let Some(reason) = values_fault(&e) {
                return Ok(broken(Some(e.id), e.seq, reason, checked));
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

/// Why the entry's values (target, detail, diff) do not hold: altered
/// (they no longer hash to `values_hash`), or present without their salt
/// (a copy without values must hold none).
fn values_fault(e: &Entry) -> Option<String> {
    let expected = e.values_hash.as_ref()?;
    match &e.salt {
        Some(salt) if values_hash(salt, e) != *expected => Some(
            "the entry's target, detail or diff does not match its values hash: it was altered"
                .into(),
        ),
        Some(_) => None,
        None if e.target.is_some() || e.diff.is_some() || e.detail != NO_DETAIL => Some(
            "the entry holds a target, detail or diff without their salt: they were altered".into(),
        ),
        None => None,
    }
}

/// Erases the values (target, detail, diff, salt) of every entry of
/// `tenant` in this database, both its own chain and shipped copies: what
/// a purge leaves of them is their ids, hashes, actors, actions and the
/// names of the fields changed, and the chain still verifies. Entries
/// written before values were hashed apart cannot be erased without
/// breaking the chain; the count of those is returned second.
pub async fn erase_tenant<C: ConnectionTrait>(db: &C, tenant: Uuid) -> Result<(u64, u64)> {
    use sea_orm::sea_query::Expr;
    let erased = entity::Entity::update_many()
        .col_expr(entity::Column::Target, Expr::value(Option::<String>::None))
        .col_expr(entity::Column::Detail, Expr::value(NO_DETAIL))
        .col_expr(entity::Column::Diff, Expr::value(Option::<String>::None))
        .col_expr(entity::Column::Salt, Expr::value(Option::<String>::None))
        .filter(entity::Column::TenantId.eq(tenant))
        .filter(entity::Column::ValuesHash.is_not_null())
        // Only entries that still hold something: erasing twice is a no-op.
        .filter(
            sea_orm::Condition::any()
                .add(entity::Column::Salt.is_not_null())
                .add(entity::Column::Target.is_not_null())
                .add(entity::Column::Diff.is_not_null())
                .add(entity::Column::Detail.ne(NO_DETAIL)),
        )
        .exec(db)
        .await?
        .rows_affected;
    let legacy = entity::Entity::find()
        .filter(entity::Column::TenantId.eq(tenant))
        .filter(entity::Column::ValuesHash.is_null())
        .count(db)
        .await?;
    Ok((erased, legacy))
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

/// The columns an entry had before it was chained.
#[derive(sea_orm::FromQueryResult)]
struct Unchained {
    id: Uuid,
    at: DateTime<Utc>,
    actor: String,
    roles: String,
    action: String,
    tenant_id: Option<Uuid>,
    target: Option<String>,
    outcome: String,
    request_id: Option<String>,
    detail: String,
}

/// Migration step: chains the entries written before the chain existed, in
/// id (time) order, and creates the head row. Reads and writes only the
/// columns that exist at that step (later steps add more).
pub(super) async fn backfill<C: ConnectionTrait>(db: &C) -> std::result::Result<(), DbErr> {
    use entity::Column as C;
    use sea_orm::sea_query::Expr;
    let rows = entity::Entity::find()
        .select_only()
        .columns([
            C::Id,
            C::At,
            C::Actor,
            C::Roles,
            C::Action,
            C::TenantId,
            C::Target,
            C::Outcome,
            C::RequestId,
            C::Detail,
        ])
        .order_by_asc(C::Id)
        .into_model::<Unchained>()
        .all(db)
        .await?;
    let mut prev = GENESIS.to_owned();
    let mut seq = 0;
    for r in rows {
        seq += 1;
        let mut e = Entry {
            id: r.id,
            at: DateTime::from_timestamp_micros(r.at.timestamp_micros()).unwrap_or(r.at),
            actor: r.actor,
            roles: r.roles,
            action: r.action,
            tenant_id: r.tenant_id,
            target: r.target,
            outcome: r.outcome,
            request_id: r.request_id,
            detail: r.detail,
            source: OWN.to_owned(),
            seq,
            prev_hash: prev,
            hash: String::new(),
            break_glass_id: None,
            diff: None,
            fields: None,
            values_hash: None,
            salt: None,
        };
        e.hash = content_hash(&e);
        prev = e.hash.clone();
        entity::Entity::update_many()
            .col_expr(C::Source, Expr::value(e.source))
            .col_expr(C::Seq, Expr::value(e.seq))
            .col_expr(C::PrevHash, Expr::value(e.prev_hash))
            .col_expr(C::Hash, Expr::value(e.hash))
            .col_expr(C::At, Expr::value(e.at))
            .filter(C::Id.eq(e.id))
            .exec(db)
            .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut e = Entry {
            id: Uuid::now_v7(),
            at: now(),
            actor: "global".into(),
            roles: "service".into(),
            action: "updateTenantConfig".into(),
            tenant_id: Some(Uuid::now_v7()),
            target: Some("alice".into()),
            outcome: "OK".into(),
            request_id: Some("r1".into()),
            detail: r#"{"set":[{"key":"k","value":"secret-value"}]}"#.into(),
            source: OWN.into(),
            seq: 7,
            prev_hash: GENESIS.into(),
            hash: String::new(),
            break_glass_id: None,
            diff: Some(r#"{"before":null,"after":{"k":"secret-value"}}"#.into()),
            fields: Some(r#"["k"]"#.into()),
            values_hash: None,
            salt: Some("00112233445566778899aabbccddeeff".into()),
        };
        e.values_hash = Some(values_hash(e.salt.as_deref().unwrap(), &e));
        e.hash = content_hash(&e);
        e
    }

    #[test]
    fn a_sealed_copy_holds_no_values_and_keeps_its_hash() {
        let e = entry();
        let s = sealed(e.clone());
        assert_eq!(
            (s.target.as_deref(), s.diff.as_deref(), s.detail.as_str()),
            (None, None, NO_DETAIL)
        );
        assert!(s.salt.is_none());
        assert!(!serde_json::to_string(&s).unwrap().contains("secret-value"));
        assert_eq!(content_hash(&s), e.hash);
        assert!(!holds_values(&s));
        assert!(holds_values(&e));
        assert_eq!(values_fault(&e), None);
        assert_eq!(values_fault(&s), None);
    }

    #[test]
    fn altered_values_are_found_with_or_without_the_salt() {
        let e = entry();
        let mut changed = e.clone();
        changed.detail = "{}".into();
        // The chain hash does not cover the values themselves...
        assert_eq!(content_hash(&changed), e.hash);
        // ...their hash does.
        assert!(values_fault(&changed).unwrap().contains("altered"));
        let mut smuggled = sealed(e.clone());
        smuggled.diff = Some("{}".into());
        assert!(values_fault(&smuggled).is_some());
        // The names of the fields changed are covered by the chain hash.
        let mut renamed = e.clone();
        renamed.fields = Some(r#"["other"]"#.into());
        assert_ne!(content_hash(&renamed), e.hash);
    }

    #[test]
    fn entries_without_a_values_hash_keep_the_old_hash_and_their_values() {
        let mut e = entry();
        e.values_hash = None;
        e.salt = None;
        e.fields = None;
        e.hash = content_hash(&e);
        let s = sealed(e.clone());
        assert_eq!(s, e, "an old entry cannot lose its values");
        let mut changed = e.clone();
        changed.detail = "{}".into();
        assert_ne!(content_hash(&changed), e.hash);
    }
}
