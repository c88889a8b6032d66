//! Feature flags: versioned definitions owned here, every change sent to the
//! cells through the outbox in the same transaction. Writes are idempotent
//! (idempotency keys) and optimistic (`expected_version`).

use std::collections::BTreeMap;
use std::future::Future;

use sea_orm::{DatabaseTransaction, TransactionTrait};
use serde::Serialize;
use shared::flags::def::{self, check_environment, check_prerequisites};
use shared::flags::store::{self, Row};
use shared::flags::{self as f, FlagDef, Kind, Rule, StoredFlag, Targeting, Variant};
use shared::ids::IdempotencyKey;
use shared::sync::{Event, outbox};
use shared::{Error, Result};

use super::idempotency;
use crate::State;

#[derive(Debug, Clone, Serialize)]
pub struct NewFlag {
    pub key: String,
    pub description: String,
    pub kind: Kind,
    pub variants: Vec<Variant>,
    pub off_variant: String,
    pub salt: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlagChange {
    pub key: String,
    pub description: Option<String>,
    pub variants: Option<Vec<Variant>>,
    pub off_variant: Option<String>,
    pub expected_version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetingChange {
    pub key: String,
    pub environment: String,
    pub enabled: bool,
    pub rules: Vec<Rule>,
    pub default_variant: Option<String>,
    pub expected_version: i64,
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("flag `{key}` does not exist"))
}

fn stale(key: &str, current: i64, expected: i64) -> Error {
    Error::Conflict(format!(
        "flag `{key}` is at version {current}; expectedVersion was {expected}"
    ))
}

pub async fn get(st: &State, key: &str) -> Result<Option<Row>> {
    store::get(&st.db, key).await
}

pub async fn all(st: &State) -> Result<Vec<Row>> {
    store::all(&st.db).await
}

/// Flags unchanged for `days` days that serve one variant to every tenant
/// in every environment.
pub async fn stale_flags(st: &State, days: i64) -> Result<Vec<Row>> {
    let cutoff = chrono::Utc::now() - chrono::Duration::days(days);
    Ok(store::all(&st.db)
        .await?
        .into_iter()
        .filter(|r| !r.flag.def.archived && r.updated_at <= cutoff)
        .filter(|r| {
            let d = &r.flag.def;
            let mut served = std::collections::HashSet::new();
            served.insert(d.off_variant.as_str());
            for env in d.environments.keys() {
                served.extend(d.reachable(env));
            }
            served.len() == 1
        })
        .collect())
}

/// Runs `write` once per idempotency key: a retry with the same input gets
/// the flag as it is now, other input under the same key is a CONFLICT.
async fn once<Fut>(
    st: &State,
    operation: &str,
    key: &IdempotencyKey,
    actor: &str,
    input: &impl Serialize,
    flag_key: &str,
    write: impl Fn() -> Fut,
) -> Result<StoredFlag>
where
    Fut: Future<Output = Result<StoredFlag>>,
{
    let hash = idempotency::fingerprint(&(operation, input));
    let claim = idempotency::claim(&st.db, operation, key, actor, &hash, flag_key).await?;
    if claim.done {
        return Ok(store::get(&st.db, flag_key)
            .await?
            .ok_or_else(|| not_found(flag_key))?
            .flag);
    }
    match retry_busy(write).await {
        Ok(v) => {
            idempotency::complete(&st.db, operation, key).await?;
            Ok(v)
        }
        Err(e) => {
            // Every write is one transaction: a failed one changed nothing.
            idempotency::release(&st.db, operation, key).await?;
            Err(e)
        }
    }
}

pub async fn create(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    new: NewFlag,
) -> Result<StoredFlag> {
    let mut def = FlagDef {
        key: new.key.clone(),
        description: new.description.clone(),
        kind: new.kind,
        variants: new.variants.clone(),
        off_variant: new.off_variant.clone(),
        salt: new.salt.clone(),
        archived: false,
        environments: BTreeMap::new(),
    };
    def.check()?;
    once(st, "createFlag", key, actor, &new, &new.key, || async {
        let txn = st.db.begin().await?;
        if store::get(&txn, &def.key).await?.is_some() {
            return Err(Error::Conflict(format!(
                "flag `{}` already exists",
                def.key
            )));
        }
        write(st, txn, None, def.clone(), 1).await
    })
    .await
}

/// The flag at `expected` version, for a change in `txn`.
async fn current(txn: &DatabaseTransaction, key: &str, expected: i64) -> Result<StoredFlag> {
    let row = store::get(txn, key).await?.ok_or_else(|| not_found(key))?;
    if row.flag.version != expected {
        return Err(stale(key, row.flag.version, expected));
    }
    Ok(row.flag)
}

pub async fn update(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    change: FlagChange,
) -> Result<StoredFlag> {
    once(
        st,
        "updateFlag",
        key,
        actor,
        &change,
        &change.key,
        || async {
            let txn = st.db.begin().await?;
            let cur = current(&txn, &change.key, change.expected_version).await?;
            let before = cur.clone();
            let mut def = cur.def;
            if let Some(d) = &change.description {
                def.description = d.clone();
            }
            if let Some(v) = &change.variants {
                def.variants = v.clone();
            }
            if let Some(o) = &change.off_variant {
                def.off_variant = o.clone();
            }
            def.check()?;
            write(st, txn, Some(&before), def, cur.version + 1).await
        },
    )
    .await
}

pub async fn set_targeting(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    change: TargetingChange,
) -> Result<StoredFlag> {
    check_environment(&change.environment).map_err(|m| Error::bad_input("input.environment", m))?;
    once(
        st,
        "setFlagTargeting",
        key,
        actor,
        &change,
        &change.key,
        || async {
            let txn = st.db.begin().await?;
            let cur = current(&txn, &change.key, change.expected_version).await?;
            let before = cur.clone();
            let mut def = cur.def;
            if def.archived {
                return Err(Error::Conflict(format!(
                    "flag `{}` is archived",
                    change.key
                )));
            }
            def.environments.insert(
                change.environment.clone(),
                Targeting {
                    enabled: change.enabled,
                    killed: false,
                    rules: change.rules.clone(),
                    default_variant: change.default_variant.clone(),
                },
            );
            def.check()?;
            let others: BTreeMap<String, FlagDef> = store::all(&txn)
                .await?
                .into_iter()
                .map(|r| (r.flag.def.key.clone(), r.flag.def))
                .collect();
            check_prerequisites(&def, &|k| others.get(k).cloned())?;
            write(st, txn, Some(&before), def, cur.version + 1).await
        },
    )
    .await
}

pub async fn archive(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    flag_key: &str,
    expected_version: i64,
) -> Result<StoredFlag> {
    let input = (flag_key, expected_version);
    once(st, "archiveFlag", key, actor, &input, flag_key, || async {
        let txn = st.db.begin().await?;
        let cur = current(&txn, flag_key, expected_version).await?;
        let before = cur.clone();
        let mut def = cur.def;
        def.archived = true;
        let out = write(st, txn, Some(&before), def, cur.version + 1).await?;
        super::rollouts::abort(st, flag_key, None, "the flag was archived").await?;
        Ok(out)
    })
    .await
}

/// The kill switch: the flag serves its off variant in `environment`
/// until targeting is set again. Already killed: nothing changes. Needs no
/// version, on purpose; the event goes out at once.
pub async fn kill(st: &State, flag_key: &str, environment: &str) -> Result<StoredFlag> {
    check_environment(environment).map_err(|m| Error::bad_input("environment", m))?;
    let out = retry_busy(|| async {
        let txn = st.db.begin().await?;
        let cur = store::get(&txn, flag_key)
            .await?
            .ok_or_else(|| not_found(flag_key))?
            .flag;
        let before = cur.clone();
        let mut def = cur.def.clone();
        let t = def.environments.entry(environment.to_owned()).or_default();
        if t.killed {
            return Ok(cur);
        }
        t.killed = true;
        t.enabled = false;
        write(st, txn, Some(&before), def, cur.version + 1).await
    })
    .await?;
    super::rollouts::abort(st, flag_key, Some(environment), "the flag was killed").await?;
    Ok(out)
}

/// Runs a write transaction again when SQLite refuses to turn its read
/// into a write because another writer committed meanwhile (`database is
/// locked`); PostgreSQL never asks for this.
pub(crate) async fn retry_busy<T, Fut>(write: impl Fn() -> Fut) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0u64;
    loop {
        match write().await {
            Err(e) if attempt < 20 && shared::db::is_busy(&e) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Stores `def` at `version` with its event, in `txn`.
pub(crate) async fn put<C: sea_orm::ConnectionTrait>(
    txn: &C,
    def: &FlagDef,
    version: i64,
) -> Result<()> {
    store::put(txn, def, version).await?;
    outbox::enqueue(txn, &event(def, version)?).await
}

/// Stores `def` at `version` with its event, commits and publishes.
async fn write(
    st: &State,
    txn: DatabaseTransaction,
    before: Option<&StoredFlag>,
    def: FlagDef,
    version: i64,
) -> Result<StoredFlag> {
    put(&txn, &def, version).await?;
    let after = StoredFlag { def, version };
    let target = Some(after.def.key.clone());
    shared::audit::change(&txn, None, target, before, &after).await?;
    txn.commit().await?;
    st.relay.nudge();
    Ok(after)
}

fn event(def: &FlagDef, version: i64) -> Result<Event> {
    let payload = serde_json::to_value(def).map_err(Error::internal)?;
    Ok(Event::new(
        f::STREAM,
        &f::flag_entity(&def.key),
        version,
        "global",
        payload,
    ))
}

/// Every flag and rollout plan with its version: what a cell resyncs from.
pub async fn snapshot(st: &State) -> Result<serde_json::Value> {
    let flags: Vec<StoredFlag> = store::all(&st.db)
        .await?
        .into_iter()
        .map(|r| r.flag)
        .collect();
    let rollouts = super::rollouts::plans(st).await?;
    Ok(serde_json::json!({ "flags": flags, "rollouts": rollouts }))
}

/// The authoritative `(entity, version)` of every flag, for anti-entropy.
pub async fn entity_versions(st: &State) -> Result<Vec<(String, i64)>> {
    Ok(store::all(&st.db)
        .await?
        .into_iter()
        .map(|r| (f::flag_entity(&r.flag.def.key), r.flag.version))
        .collect())
}

/// Sends the current event of one flag again (`flag:{key}`); false when
/// there is no such flag.
pub async fn republish(st: &State, entity: &str) -> Result<bool> {
    let Some(key) = entity.strip_prefix("flag:") else {
        return Ok(false);
    };
    let txn = st.db.begin().await?;
    let Some(row) = store::get(&txn, key).await? else {
        return Ok(false);
    };
    outbox::enqueue(&txn, &event(&row.flag.def, row.flag.version)?).await?;
    txn.commit().await?;
    st.relay.nudge();
    Ok(true)
}

pub use def::check_key;
