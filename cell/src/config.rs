//! Cell settings: defaults → TOML file → `TENANT_CELL_*` env → flags.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::auth::Keys;
use shared::config::{CommonArgs, Jwt, Overrides};
use shared::ids::{CellId, Region};
use shared::server::Limits;
use shared::telemetry::LogFormat;

pub const ENV_PREFIX: &str = "TENANT_CELL_";

/// A regional cell of the tenant control plane.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "cell", version, about)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<String>,
    /// This cell's id, e.g. us-east-1-a.
    #[arg(long)]
    pub id: Option<String>,
    /// This cell's region, e.g. us-east-1.
    #[arg(long)]
    pub region: Option<String>,
    /// URL the global tier uses to reach this cell (default: http://<listen address>).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// How many tenants this cell may hold.
    #[arg(long)]
    pub capacity: Option<i64>,
    /// URL of the global tier to register with.
    #[arg(long)]
    pub global_url: Option<String>,
    /// Seconds between heartbeats to the global tier.
    #[arg(long)]
    pub heartbeat_interval_secs: Option<u64>,
    /// Milliseconds after which a dead consumer's unacknowledged stream
    /// entries are taken over.
    #[arg(long)]
    pub sync_claim_idle_ms: Option<u64>,
    /// Seconds between resyncs of what the cell holds from the global tier
    /// (registry, flags, metric catalog, break-glass revocations).
    #[arg(long)]
    pub resync_interval_secs: Option<u64>,
    /// Fault injection for tests only: pause before each applied batch commits.
    #[arg(long, hide = true)]
    pub test_apply_delay_ms: Option<u64>,
    /// Where quota limiter state lives: memory (one replica) or redis (several).
    #[arg(long)]
    pub quota_limiter: Option<String>,
    /// Redis of the quota limiter (default: the cell's redis_url).
    #[arg(long)]
    pub quota_redis_url: Option<String>,
    /// Milliseconds between writes of the in-memory limiter's counters and
    /// consume keys to the database (what a crash can lose at most).
    #[arg(long)]
    pub quota_persist_interval_ms: Option<u64>,
    /// Usage events older than this many seconds are rejected.
    #[arg(long)]
    pub usage_max_lateness_secs: Option<u64>,
    /// How long usage idempotency keys are remembered, in seconds.
    #[arg(long)]
    pub usage_dedup_window_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub listen: String,
    pub id: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub capacity: i64,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub global_url: Option<String>,
    pub heartbeat_interval_secs: u64,
    pub jwt: Jwt,
    pub dev_mode: bool,
    pub introspection: bool,
    pub log_format: LogFormat,
    pub limits: Limits,
    /// Most database connections this process opens.
    pub db_pool_size: u32,
    /// Stream entries a consumer left unacknowledged this long are taken
    /// over by another (the first is presumed dead).
    pub sync_claim_idle_ms: u64,
    /// Seconds between resyncs from the global tier (also at start and
    /// after a stream gap).
    pub resync_interval_secs: u64,
    /// Fault injection for tests only: a pause before each applied batch
    /// commits, so a test can kill the cell in the middle of a batch.
    pub test_apply_delay_ms: u64,
    /// `memory` (one replica) or `redis` (several).
    pub quota_limiter: crate::quota::LimiterKind,
    pub quota_redis_url: Option<String>,
    pub quota_persist_interval_ms: u64,
    pub usage_max_lateness_secs: u64,
    pub usage_dedup_window_secs: u64,
}

/// How the cell consumes the global tier's streams.
#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    pub claim_idle: Duration,
    pub resync_every: Duration,
    pub test_apply_delay: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            claim_idle: Duration::from_secs(30),
            resync_every: Duration::from_secs(60),
            test_apply_delay: Duration::ZERO,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8081".into(),
            id: None,
            region: None,
            endpoint: None,
            capacity: 1000,
            database_url: None,
            redis_url: None,
            redis_prefix: "tcp".into(),
            global_url: None,
            heartbeat_interval_secs: 5,
            jwt: Jwt::default(),
            dev_mode: false,
            introspection: false,
            log_format: LogFormat::Json,
            limits: Limits::default(),
            db_pool_size: 16,
            sync_claim_idle_ms: 30_000,
            resync_interval_secs: 60,
            test_apply_delay_ms: 0,
            quota_limiter: crate::quota::LimiterKind::Memory,
            quota_redis_url: None,
            quota_persist_interval_ms: 100,
            usage_max_lateness_secs: 86_400,
            usage_dedup_window_secs: 7 * 86_400,
        }
    }
}

