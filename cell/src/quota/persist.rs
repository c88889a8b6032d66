//! What keeps the in-memory limiter (one replica) across a restart.
//!
//! - PERIODIC counters and GAUGE levels: each consume's change is queued in
//!   its shard and written by `flush` (every `persist_interval`, and once
//!   more when the cell stops) as an increment of `quota_counters`; metered
//!   usage adds to the same row inside the usage transaction, so it is never
//!   lost once accepted.
//! - Consume keys, with the request's fingerprint and the answer, in
//!   `quota_consume_keys` until they expire (`consume_key_ttl`).
//!
//! At start, `restore` reads both back before the cell serves. A crash
//! (not a stop) loses what waited for the next flush: at most
//! `persist_interval` of consumes, whose keys and counts go together.
//! - RATE slots: the theoretical arrival time of each slot a consume moved,
//!   in the same flush, as a `quota_counters` row with `window_start`
//!   `RATE_WINDOW` (-1) whose `used` is that time; the later time wins. A
//!   restart therefore does not hand a tenant a fresh burst.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use shared::Result;
use shared::quota::decide::Outcome;
use shared::quota::window;
use uuid::Uuid;

use super::Engine;
use super::memory::{Pending, Remembered};

/// Rows per INSERT statement.
const CHUNK: usize = 1000;

/// Counters older than this (µs) are forgotten; GAUGE levels (window 0) never.
const COUNTER_KEEP_US: i64 = 32 * 86_400 * 1_000_000;

/// Appends `(p1, …, p{count})` to `out`, numbering on from `n`.
fn placeholders(out: &mut String, backend: DbBackend, n: &mut usize, count: usize) {
    use std::fmt::Write;
    out.push('(');
    for i in 0..count {
        if i > 0 {
            out.push(',');
        }
        *n += 1;
        match backend {
            DbBackend::Postgres => {
                let _ = write!(out, "${n}");
            }
            _ => out.push('?'),
        }
    }
    out.push(')');
}

/// The `window_start` of a RATE slot's row, whose `used` holds the slot's
/// theoretical arrival time (µs since the epoch) instead of a count.
pub const RATE_WINDOW: i64 = -1;

/// How an upsert merges a row with the one stored.
#[derive(Clone, Copy)]
enum Merge {
    /// Adds to the stored count.
    Add,
    /// Keeps the later of the two (a RATE slot's arrival time).
    Latest,
}

/// Adds `used` to each `(tenant, metric, window start)` counter.
pub async fn add_counters<C: ConnectionTrait>(
    db: &C,
    rows: &[(String, String, i64, i64)],
) -> Result<()> {
    upsert_counters(db, rows, Merge::Add).await
}

