//! Usage ingestion: each event is deduplicated by its idempotency key in the
//! same transaction that adds it to the tenant's hourly total and enqueues
//! the new total for the global tier, so a crash can neither count an event
//! twice nor lose one the client was told was accepted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};
use shared::model::TenantStatus;
use shared::quota::hooks::{
    MAX_AMOUNT, MAX_EVENTS, Refusal, Status, UsageAnswer, UsageEvent, UsageResult,
};
use shared::quota::{self, Kind, Period, Rollup, window};
use shared::sync::{Event, outbox};
use shared::{Error, Result};
use uuid::Uuid;

use super::{Engine, Policy};

/// Checks the batch's shape; any problem refuses the whole batch. Returns
/// each event's tenant.
pub fn validate(events: &[UsageEvent]) -> Result<Vec<Uuid>> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(Error::bad_input(
            "events",
            format!("send 1 to {MAX_EVENTS} events, got {}", events.len()),
        ));
    }
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            match e.idempotency_key.as_deref() {
                Some(k) if !k.is_empty() && k.len() <= 128 => {}
                _ => {
                    return Err(Error::bad_input(
                        format!("events[{i}].idempotencyKey"),
                        "every event needs an idempotencyKey of 1 to 128 characters",
                    ));
                }
            }
            if e.amount <= 0 {
                return Err(Error::bad_input(
                    format!("events[{i}].amount"),
                    format!("amount must be positive, got {}", e.amount),
                ));
            }
            e.tenant_id.parse::<Uuid>().map_err(|_| {
                Error::bad_input(
                    format!("events[{i}].tenantId"),
                    format!("`{}` is not a tenant id", e.tenant_id),
                )
            })
        })
        .collect()
}

/// `usage_totals.amount + excluded.amount`, held at the largest BIGINT
/// instead of overflowing (an error on PostgreSQL, a float on SQLite).
const SATURATING_ADD: &str = "CASE WHEN excluded.amount <= 0 THEN usage_totals.amount \
     WHEN usage_totals.amount > 9223372036854775807 - excluded.amount \
     THEN 9223372036854775807 ELSE usage_totals.amount + excluded.amount END";

fn placeholder(backend: DbBackend, n: &mut usize) -> String {
    *n += 1;
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".into(),
    }
}

struct Fresh<'a> {
    index: usize,
    tenant: Uuid,
    event: &'a UsageEvent,
    hour: i64,
    /// The PERIODIC counter it adds to: (metric index, window start, end),
    /// when the event falls in the tenant's current window.
    counter: Option<(u32, i64, i64)>,
}

