//! Quota enforcement and metering in the cell: the metric catalog as synced
//! from the global tier, each tenant's rules (plan defaults and overrides),
//! the limiter (in memory for one replica, Redis for several) and usage
//! ingestion.

pub mod catalog;
pub mod memory;
pub mod meters;
pub mod persist;
pub mod redis;
pub mod settings;
pub mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use sea_orm::DatabaseConnection;
use shared::ids::TenantId;
use shared::metrics::Metrics;
use shared::model::TenantStatus;
use shared::quota::api::Quota;
use shared::quota::decide::Outcome;
use shared::quota::hooks::{Decision, MAX_AMOUNT, Refusal};
use shared::quota::window::Windows;
use shared::quota::{FailMode, Kind, MetricDef, Rule, store, window};
use shared::sync::outbox::Relay;
use shared::{Error, Result};
use uuid::Uuid;

pub use memory::{Op, Policy};
pub use settings::{LimiterKind, Settings};

use self::memory::{Ask, Memory, Step};
use self::meters::Meters;
use self::redis::{RedisLimiter, RedisStep};
use crate::service::quotas;

/// How long a tenant's rules are cached before they are read again (a
/// change made through this replica applies at once).
const POLICY_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub idx: u32,
    pub kind: Kind,
    pub fail_mode: FailMode,
}

/// The metric catalog as the engine reads it: by name, and the names by index.
#[derive(Default)]
pub struct Catalog {
    by_name: FxHashMap<Box<str>, Entry>,
    names: Vec<Box<str>>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, idx: u32) -> Option<&str> {
        self.names.get(idx as usize).map(|n| &**n)
    }
}

pub struct Engine {
    db: DatabaseConnection,
    cell_id: String,
    relay: Relay,
    pub settings: Settings,
    catalog: ArcSwap<Catalog>,
    next_idx: AtomicU32,
    memory: Arc<Memory>,
    windows: Windows,
    redis: Option<RedisLimiter>,
    meters: Meters,
    /// The tenants not served now (not ACTIVE), kept by `crate::directory`.
    pub statuses: crate::directory::Statuses,
}

fn now_micros() -> i64 {
    window::micros(Utc::now())
}

