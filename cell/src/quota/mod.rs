//! Quota enforcement and metering in the cell: the metric catalog as synced
//! from the global tier, each tenant's rules (plan defaults and overrides),
//! the limiter (in memory for one replica, Redis for several) and usage
//! ingestion.

pub mod catalog;
pub mod memory;
pub mod redis;
pub mod settings;
pub mod usage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use shared::ids::TenantId;
use shared::metrics::Metrics;
use shared::model::TenantStatus;
use shared::quota::api::Quota;
use shared::quota::decide::Outcome;
use shared::quota::hooks::Decision;
use shared::quota::{FailMode, Kind, MetricDef, Rule, Source, plans, store, window};
use shared::sync::outbox::Relay;
use shared::{Error, Result};
use uuid::Uuid;

pub use settings::{LimiterKind, Settings};

use self::memory::{Ask, Memory};
use self::redis::RedisLimiter;
use crate::service::quotas;

/// How long a tenant's rules are cached before they are read again (a
/// change made through this replica applies at once).
const POLICY_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Entry {
    idx: u32,
    kind: Kind,
    fail_mode: FailMode,
}

/// A tenant's plan and overrides.
#[derive(Debug)]
pub struct Policy {
    plan: String,
    deleted: bool,
    overrides: HashMap<String, (Option<Rule>, i64)>,
    loaded: Instant,
}

impl Policy {
    /// The tenant's rule on `metric` and where it comes from.
    fn rule(&self, metric: &str) -> Option<(Rule, Source)> {
        match self.overrides.get(metric) {
            Some((Some(r), _)) => Some((*r, Source::Override)),
            _ => plans::default_for(&self.plan, metric).map(|r| (r, Source::Plan)),
        }
    }
}

struct Meters {
    allowed: prometheus::IntCounter,
    denied: prometheus::IntCounter,
    unavailable: prometheus::IntCounterVec,
}

pub struct Engine {
    db: DatabaseConnection,
    cell_id: String,
    relay: Relay,
    pub settings: Settings,
    catalog: RwLock<HashMap<String, Entry>>,
    next_idx: AtomicU32,
    tenants: RwLock<HashMap<Uuid, Arc<Policy>>>,
    memory: Memory,
    redis: Option<RedisLimiter>,
    meters: Meters,
}

fn now_micros() -> i64 {
    window::micros(Utc::now())
}

