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
    /// Seconds a provisioning saga keeps retrying before it compensates.
    #[arg(long)]
    pub provisioning_deadline_secs: Option<u64>,
    /// Milliseconds createTenant waits for the saga before answering UNAVAILABLE.
    #[arg(long)]
    pub provisioning_wait_ms: Option<u64>,
    /// Seconds a replica holds a saga without renewing before another takes it over.
    #[arg(long)]
    pub saga_lease_secs: Option<u64>,
    /// Longest grace period deprovisionTenant accepts, in seconds.
    #[arg(long)]
    pub max_grace_period_secs: Option<u64>,
    /// Seconds a deleted tenant's slug stays reserved.
    #[arg(long)]
    pub slug_reuse_after_secs: Option<u64>,
    /// Labels plans need where such cells exist: `enterprise:pool=dedicated,…`.
    #[arg(long)]
    pub placement_policy: Option<String>,
    /// How long an impact query waits for each cell, in milliseconds.
    #[arg(long)]
    pub impact_timeout_ms: Option<u64>,
    /// Longest break-glass access a request may ask for, in seconds.
    #[arg(long)]
    pub break_glass_max_duration_secs: Option<u64>,
    /// Seconds after which an unapproved break-glass request expires.
    #[arg(long)]
    pub break_glass_request_expiry_secs: Option<u64>,
    /// Test only: exit the process right after this saga step completes.
    #[arg(long, hide = true)]
    pub test_crash_after_step: Option<String>,
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
    /// Most database connections this process opens.
    pub db_pool_size: u32,
    pub provisioning_deadline_secs: u64,
    pub provisioning_wait_ms: u64,
    pub saga_lease_secs: u64,
    pub max_grace_period_secs: u64,
    pub slug_reuse_after_secs: u64,
    /// Plan → `key=value` label its tenants need where such cells exist.
    pub placement_policy: std::collections::BTreeMap<String, String>,
    pub test_crash_after_step: Option<String>,
    /// Seconds between anti-entropy passes over every cell.
    pub repair_interval_secs: u64,
    /// Changes younger than this are in flight, not divergent.
    pub repair_grace_ms: u64,
    /// How long an impact query waits for each cell.
    pub impact_timeout_ms: u64,
    /// Longest break-glass access a request may ask for.
    pub break_glass_max_duration_secs: u64,
    /// An unapproved break-glass request expires after this.
    pub break_glass_request_expiry_secs: u64,
    /// A process's consumer group on `global.break-glass` that nobody has
    /// read for this long (its process is gone) is dropped.
    pub break_glass_group_idle_secs: u64,
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
            db_pool_size: 32,
            repair_interval_secs: 30,
            repair_grace_ms: 5000,
            provisioning_deadline_secs: 300,
            provisioning_wait_ms: 10_000,
            saga_lease_secs: 15,
            max_grace_period_secs: 30 * 24 * 3600,
            slug_reuse_after_secs: 90 * 24 * 3600,
            placement_policy: [("enterprise".to_string(), "pool=dedicated".to_string())].into(),
            test_crash_after_step: None,
            impact_timeout_ms: 2000,
            break_glass_max_duration_secs: 4 * 3600,
            break_glass_request_expiry_secs: 3600,
            break_glass_group_idle_secs: 600,
        }
    }
}

/// Ops settings: impact queries and break-glass access.
#[derive(Debug, Clone)]
pub struct Ops {
    /// How long an impact query waits for each cell before it answers
    /// without it (`complete: false`).
    pub impact_timeout: Duration,
    /// The longest break-glass access a request may ask for.
    pub break_glass_max_duration: Duration,
    /// An unapproved break-glass request expires after this.
    pub break_glass_request_expiry: Duration,
    /// Consumer groups on `global.break-glass` idle this long are dropped.
    pub break_glass_group_idle: Duration,
}

impl Default for Ops {
    fn default() -> Self {
        Self {
            impact_timeout: Duration::from_secs(2),
            break_glass_max_duration: Duration::from_secs(4 * 3600),
            break_glass_request_expiry: Duration::from_secs(3600),
            break_glass_group_idle: Duration::from_secs(600),
        }
    }
}

/// How tenants are provisioned (sagas retry, wait and hand over) and retired.
#[derive(Debug, Clone)]
pub struct Provisioning {
    /// The longest grace period deprovisionTenant accepts.
    pub max_grace_period: Duration,
    /// How long a deleted tenant's slug stays reserved.
    pub slug_reuse_after: Duration,
    /// Plan → label its tenants need where such cells exist.
    pub placement_policy: crate::service::placement::Policy,
    /// After this, a saga stops retrying and compensates.
    pub deadline: Duration,
    /// How long createTenant waits for the saga to end.
    pub wait: Duration,
    /// A saga whose driver has not renewed its lease for this long is resumed by another.
    pub lease: Duration,
    /// Test only: the process exits right after this step completes.
    pub crash_after_step: Option<String>,
}

