//! The config schema registry: definitions are versioned, and every change
//! goes to the cells through the outbox in the same transaction.

use shared::configkeys::store::{self, Stored};
use shared::configkeys::{self, KeyDef};
use shared::sync::{Event, outbox};
use shared::{Error, Result};

use crate::State;

fn stale(key: &str, current: Option<i64>, expected: Option<i64>) -> Error {
    Error::Conflict(format!(
        "config key `{key}` is at version {}; expectedVersion was {}",
        current.unwrap_or(0),
        expected
            .map(|v| v.to_string())
            .unwrap_or_else(|| "not given".into())
    ))
}

/// Creates or changes a key. The same definition again is a no-op that
/// returns the stored one, so retries are safe. Changing an existing key
/// needs its current version as `expected_version`.
pub async fn define(st: &State, def: KeyDef, expected_version: Option<i64>) -> Result<Stored> {
    def.check()
        .map_err(|errs| Error::bad_input("input", errs.join("; ")))?;
    let txn = shared::db::begin_write(&st.db).await?;
    let existing = store::get(&txn, &def.key).await?;
    let version = match &existing {
        Some(e) if e.def == def => return Ok(e.clone()),
        Some(e) if expected_version != Some(e.version) => {
            return Err(stale(&def.key, Some(e.version), expected_version));
        }
        Some(e) => e.version + 1,
        None if expected_version.is_some_and(|v| v != 0) => {
            return Err(stale(&def.key, None, expected_version));
        }
        None => 1,
    };
    write(st, txn, existing, def, version).await
}

/// Marks a key deprecated: values stay, new uses are discouraged.
pub async fn deprecate(st: &State, key: &str, expected_version: i64) -> Result<Stored> {
    let txn = shared::db::begin_write(&st.db).await?;
    let existing = store::get(&txn, key)
        .await?
        .ok_or_else(|| Error::NotFound(format!("config key `{key}` is not defined")))?;
    if existing.def.deprecated {
        return Ok(existing);
    }
    if existing.version != expected_version {
        return Err(stale(key, Some(existing.version), Some(expected_version)));
    }
    let def = KeyDef {
        deprecated: true,
        ..existing.def.clone()
    };
    let version = existing.version + 1;
    write(st, txn, Some(existing), def, version).await
}

async fn write(
    st: &State,
    txn: sea_orm::DatabaseTransaction,
    before: Option<Stored>,
    def: KeyDef,
    version: i64,
) -> Result<Stored> {
    store::put(&txn, &def, version).await?;
    let payload = serde_json::to_value(&def).map_err(Error::internal)?;
    let event = Event::new(
        configkeys::STREAM,
        &configkeys::entity(&def.key),
        version,
        "global",
        payload,
    );
    outbox::enqueue(&txn, &event).await?;
    let stored = Stored { def, version };
    let target = Some(stored.def.key.clone());
    shared::audit::change(&txn, None, target, before, &stored).await?;
    txn.commit().await?;
    st.relay.nudge();
    Ok(stored)
}