fn at(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
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
        let decisions = metrics.counter_vec(
            "quota_decisions_total",
            "Quota consume decisions, by outcome (allowed, denied)",
            &["outcome"],
        );
        Ok(Self {
            db,
            cell_id: cell_id.to_owned(),
            relay,
            memory: Memory::new(settings.consume_key_ttl, settings.consume_keys_max),
            redis,
            settings,
            catalog: RwLock::new(HashMap::new()),
            next_idx: AtomicU32::new(0),
            tenants: RwLock::new(HashMap::new()),
            meters: Meters {
                allowed: decisions.with_label_values(&["allowed"]),
                denied: decisions.with_label_values(&["denied"]),
                unavailable: metrics.counter_vec(
                    "quota_store_unavailable_total",
                    "Decisions taken without the shared limiter store (Redis), by metric and decision (allowed: fail-open, denied: fail-closed)",
                    &["metric", "decision"],
                ),
            },
        })
    }

    /// Reloads the catalog from this cell's database.
    pub async fn reload_catalog(&self) -> Result<()> {
        let all = store::all(&self.db).await?;
        let mut map = self.catalog.write().unwrap_or_else(|p| p.into_inner());
        for s in all {
            let idx = map
                .get(&s.def.name)
                .map(|e| e.idx)
                .unwrap_or_else(|| self.next_idx.fetch_add(1, Ordering::Relaxed));
            map.insert(
                s.def.name.clone(),
                Entry {
                    idx,
                    kind: s.def.kind,
                    fail_mode: s.def.fail_mode,
                },
            );
        }
        Ok(())
    }

    fn metric(&self, name: &str) -> Result<Entry> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
            .ok_or_else(|| Error::bad_input("metric", format!("unknown metric `{name}`")))
    }

    /// Forgets the cached rules of `tenant` (after its quotas changed).
    pub fn invalidate(&self, tenant: Uuid) {
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tenant);
    }

    /// The tenant's plan and overrides, cached.
    pub async fn policy(&self, tenant: Uuid) -> Result<Arc<Policy>> {
        if let Some(p) = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            && p.loaded.elapsed() < POLICY_TTL
        {
            return Ok(p.clone());
        }
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
        let p = Arc::new(Policy {
            plan: row.plan,
            deleted: row.status == TenantStatus::Deleted.as_str(),
            overrides,
            loaded: Instant::now(),
        });
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, p.clone());
        Ok(p)
    }

    /// A check (`dry`) or a consume. A consume needs an idempotency key; a
    /// retry with it answers the first decision and counts nothing.
    pub async fn decide(
        &self,
        tenant: Uuid,
        metric: &str,
        amount: i64,
        key: Option<&str>,
        dry: bool,
    ) -> Result<Decision> {
        if amount <= 0 {
            return Err(Error::bad_input(
                "amount",
                format!("amount must be positive, got {amount}"),
            ));
        }
        let key = if dry {
            None
        } else {
            match key {
                Some(k) if !k.is_empty() && k.len() <= 128 => Some(k),
                _ => {
                    return Err(Error::bad_input(
                        "idempotencyKey",
                        "consume needs an idempotencyKey of 1 to 128 characters",
                    ));
                }
            }
        };
        let entry = self.metric(metric)?;
        let policy = self.policy(tenant).await?;
        if policy.deleted {
            return Err(Error::NotFound(format!("tenant {tenant} is deleted")));
        }
        let Some((rule, _)) = policy.rule(metric) else {
            return Ok(Decision {
                allowed: true,
                limit: None,
                remaining: None,
                reset_at: None,
                retry_after_ms: None,
                overage: 0,
            });
        };
        let (o, _) = self
            .apply(tenant, metric, entry, &rule, amount, key, dry)
            .await;
        if !dry {
            if o.allowed {
                self.meters.allowed.inc();
            } else {
                self.meters.denied.inc();
            }
        }
        Ok(Decision {
            allowed: o.allowed,
            limit: Some(o.limit),
            remaining: Some(o.remaining),
            reset_at: o.reset_at.and_then(at),
            retry_after_ms: o.retry_after_us.map(|us| (us + 999) / 1000),
            overage: o.overage,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        tenant: Uuid,
        metric: &str,
        entry: Entry,
        rule: &Rule,
        amount: i64,
        key: Option<&str>,
        dry: bool,
    ) -> (Outcome, bool) {
        let now = now_micros();
        let window = rule
            .period
            .filter(|_| entry.kind == Kind::Periodic)
            .map(|p| {
                let (s, e) = window::bounds(p, Utc::now());
                (window::micros(s), window::micros(e))
            });
        let ask = Ask {
            tenant,
            metric: entry.idx,
            kind: entry.kind,
            rule,
            amount,
            now,
            window,
            key,
            dry,
        };
        let Some(redis) = &self.redis else {
            return self.memory.apply(&ask);
        };
        match redis.apply(&ask, metric).await {
            Ok(r) => r,
            Err(e) => {
                let allowed = entry.fail_mode == FailMode::Open;
                self.meters
                    .unavailable
                    .with_label_values(&[metric, if allowed { "allowed" } else { "denied" }])
                    .inc();
                tracing::debug!(error = %e.0, metric, allowed, "limiter store unreachable");
                (
                    Outcome {
                        allowed,
                        limit: rule.limit,
                        remaining: 0,
                        reset_at: None,
                        retry_after_us: (!allowed).then_some(1_000_000),
                        overage: 0,
                        used: 0,
                    },
                    false,
                )
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
            let Some((rule, source)) = policy.rule(&name) else {
                continue;
            };
            let Ok(entry) = self.metric(&name) else {
                continue;
            };
            let (o, _) = self.apply(tenant, &name, entry, &rule, 0, None, true).await;
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

/// Starts the catalog consumer and resync, and the purge of expired usage keys.
pub fn spawn(
    st: crate::State,
    global: Option<(shared::client::GraphqlClient, String)>,
    claim_idle: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = catalog::spawn(st.clone(), global, claim_idle, shutdown.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            match st.quota.purge_keys().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired usage keys forgotten"),
                Err(e) => tracing::warn!(error = %e, "usage key purge failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }));
    tasks
}