impl Default for Provisioning {
    fn default() -> Self {
        Self {
            max_grace_period: Duration::from_secs(30 * 24 * 3600),
            slug_reuse_after: Duration::from_secs(90 * 24 * 3600),
            placement_policy: [(
                "enterprise".to_string(),
                ("pool".to_string(), "dedicated".to_string()),
            )]
            .into(),
            deadline: Duration::from_secs(300),
            wait: Duration::from_secs(10),
            lease: Duration::from_secs(15),
            crash_after_step: None,
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
    /// Most database connections this process opens.
    pub db_pool_size: u32,
    pub sync: SyncSettings,
    pub provisioning: Provisioning,
    pub ops: Ops,
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
            .set("repair_grace_ms", self.repair_grace_ms)
            .set(
                "provisioning_deadline_secs",
                self.provisioning_deadline_secs,
            )
            .set("provisioning_wait_ms", self.provisioning_wait_ms)
            .set("saga_lease_secs", self.saga_lease_secs)
            .set("max_grace_period_secs", self.max_grace_period_secs)
            .set("slug_reuse_after_secs", self.slug_reuse_after_secs)
            .set(
                "placement_policy",
                self.placement_policy.as_deref().map(|p| {
                    split_list(p)
                        .into_iter()
                        .filter_map(|e| {
                            e.split_once(':')
                                .map(|(plan, l)| (plan.trim().to_owned(), l.trim().to_owned()))
                        })
                        .collect::<std::collections::BTreeMap<_, _>>()
                }),
            )
            .set("impact_timeout_ms", self.impact_timeout_ms)
            .set(
                "break_glass_max_duration_secs",
                self.break_glass_max_duration_secs,
            )
            .set(
                "break_glass_request_expiry_secs",
                self.break_glass_request_expiry_secs,
            )
            .set("test_crash_after_step", self.test_crash_after_step.clone());
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
        if self.impact_timeout_ms < 50 {
            return Err("impact_timeout_ms must be at least 50".into());
        }
        if self.break_glass_group_idle_secs < 60 {
            // A live process reads every second; a minute leaves room for a
            // Redis hiccup before its group is dropped (it would recreate it).
            return Err("break_glass_group_idle_secs must be at least 60".into());
        }
        if self.break_glass_max_duration_secs == 0 || self.break_glass_request_expiry_secs == 0 {
            return Err(
                "break_glass_max_duration_secs and break_glass_request_expiry_secs must be at least 1"
                    .into(),
            );
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
        if self.db_pool_size == 0 {
            return Err("db_pool_size must be at least 1".into());
        }
        if self.repair_interval_secs == 0 {
            return Err("repair_interval_secs must be at least 1".into());
        }
        if self.provisioning_deadline_secs == 0 || self.saga_lease_secs == 0 {
            return Err("provisioning_deadline_secs and saga_lease_secs must be at least 1".into());
        }
        if let Some(step) = &self.test_crash_after_step
            && !crate::service::provisioning::STEPS.contains(&step.as_str())
        {
            return Err(format!(
                "test_crash_after_step must name a step: {}",
                crate::service::provisioning::STEPS.join(", ")
            ));
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
            db_pool_size: self.db_pool_size,
            sync: SyncSettings {
                repair_interval: Duration::from_secs(self.repair_interval_secs),
                repair_grace: Duration::from_millis(self.repair_grace_ms),
            },
            provisioning: Provisioning {
                max_grace_period: Duration::from_secs(self.max_grace_period_secs),
                slug_reuse_after: Duration::from_secs(self.slug_reuse_after_secs),
                placement_policy: self
                    .placement_policy
                    .iter()
                    .map(|(plan, label)| {
                        let (k, v) = label.split_once('=').ok_or_else(|| {
                            format!("placement_policy.{plan}: `{label}` is not key=value")
                        })?;
                        Ok((plan.clone(), (k.trim().to_owned(), v.trim().to_owned())))
                    })
                    .collect::<Result<_, String>>()?,
                deadline: Duration::from_secs(self.provisioning_deadline_secs),
                wait: Duration::from_millis(self.provisioning_wait_ms),
                lease: Duration::from_secs(self.saga_lease_secs),
                crash_after_step: self.test_crash_after_step.clone(),
            },
            ops: Ops {
                impact_timeout: Duration::from_millis(self.impact_timeout_ms),
                break_glass_max_duration: Duration::from_secs(self.break_glass_max_duration_secs),
                break_glass_request_expiry: Duration::from_secs(
                    self.break_glass_request_expiry_secs,
                ),
                break_glass_group_idle: Duration::from_secs(self.break_glass_group_idle_secs),
            },
        })
    }
}
