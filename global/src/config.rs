//! Global tier settings: defaults → TOML file → `TENANT_GLOBAL_*` env → flags.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::auth::Keys;
use shared::config::{CommonArgs, Jwt, Overrides, split_list};
use shared::ids::Plan;
use shared::server::Limits;
use shared::telemetry::LogFormat;

pub const ENV_PREFIX: &str = "TENANT_GLOBAL_";

/// The global tier of the tenant control plane.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "global", version, about)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<String>,
    /// Seconds of silence after which a cell is marked DOWN.
    #[arg(long)]
    pub heartbeat_timeout_secs: Option<u64>,
    /// Comma-separated plan names tenants may be created on.
    #[arg(long)]
    pub plans: Option<String>,
    /// How long a call to a cell may take, in milliseconds.
    #[arg(long)]
    pub cell_timeout_ms: Option<u64>,
    /// Seconds between anti-entropy passes over every cell.
    #[arg(long)]
    pub repair_interval_secs: Option<u64>,
    /// Changes younger than this many milliseconds are in flight, not divergent.
    #[arg(long)]
    pub repair_grace_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub listen: String,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub heartbeat_timeout_secs: u64,
    pub cell_timeout_ms: u64,
    pub plans: Vec<String>,
    pub jwt: Jwt,
    pub dev_mode: bool,
    pub introspection: bool,
    pub log_format: LogFormat,
    pub limits: Limits,
    /// Seconds between anti-entropy passes over every cell.
    pub repair_interval_secs: u64,
    /// Changes younger than this are in flight, not divergent.
    pub repair_grace_ms: u64,
}

/// How the global tier checks that cells hold what it published.
#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    pub repair_interval: Duration,
    pub repair_grace: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            repair_interval: Duration::from_secs(30),
            repair_grace: Duration::from_secs(5),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            database_url: None,
            redis_url: None,
            redis_prefix: "tcp".into(),
            heartbeat_timeout_secs: 15,
            cell_timeout_ms: 5000,
            plans: vec!["free".into(), "pro".into(), "enterprise".into()],
            jwt: Jwt::default(),
            dev_mode: false,
            introspection: false,
            log_format: LogFormat::Json,
            limits: Limits::default(),
            repair_interval_secs: 30,
            repair_grace_ms: 5000,
        }
    }
}

/// Validated settings the global tier starts from.
#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub heartbeat_timeout: Duration,
    pub cell_timeout: Duration,
    pub plans: Vec<Plan>,
    pub keys: Arc<Keys>,
    pub dev_mode: bool,
    pub introspection: bool,
    pub limits: Limits,
    /// The sync transport, when the embedder provides one (the dev stack).
    pub transport: Option<Arc<dyn shared::sync::Transport>>,
    pub sync: SyncSettings,
}

impl Args {
    pub fn load(&self) -> Result<Config, String> {
        let mut o = Overrides::default();
        self.common.overrides(&mut o);
        o.set("listen", self.listen.clone())
            .set("heartbeat_timeout_secs", self.heartbeat_timeout_secs)
            .set("plans", self.plans.as_deref().map(split_list))
            .set("cell_timeout_ms", self.cell_timeout_ms)
            .set("repair_interval_secs", self.repair_interval_secs)
            .set("repair_grace_ms", self.repair_grace_ms);
        shared::config::load(Config::default(), self.common.config.as_deref(), &o)
    }
}

impl Config {
    pub fn validate(&self) -> Result<Settings, String> {
        let database_url = self
            .database_url
            .clone()
            .ok_or("database_url is required (TENANT_GLOBAL_DATABASE_URL)")?;
        if self.heartbeat_timeout_secs == 0 {
            return Err("heartbeat_timeout_secs must be at least 1".into());
        }
        if self.cell_timeout_ms < 50 {
            return Err("cell_timeout_ms must be at least 50".into());
        }
        let plans = self
            .plans
            .iter()
            .map(|p| Plan::parse(p).map_err(|e| e.0))
            .collect::<Result<Vec<_>, _>>()?;
        if plans.is_empty() {
            return Err("at least one plan is required".into());
        }
        match &self.redis_url {
            Some(url) => {
                redis::Client::open(url.as_str()).map_err(|e| format!("invalid redis_url: {e}"))?;
            }
            None => {
                return Err(
                    "redis_url is required (TENANT_GLOBAL_REDIS_URL): it carries the sync streams"
                        .into(),
                );
            }
        }
        self.limits.validate()?;
        if self.repair_interval_secs == 0 {
            return Err("repair_interval_secs must be at least 1".into());
        }
        Ok(Settings {
            listen: self.listen.clone(),
            database_url,
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            heartbeat_timeout: Duration::from_secs(self.heartbeat_timeout_secs),
            cell_timeout: Duration::from_millis(self.cell_timeout_ms),
            plans,
            keys: self.jwt.keys()?,
            dev_mode: self.dev_mode,
            introspection: self.introspection || self.dev_mode,
            limits: self.limits,
            transport: None,
            sync: SyncSettings {
                repair_interval: Duration::from_secs(self.repair_interval_secs),
                repair_grace: Duration::from_millis(self.repair_grace_ms),
            },
        })
    }
}