fn at(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

/// The hash an idempotency key is remembered by (per tenant).
pub fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

/// What tells two requests with one key apart: the operation, the metric
/// and the amount (the tenant scopes the key).
pub fn fingerprint(op: Op, metric: &str, amount: i64) -> u64 {
    let mut buf = [0u8; 9 + 64];
    buf[0] = op as u8;
    buf[1..9].copy_from_slice(&amount.to_le_bytes());
    let n = metric.len().min(64);
    buf[9..9 + n].copy_from_slice(&metric.as_bytes()[..n]);
    xxhash_rust::xxh3::xxh3_64(&buf[..9 + n])
}

/// What [`Engine::evaluate`] found.
enum Found {
    Decided(Outcome),
    /// The tenant has no limit on the metric.
    Unlimited,
    /// The tenant's rules could not be read: the metric's fail mode decided.
    RulesUnreadable {
        allowed: bool,
    },
}

fn unlimited() -> Decision {
    Decision {
        allowed: true,
        limit: None,
        remaining: None,
        reset_at: None,
        retry_after_ms: None,
        overage: 0,
        reason: None,
    }
}

/// The answer for a tenant the data plane does not serve now.
fn refused(reason: Refusal) -> Decision {
    Decision {
        allowed: false,
        reason: Some(reason),
        ..unlimited()
    }
}

impl Engine {
    pub fn new(
        db: DatabaseConnection,
        cell_id: &str,
        relay: Relay,
        settings: Settings,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let redis = match settings.limiter {
            LimiterKind::Memory => None,
            LimiterKind::Redis => Some(
                RedisLimiter::new(
                    settings
                        .redis_url
                        .as_deref()
                        .ok_or_else(|| anyhow::anyhow!("the redis limiter needs a redis url"))?,
                    &settings.redis_prefix,
                    settings.redis_timeout,
                    settings.consume_key_ttl,
                )
                .map_err(anyhow::Error::msg)?,
            ),
        };
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let memory = Arc::new(Memory::new(
            micros(settings.consume_key_ttl),
            settings.consume_keys_max,
            settings.limiter == LimiterKind::Memory,
            micros(POLICY_TTL),
        ));
        let meters = Meters::new(metrics, memory.clone());
        Ok(Self {
            db,
            cell_id: cell_id.to_owned(),
            relay,
            memory,
            windows: Windows::default(),
            redis,
            settings,
            catalog: ArcSwap::from_pointee(Catalog::default()),
            next_idx: AtomicU32::new(0),
            meters,
            statuses: crate::directory::Statuses::default(),
        })
    }

    /// Whether limiter state lives in this process (and is persisted to the database).
    pub fn in_memory(&self) -> bool {
        self.redis.is_none()
    }

    /// Reloads the catalog from this cell's database.
    pub async fn reload_catalog(&self) -> Result<()> {
        let all = store::all(&self.db).await?;
        let old = self.catalog.load_full();
        let mut by_name = old.by_name.clone();
        let mut names = old.names.clone();
        for s in all {
            let idx = match by_name.get(s.def.name.as_str()) {
                Some(e) => e.idx,
                None => {
                    let i = self.next_idx.fetch_add(1, Ordering::Relaxed);
                    names.push(s.def.name.clone().into_boxed_str());
                    i
                }
            };
            by_name.insert(
                s.def.name.clone().into_boxed_str(),
                Entry {
                    idx,
                    kind: s.def.kind,
                    fail_mode: s.def.fail_mode,
                },
            );
        }
        self.catalog.store(Arc::new(Catalog { by_name, names }));
        Ok(())
    }

    /// The catalog as the engine reads it now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    fn metric(&self, name: &str) -> Result<Entry> {
        self.catalog
            .load()
            .get(name)
            .ok_or_else(|| Error::bad_input("metric", format!("unknown metric `{name}`")))
    }

    /// Forgets the cached rules of `tenant` (after its quotas changed).
    pub fn invalidate(&self, tenant: Uuid) {
        self.memory.forget_policy(tenant);
    }

    /// Reads the tenant's plan and overrides and caches them.
    async fn load_policy(&self, tenant: Uuid) -> Result<Arc<Policy>> {
        use sea_orm::EntityTrait;
        let row = crate::entity::tenant::Entity::find_by_id(tenant)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {tenant} not found in this cell")))?;
        let overrides = quotas::overrides(&self.db, TenantId(tenant))
            .await?
            .into_iter()
            .map(|(m, r, v)| (m, (r, v)))
            .collect();
        let p = Arc::new(Policy::new(
            row.plan,
            row.status == TenantStatus::Deleted.as_str(),
            overrides,
            &self.catalog.load().names,
            now_micros(),
        ));
        self.memory.put_policy(tenant, p.clone());
        Ok(p)
    }

    /// The tenant's plan and overrides, cached.
    pub async fn policy(&self, tenant: Uuid) -> Result<Arc<Policy>> {
        match self.memory.policy(tenant, now_micros()) {
            Some(p) => Ok(p),
            None => self.load_policy(tenant).await,
        }
    }

    /// A check, a consume or a release (GAUGE only). A consume or release
    /// needs an idempotency key: a retry with it answers the first decision
    /// and counts nothing; the same key with another metric, amount or
    /// operation is a CONFLICT. A tenant that is not ACTIVE is refused
    /// (`reason`), whatever its limits, and nothing is counted.
    pub async fn decide(
        &self,
        tenant: Uuid,
        metric: &str,
        amount: i64,
        key: Option<&str>,
        op: Op,
    ) -> Result<Decision> {
        if !(1..=MAX_AMOUNT).contains(&amount) {
            return Err(Error::bad_input(
                "amount",
                format!("amount must be 1 to {MAX_AMOUNT}, got {amount}"),
            ));
        }
        let key = match (op, key) {
            (Op::Check, _) => None,
            (_, Some(k)) if !k.is_empty() && k.len() <= 128 => Some(key_hash(k)),
            _ => {
                return Err(Error::bad_input(
                    "idempotencyKey",
                    "consume and release need an idempotencyKey of 1 to 128 characters",
                ));
            }
        };
        let entry = self.metric(metric)?;
        if op == Op::Release && entry.kind != Kind::Gauge {
            return Err(Error::bad_input(
                "metric",
                format!("only GAUGE metrics can be released; `{metric}` is not one"),
            ));
        }
        if let Some(reason) = self.statuses.inactive(tenant).and_then(Refusal::of) {
            return Ok(refused(reason));
        }
        let fp = fingerprint(op, metric, amount);
        match self
            .evaluate(tenant, metric, entry, amount, key, fp, op, false)
            .await?
        {
            Found::Decided(o) => Ok(Decision {
                allowed: o.allowed,
                limit: Some(o.limit),
                remaining: Some(o.remaining),
                reset_at: o.reset_at.and_then(at),
                retry_after_ms: o.retry_after_us.map(|us| us.saturating_add(999) / 1000),
                overage: o.overage,
                reason: None,
            }),
            Found::Unlimited => Ok(unlimited()),
            // The limit is unknown: limit and remaining stay null.
            Found::RulesUnreadable { allowed } => Ok(Decision {
                allowed,
                retry_after_ms: (!allowed).then_some(1000),
                ..unlimited()
            }),
        }
    }

    /// The outcome, none when the tenant has no limit on the metric, or the
    /// metric's fail mode when the tenant's rules cannot be read (the
    /// cell's database does not answer; `deleted_ok` reads get the error).
    #[allow(clippy::too_many_arguments)]
    async fn evaluate(
        &self,
        tenant: Uuid,
        metric: &str,
        entry: Entry,
        amount: i64,
        key: Option<u128>,
        fingerprint: u64,
        op: Op,
        deleted_ok: bool,
    ) -> Result<Found> {
        for _ in 0..3 {
            let ask = Ask {
                tenant,
                metric: entry.idx,
                name: metric,
                kind: entry.kind,
                amount,
                now: now_micros(),
                key,
                fingerprint,
                op,
                deleted_ok,
            };
            match self.memory.apply(&ask, &self.windows, self.redis.is_none()) {
                Step::Decided { outcome, rule, .. } => {
                    return match &self.redis {
                        None => Ok(Found::Decided(outcome)),
                        Some(r) => self.remote(r, &ask, entry, &rule).await.map(Found::Decided),
                    };
                }
                Step::Unlimited => return Ok(Found::Unlimited),
                Step::Deleted => {
                    return Err(Error::NotFound(format!("tenant {tenant} is deleted")));
                }
                Step::Conflict => return Err(conflict()),
                Step::Unknown => match self.load_policy(tenant).await {
                    Ok(_) => {}
                    Err(e @ (Error::Unavailable(_) | Error::Internal(_))) if !deleted_ok => {
                        let allowed = entry.fail_mode == FailMode::Open;
                        self.meters.unavailable(metric, allowed);
                        // Counted above; an unexpected error is logged too.
                        if matches!(e, Error::Internal(_)) {
                            tracing::warn!(error = %e, metric, allowed, "tenant rules unreadable; the metric's fail mode decides");
                        } else {
                            tracing::debug!(error = %e, metric, allowed, "tenant rules unreadable; the metric's fail mode decides");
                        }
                        return Ok(Found::RulesUnreadable { allowed });
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        Err(Error::Unavailable(format!(
            "the rules of tenant {tenant} keep changing; retry"
        )))
    }

    /// A decision in Redis; the metric's fail mode decides when Redis does not answer.
    async fn remote(
        &self,
        redis: &RedisLimiter,
        ask: &Ask<'_>,
        entry: Entry,
        rule: &Rule,
    ) -> Result<Outcome> {
        let window = match (entry.kind, rule.period) {
            (Kind::Periodic, Some(p)) => Some(self.windows.get(p, ask.now)),
            _ => None,
        };
        match redis.apply(ask, rule, window).await {
            Ok(RedisStep::Decided(o, replay)) => {
                if ask.op != Op::Check && !replay {
                    self.meters.decided(o.allowed);
                }
                Ok(o)
            }
            Ok(RedisStep::Conflict) => Err(conflict()),
            Err(e) => {
                let allowed = entry.fail_mode == FailMode::Open;
                self.meters.unavailable(ask.name, allowed);
                tracing::debug!(error = %e.0, metric = ask.name, allowed, "limiter store unreachable");
                Ok(Outcome {
                    allowed,
                    limit: rule.limit,
                    remaining: 0,
                    reset_at: None,
                    retry_after_us: (!allowed).then_some(1_000_000),
                    overage: 0,
                    used: 0,
                })
            }
        }
    }

    /// Every metric the tenant has a limit on, where it stands now.
    pub async fn quotas(&self, tenant: Uuid) -> Result<Vec<Quota>> {
        self.invalidate(tenant);
        let policy = self.policy(tenant).await?;
        let mut out = Vec::new();
        for s in store::all(&self.db).await? {
            let MetricDef { name, kind, .. } = s.def;
            let Ok(entry) = self.metric(&name) else {
                continue;
            };
            let Some((rule, source)) = policy.rule(entry.idx, &name) else {
                continue;
            };
            let Found::Decided(o) = self
                .evaluate(tenant, &name, entry, 0, None, 0, Op::Check, true)
                .await?
            else {
                continue;
            };
            out.push(Quota {
                kind,
                limit: rule.limit,
                period: rule.period,
                burst: (kind == Kind::Rate).then(|| rule.burst()),
                enforcement: rule.enforcement,
                used: o.used,
                remaining: o.remaining,
                reset_at: o.reset_at.and_then(at),
                source,
                version: policy.overrides.get(&name).map(|(_, v)| *v).unwrap_or(0),
                metric: name,
            });
        }
        Ok(out)
    }
}

fn conflict() -> Error {
    Error::Conflict("this idempotency key was used with another metric, amount or operation".into())
}

/// Starts the purge of expired usage keys (the catalog is followed as a
/// synced kind: [`catalog::Catalog`]).
pub fn spawn(
    st: crate::State,
    shutdown: tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let (engine, stop) = (st.quota.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            match engine.purge_keys().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired usage keys forgotten"),
                Err(e) => tracing::warn!(error = %e, "usage key purge failed"),
            }
            if engine.in_memory()
                && let Err(e) = engine.purge_limiter_rows().await
            {
                tracing::warn!(error = %e, "limiter row purge failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }));
    if st.quota.in_memory() {
        let (engine, stop) = (st.quota.clone(), shutdown);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(engine.settings.persist_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    // The last flush runs when the cell stops (`App::stop`), after requests drained.
                    _ = stop.cancelled() => return,
                }
                if let Err(e) = engine.flush().await {
                    tracing::warn!(error = %e, "limiter state not persisted; retried at the next flush");
                }
            }
        }));
    }
    tasks
}