/// Validated settings a cell starts from.
#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    pub cell_id: CellId,
    pub region: Region,
    pub endpoint: Option<String>,
    pub capacity: i64,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub global_url: Option<String>,
    pub heartbeat_interval: Duration,
    pub keys: Arc<Keys>,
    pub dev_mode: bool,
    pub introspection: bool,
    pub limits: Limits,
    /// The sync transport, when the embedder provides one (the dev stack).
    pub transport: Option<Arc<dyn shared::sync::Transport>>,
    /// Most database connections this process opens.
    pub db_pool_size: u32,
    pub sync: SyncSettings,
    pub quota: crate::quota::Settings,
}

impl Args {
    pub fn load(&self) -> Result<Config, String> {
        let mut o = Overrides::default();
        self.common.overrides(&mut o);
        o.set("listen", self.listen.clone())
            .set("id", self.id.clone())
            .set("region", self.region.clone())
            .set("endpoint", self.endpoint.clone())
            .set("capacity", self.capacity)
            .set("global_url", self.global_url.clone())
            .set("heartbeat_interval_secs", self.heartbeat_interval_secs)
            .set("sync_claim_idle_ms", self.sync_claim_idle_ms)
            .set("resync_interval_secs", self.resync_interval_secs)
            .set("test_apply_delay_ms", self.test_apply_delay_ms)
            .set("quota_limiter", self.quota_limiter.clone())
            .set("quota_redis_url", self.quota_redis_url.clone())
            .set("quota_persist_interval_ms", self.quota_persist_interval_ms)
            .set("usage_max_lateness_secs", self.usage_max_lateness_secs)
            .set("usage_dedup_window_secs", self.usage_dedup_window_secs);
        shared::config::load(Config::default(), self.common.config.as_deref(), &o)
    }

    pub fn config_path(&self) -> Option<PathBuf> {
        self.common.config.clone()
    }
}

impl Config {
    pub fn validate(&self) -> Result<Settings, String> {
        let cell_id = CellId::parse(
            self.id
                .as_deref()
                .ok_or("id is required (TENANT_CELL_ID)")?,
        )
        .map_err(|e| e.0)?;
        let region = Region::parse(
            self.region
                .as_deref()
                .ok_or("region is required (TENANT_CELL_REGION)")?,
        )
        .map_err(|e| e.0)?;
        if self.capacity < 1 {
            return Err("capacity must be at least 1".into());
        }
        if self.heartbeat_interval_secs == 0 {
            return Err("heartbeat_interval_secs must be at least 1".into());
        }
        let database_url = self
            .database_url
            .clone()
            .ok_or("database_url is required (TENANT_CELL_DATABASE_URL)")?;
        if let Some(url) = &self.redis_url {
            redis::Client::open(url.as_str()).map_err(|e| format!("invalid redis_url: {e}"))?;
        }
        self.limits.validate()?;
        if self.db_pool_size == 0 {
            return Err("db_pool_size must be at least 1".into());
        }
        if self.resync_interval_secs == 0 {
            return Err("resync_interval_secs must be at least 1".into());
        }
        if self.sync_claim_idle_ms < 100 {
            return Err("sync_claim_idle_ms must be at least 100".into());
        }
        if self.usage_max_lateness_secs == 0 || self.usage_dedup_window_secs == 0 {
            return Err(
                "usage_max_lateness_secs and usage_dedup_window_secs must be positive".into(),
            );
        }
        if self.quota_persist_interval_ms == 0 {
            return Err("quota_persist_interval_ms must be at least 1".into());
        }
        let quota_redis_url = self.quota_redis_url.clone().or(self.redis_url.clone());
        if self.quota_limiter == crate::quota::LimiterKind::Redis && quota_redis_url.is_none() {
            return Err("quota_limiter = redis needs quota_redis_url or redis_url".into());
        }
        Ok(Settings {
            listen: self.listen.clone(),
            cell_id,
            region,
            endpoint: self.endpoint.clone(),
            capacity: self.capacity,
            database_url,
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            global_url: self.global_url.clone(),
            heartbeat_interval: Duration::from_secs(self.heartbeat_interval_secs),
            keys: self.jwt.keys()?,
            dev_mode: self.dev_mode,
            introspection: self.introspection || self.dev_mode,
            limits: self.limits,
            transport: None,
            db_pool_size: self.db_pool_size,
            sync: SyncSettings {
                claim_idle: Duration::from_millis(self.sync_claim_idle_ms),
                resync_every: Duration::from_secs(self.resync_interval_secs),
                test_apply_delay: Duration::from_millis(self.test_apply_delay_ms),
            },
            quota: crate::quota::Settings {
                limiter: self.quota_limiter,
                redis_url: quota_redis_url,
                redis_prefix: self.redis_prefix.clone(),
                usage_max_lateness: Duration::from_secs(self.usage_max_lateness_secs),
                usage_dedup_window: Duration::from_secs(self.usage_dedup_window_secs),
                persist_interval: Duration::from_millis(self.quota_persist_interval_ms),
                ..Default::default()
            },
        })
    }
}
