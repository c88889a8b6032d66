//! The metric catalog: definitions are versioned, and every change goes to
//! the cells through the outbox in the same transaction.

use shared::quota::store::{self, Stored};
use shared::quota::{self, MetricDef};
use shared::sync::{Event, outbox};
use shared::{Error, Result};

use crate::State;

fn stale(name: &str, current: Option<i64>, expected: Option<i64>) -> Error {
    Error::Conflict(format!(
        "metric `{name}` is at version {}; expectedVersion was {}",
        current.unwrap_or(0),
        expected
            .map(|v| v.to_string())
            .unwrap_or_else(|| "not given".into())
    ))
}

/// Creates or changes a metric. The same definition again is a no-op that
/// returns the stored one, so retries are safe. Changing an existing metric
/// needs its current version; its kind never changes (quotas depend on it).
pub async fn define(st: &State, def: MetricDef, expected_version: Option<i64>) -> Result<Stored> {
    def.check()
        .map_err(|errs| Error::bad_input("input", errs.join("; ")))?;
    let mut attempt = 0;
    loop {
        match write(st, &def, expected_version).await {
            // SQLite refuses a read transaction's upgrade to a write when
            // another connection wrote meanwhile: run it again.
            Err(e) if attempt < 5 && shared::db::is_busy(&e) => attempt += 1,
            other => return other,
        }
    }
}

async fn write(st: &State, def: &MetricDef, expected_version: Option<i64>) -> Result<Stored> {
    let def = def.clone();
    let txn = shared::db::begin_write(&st.db).await?;
    let existing = store::get(&txn, &def.name).await?;
    let version = match &existing {
        Some(e) if e.def == def => return Ok(e.clone()),
        Some(e) if e.def.kind != def.kind => {
            return Err(Error::bad_input(
                "input.kind",
                format!(
                    "metric `{}` is {:?}; its kind cannot change",
                    def.name, e.def.kind
                ),
            ));
        }
        Some(e) if expected_version != Some(e.version) => {
            return Err(stale(&def.name, Some(e.version), expected_version));
        }
        Some(e) => e.version + 1,
        None if expected_version.is_some_and(|v| v != 0) => {
            return Err(stale(&def.name, None, expected_version));
        }
        None => 1,
    };
    store::put(&txn, &def, version).await?;
    let payload = serde_json::to_value(&def).map_err(Error::internal)?;
    let event = Event::new(
        quota::STREAM,
        &quota::entity(&def.name),
        version,
        "global",
        payload,
    );
    outbox::enqueue(&txn, &event).await?;
    let stored = Stored { def, version };
    let target = Some(stored.def.name.clone());
    shared::audit::change(&txn, None, target, existing, &stored).await?;
    txn.commit().await?;
    st.relay.nudge();
    Ok(stored)
}