async fn upsert_counters<C: ConnectionTrait>(
    db: &C,
    rows: &[(String, String, i64, i64)],
    merge: Merge,
) -> Result<()> {
    let backend = db.get_database_backend();
    // One lock order for every writer of these rows (the flusher drains its
    // shards in no order; metered usage writes in key order): two
    // transactions touching the same counters never deadlock.
    let mut rows: Vec<&(String, String, i64, i64)> = rows.iter().collect();
    rows.sort_unstable_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    for chunk in rows.chunks(CHUNK) {
        let mut n = 0;
        let mut sql = String::from(
            "INSERT INTO quota_counters (tenant_id, metric, window_start, used) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
        for (i, (t, m, ws, used)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            placeholders(&mut sql, backend, &mut n, 4);
            values.extend([
                t.clone().into(),
                m.clone().into(),
                (*ws).into(),
                (*used).into(),
            ]);
        }
        sql.push_str(match merge {
            Merge::Add => {
                // Held at the largest BIGINT instead of overflowing (an
                // error on PostgreSQL, a float on SQLite).
                // A release's change is negative: only an increase can overflow.
                " ON CONFLICT (tenant_id, metric, window_start) DO UPDATE SET used = \
                 CASE WHEN excluded.used <= 0 THEN quota_counters.used + excluded.used \
                 WHEN quota_counters.used > 9223372036854775807 - excluded.used \
                 THEN 9223372036854775807 ELSE quota_counters.used + excluded.used END"
            }
            Merge::Latest => {
                " ON CONFLICT (tenant_id, metric, window_start) DO UPDATE SET used = \
                 CASE WHEN excluded.used > quota_counters.used THEN excluded.used ELSE quota_counters.used END"
            }
        });
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

fn encode(r: &Remembered) -> String {
    let o = &r.outcome;
    format!(
        "{},{},{},{},{},{},{},{}",
        r.fingerprint,
        u8::from(o.allowed),
        o.limit,
        o.remaining,
        o.reset_at.unwrap_or(-1),
        o.retry_after_us.unwrap_or(-1),
        o.overage,
        o.used
    )
}

fn decode(s: &str) -> Option<Remembered> {
    let mut it = s.split(',');
    let fingerprint = it.next()?.parse().ok()?;
    let mut n = [0i64; 7];
    for v in n.iter_mut() {
        *v = it.next()?.parse().ok()?;
    }
    let opt = |x: i64| (x >= 0).then_some(x);
    Some(Remembered {
        fingerprint,
        outcome: Outcome {
            allowed: n[0] == 1,
            limit: n[1],
            remaining: n[2],
            reset_at: opt(n[3]),
            retry_after_us: opt(n[4]),
            overage: n[5],
            used: n[6],
        },
    })
}

impl Engine {
    /// Writes what the in-memory limiter changed since the last flush, in
    /// one transaction; what fails is queued again. Returns the counters
    /// and keys written.
    pub async fn flush(&self) -> Result<(usize, usize)> {
        if !self.in_memory() {
            return Ok((0, 0));
        }
        let pending = self.memory.drain();
        if pending.is_empty() {
            return Ok((0, 0));
        }
        match self.write(&pending).await {
            Ok(()) => Ok((
                pending.deltas.len() + pending.rates.len(),
                pending.key_count(),
            )),
            Err(e) => {
                self.memory.requeue(pending);
                Err(e)
            }
        }
    }

    async fn write(&self, pending: &Pending) -> Result<()> {
        let catalog = self.catalog();
        let rows: Vec<(String, String, i64, i64)> = pending
            .deltas
            .iter()
            .filter_map(|((t, idx, ws), d)| {
                Some((t.to_string(), catalog.name(*idx)?.to_owned(), *ws, *d))
            })
            .collect();
        let rates: Vec<(String, String, i64, i64)> = pending
            .rates
            .iter()
            .filter_map(|((t, idx), tat)| {
                Some((
                    t.to_string(),
                    catalog.name(*idx)?.to_owned(),
                    RATE_WINDOW,
                    *tat,
                ))
            })
            .collect();
        let ttl = i64::try_from(self.settings.consume_key_ttl.as_micros()).unwrap_or(i64::MAX);
        let txn = shared::db::begin_write(&self.db).await?;
        let backend = txn.get_database_backend();
        for chunk in pending.keys.iter().flat_map(|k| k.chunks(CHUNK)) {
            let mut n = 0;
            let mut sql = String::from(
                "INSERT INTO quota_consume_keys (tenant_id, key_hash, answer, expires_at) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
            for (i, k) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                placeholders(&mut sql, backend, &mut n, 4);
                values.extend([
                    k.tenant.to_string().into(),
                    format!("{:032x}", k.key).into(),
                    encode(&k.remembered).into(),
                    k.at.saturating_add(ttl).into(),
                ]);
            }
            sql.push_str(" ON CONFLICT (tenant_id, key_hash) DO NOTHING");
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        // Counters last: metered usage updates the same rows, and waits for
        // their locks only from here to the commit, not through the keys
        // (up to a million of them after a burst).
        add_counters(&txn, &rows).await?;
        upsert_counters(&txn, &rates, Merge::Latest).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Reads the counters of current windows, GAUGE levels and unexpired
    /// consume keys back into the in-memory limiter. Returns how many of each.
    pub async fn restore(&self) -> Result<(usize, usize)> {
        if !self.in_memory() {
            return Ok((0, 0));
        }
        let now = window::micros(Utc::now());
        let catalog = self.catalog();
        let backend = self.db.get_database_backend();
        let (p1, p2) = if backend == DbBackend::Postgres {
            ("$1", "$2")
        } else {
            ("?", "?")
        };
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT tenant_id, metric, window_start, used FROM quota_counters \
                     WHERE window_start = 0 OR window_start >= {p1} \
                     OR (window_start = {RATE_WINDOW} AND used > {p2})"
                ),
                [(now - COUNTER_KEEP_US).into(), now.into()],
            ))
            .await?;
        let mut counters = 0;
        for r in rows {
            let t: String = r.try_get("", "tenant_id")?;
            let m: String = r.try_get("", "metric")?;
            let (Ok(t), Some(e)) = (t.parse::<Uuid>(), catalog.get(&m)) else {
                continue;
            };
            let start: i64 = r.try_get("", "window_start")?;
            let used: i64 = r.try_get("", "used")?;
            if start == RATE_WINDOW {
                self.memory.restore_rate(t, e.idx, used);
            } else {
                self.memory.restore_counter(t, e.idx, start, used);
            }
            counters += 1;
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT tenant_id, key_hash, answer FROM quota_consume_keys WHERE expires_at > {p1}"
                ),
                [now.into()],
            ))
            .await?;
        let mut keys = 0;
        for r in rows {
            let t: String = r.try_get("", "tenant_id")?;
            let k: String = r.try_get("", "key_hash")?;
            let a: String = r.try_get("", "answer")?;
            if let (Ok(t), Ok(k), Some(a)) =
                (t.parse::<Uuid>(), u128::from_str_radix(&k, 16), decode(&a))
            {
                self.memory.restore_key(t, k, a);
                keys += 1;
            }
        }
        Ok((counters, keys))
    }

    /// Forgets expired consume keys and counters of windows long past.
    pub async fn purge_limiter_rows(&self) -> Result<u64> {
        let now = window::micros(Utc::now());
        let backend = self.db.get_database_backend();
        let (p1, p2) = if backend == DbBackend::Postgres {
            ("$1", "$2")
        } else {
            ("?", "?")
        };
        let keys = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!("DELETE FROM quota_consume_keys WHERE expires_at <= {p1}"),
                [now.into()],
            ))
            .await?;
        let counters = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "DELETE FROM quota_counters WHERE (window_start > 0 AND window_start < {p1}) \
                     OR (window_start = {RATE_WINDOW} AND used < {p2})"
                ),
                [(now - COUNTER_KEEP_US).into(), now.into()],
            ))
            .await?;
        Ok(keys.rows_affected() + counters.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_encoding() {
        let r = Remembered {
            fingerprint: u64::MAX - 3,
            outcome: Outcome {
                allowed: false,
                limit: 10,
                remaining: 0,
                reset_at: Some(1_800_000_000_000_000),
                retry_after_us: None,
                overage: 0,
                used: 10,
            },
        };
        assert_eq!(decode(&encode(&r)), Some(r));
    }
}