impl Engine {
    /// Why an event cannot count, if it cannot; else the tenant's rules.
    /// Fails (the whole batch) when the rules cannot be read.
    async fn reject(
        &self,
        tenant: Uuid,
        e: &UsageEvent,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<Arc<Policy>, String>> {
        if e.amount > MAX_AMOUNT {
            return Ok(Err(format!(
                "AMOUNT_TOO_LARGE: an event counts at most {MAX_AMOUNT}, got {}",
                e.amount
            )));
        }
        if self.metric(&e.metric).is_err() {
            return Ok(Err(format!("unknown metric `{}`", e.metric)));
        }
        // Metering is the truth: a SUSPENDED or DEPROVISIONING tenant's
        // usage still counts; a deleted (or purged) one's cannot.
        if let Some(TenantStatus::Deleted) = self.statuses.inactive(tenant) {
            return Ok(Err(Refusal::TenantDeleted.as_str().to_owned()));
        }
        let policy = match self.policy(tenant).await {
            Ok(p) if p.deleted => return Ok(Err(Refusal::TenantDeleted.as_str().to_owned())),
            Ok(p) => p,
            Err(Error::NotFound(_)) => {
                return Ok(Err(format!("tenant {tenant} is not in this cell")));
            }
            // The database does not answer: the whole batch fails, to be
            // sent again, rather than events answered as rejected for good.
            Err(e) => return Err(e),
        };
        let skew = chrono::Duration::from_std(self.settings.usage_max_skew).unwrap_or_default();
        let late = chrono::Duration::from_std(self.settings.usage_max_lateness).unwrap_or_default();
        if e.timestamp > now + skew {
            return Ok(Err(format!(
                "timestamp {} is in the future beyond the allowed skew of {}s",
                e.timestamp,
                skew.num_seconds()
            )));
        }
        if e.timestamp < now - late {
            return Ok(Err(format!(
                "timestamp {} is later than the allowed lateness of {}s",
                e.timestamp,
                late.num_seconds()
            )));
        }
        Ok(Ok(policy))
    }

    /// The PERIODIC counter an event adds to, if it falls in the current window.
    fn counter_of(&self, p: &Policy, e: &UsageEvent, now: i64) -> Option<(u32, i64, i64)> {
        let entry = self.metric(&e.metric).ok()?;
        if entry.kind != Kind::Periodic {
            return None;
        }
        let period = p.rule(entry.idx, &e.metric)?.0.period?;
        let (start, end) = self.windows.get(period, now);
        let ts = window::micros(e.timestamp);
        (start <= ts && ts < end).then_some((entry.idx, start, end))
    }

    /// Counts a validated batch; answers each event in order.
    pub async fn ingest(&self, events: &[UsageEvent], tenants: &[Uuid]) -> Result<UsageAnswer> {
        let now = Utc::now();
        let now_us = window::micros(now);
        let mut results: Vec<UsageResult> = Vec::with_capacity(events.len());
        let mut fresh: Vec<Fresh<'_>> = Vec::new();
        let mut in_batch: HashSet<(Uuid, &str)> = HashSet::new();
        for (i, (e, t)) in events.iter().zip(tenants).enumerate() {
            let key = e.idempotency_key.as_deref().unwrap_or_default();
            let mut result = UsageResult {
                idempotency_key: key.to_owned(),
                status: Status::Accepted,
                reason: None,
            };
            match self.reject(*t, e, now).await? {
                Err(reason) => {
                    result.status = Status::Rejected;
                    result.reason = Some(reason);
                }
                Ok(_) if !in_batch.insert((*t, key)) => {
                    result.status = Status::Duplicate;
                    result.reason = Some("the same key came earlier in this batch".into());
                }
                Ok(policy) => fresh.push(Fresh {
                    index: i,
                    tenant: *t,
                    event: e,
                    hour: window::bounds(Period::Hour, e.timestamp).0.timestamp(),
                    counter: self.counter_of(&policy, e, now_us),
                }),
            }
            results.push(result);
        }
        if fresh.is_empty() {
            return Ok(UsageAnswer { results });
        }
        // One lock order for every transaction: no deadlock between batches.
        fresh.sort_by(|a, b| {
            (a.tenant, a.event.idempotency_key.as_deref())
                .cmp(&(b.tenant, b.event.idempotency_key.as_deref()))
        });
        let txn = self.db.begin().await?;
        let inserted = self.insert_keys(&txn, &fresh, now).await?;
        let mut totals: BTreeMap<(Uuid, &str, i64), i64> = BTreeMap::new();
        let mut counters: BTreeMap<(Uuid, &str, u32, i64, i64), i64> = BTreeMap::new();
        for f in &fresh {
            let key = f.event.idempotency_key.as_deref().unwrap_or_default();
            if inserted.contains(&(f.tenant, key.to_owned())) {
                let total = totals
                    .entry((f.tenant, &f.event.metric, f.hour))
                    .or_default();
                *total = total.saturating_add(f.event.amount);
                if let Some((idx, start, end)) = f.counter {
                    let c = counters
                        .entry((f.tenant, &f.event.metric, idx, start, end))
                        .or_default();
                    *c = c.saturating_add(f.event.amount);
                }
            } else {
                results[f.index].status = Status::Duplicate;
                results[f.index].reason = Some("already counted".into());
            }
        }
        for ((tenant, metric, hour), amount) in totals {
            self.add(&txn, tenant, metric, hour, amount).await?;
        }
        if self.in_memory() {
            // Metered usage counts against PERIODIC limits, durably with the event.
            let rows: Vec<(String, String, i64, i64)> = counters
                .iter()
                .map(|((t, m, _, start, _), a)| (t.to_string(), (*m).to_owned(), *start, *a))
                .collect();
            super::persist::add_counters(&txn, &rows).await?;
        }
        txn.commit().await?;
        self.relay.nudge();
        for ((tenant, metric, idx, start, end), amount) in counters {
            match &self.redis {
                None => self.memory.add_usage(tenant, idx, start, amount),
                Some(r) => {
                    if let Err(e) = r
                        .add_usage(tenant, metric, (start, end), amount, now_us)
                        .await
                    {
                        self.meters.usage_unapplied(metric);
                        tracing::warn!(error = %e.0, metric, %tenant,
                            "metered usage not added to the shared limiter (Redis unreachable)");
                    }
                }
            }
        }
        Ok(UsageAnswer { results })
    }

    async fn insert_keys<C: ConnectionTrait>(
        &self,
        txn: &C,
        fresh: &[Fresh<'_>],
        now: DateTime<Utc>,
    ) -> Result<HashSet<(Uuid, String)>> {
        let backend = txn.get_database_backend();
        let mut n = 0;
        let mut sql = String::from(
            "INSERT INTO usage_dedup (tenant_id, idempotency_key, metric, amount, received_at) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(fresh.len() * 5);
        let received = window::micros(now);
        for (i, f) in fresh.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let ph: Vec<String> = (0..5).map(|_| placeholder(backend, &mut n)).collect();
            sql.push_str(&format!("({})", ph.join(",")));
            values.push(f.tenant.to_string().into());
            values.push(f.event.idempotency_key.clone().unwrap_or_default().into());
            values.push(f.event.metric.clone().into());
            values.push(f.event.amount.into());
            values.push(received.into());
        }
        sql.push_str(
            " ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING tenant_id, idempotency_key",
        );
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        rows.into_iter()
            .map(|r| {
                let t: String = r.try_get("", "tenant_id")?;
                let k: String = r.try_get("", "idempotency_key")?;
                Ok((t.parse().map_err(Error::internal)?, k))
            })
            .collect()
    }

    async fn add<C: ConnectionTrait>(
        &self,
        txn: &C,
        tenant: Uuid,
        metric: &str,
        hour: i64,
        amount: i64,
    ) -> Result<()> {
        let backend = txn.get_database_backend();
        let mut n = 0;
        let ph: Vec<String> = (0..4).map(|_| placeholder(backend, &mut n)).collect();
        let sql = format!(
            "INSERT INTO usage_totals (tenant_id, metric, hour, amount, version) VALUES ({}, {}, {}, {}, 1) \
             ON CONFLICT (tenant_id, metric, hour) DO UPDATE SET amount = {SATURATING_ADD}, \
             version = usage_totals.version + 1 RETURNING amount, version",
            ph[0], ph[1], ph[2], ph[3]
        );
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    tenant.to_string().into(),
                    metric.into(),
                    hour.into(),
                    amount.into(),
                ],
            ))
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("usage upsert returned nothing")))?;
        let total: i64 = row.try_get("", "amount")?;
        let version: i64 = row.try_get("", "version")?;
        let rollup = Rollup {
            tenant_id: tenant,
            metric: metric.to_owned(),
            hour_start: DateTime::from_timestamp(hour, 0).unwrap_or_default(),
            cell_id: self.cell_id.clone(),
            amount: total,
        };
        let event = Event::new(
            quota::USAGE_STREAM,
            &quota::usage_entity(&tenant.to_string(), metric, hour),
            version,
            &self.cell_id,
            serde_json::to_value(&rollup).map_err(Error::internal)?,
        );
        outbox::enqueue(txn, &event).await
    }

    /// The tenant's counted usage of `metric` in this cell: hour (epoch seconds) → amount.
    pub async fn totals(&self, tenant: Uuid, metric: &str) -> Result<HashMap<i64, i64>> {
        let backend = self.db.get_database_backend();
        let mut n = 0;
        let a = placeholder(backend, &mut n);
        let b = placeholder(backend, &mut n);
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT hour, amount FROM usage_totals WHERE tenant_id = {a} AND metric = {b}"
                ),
                [tenant.to_string().into(), metric.into()],
            ))
            .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get("", "hour")?, r.try_get("", "amount")?)))
            .collect()
    }

    /// Forgets usage keys older than the dedup window; returns how many.
    pub async fn purge_keys(&self) -> Result<u64> {
        let cutoff = window::micros(Utc::now())
            - i64::try_from(self.settings.usage_dedup_window.as_micros()).unwrap_or(i64::MAX);
        let backend = self.db.get_database_backend();
        let mut n = 0;
        let p = placeholder(backend, &mut n);
        let res = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!("DELETE FROM usage_dedup WHERE received_at < {p}"),
                [cutoff.into()],
            ))
            .await?;
        Ok(res.rows_affected())
    }
}
