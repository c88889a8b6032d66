//! How a cell enforces quotas and meters usage.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimiterKind {
    /// In this process: for a cell that runs one replica.
    #[default]
    Memory,
    /// In Redis, one atomic script per decision: for several replicas.
    Redis,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub limiter: LimiterKind,
    /// The Redis of the limiter (defaults to the cell's Redis).
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// How long a limiter call to Redis may take before the metric's
    /// fail-open/fail-closed choice decides.
    pub redis_timeout: Duration,
    /// How long a consume's idempotency key answers its first decision.
    pub consume_key_ttl: Duration,
    /// Most consume keys an in-memory limiter remembers per generation (and
    /// queues for the database between two flushes).
    pub consume_keys_max: usize,
    /// How often the in-memory limiter writes counters and consume keys to
    /// the database: what a crash can lose at most.
    pub persist_interval: Duration,
    /// How long a usage event's idempotency key is remembered.
    pub usage_dedup_window: Duration,
    /// Events older than this are rejected.
    pub usage_max_lateness: Duration,
    /// Events further in the future than this are rejected.
    pub usage_max_skew: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            limiter: LimiterKind::Memory,
            redis_url: None,
            redis_prefix: "tcp".into(),
            redis_timeout: Duration::from_millis(250),
            consume_key_ttl: Duration::from_secs(600),
            consume_keys_max: 1_000_000,
            persist_interval: Duration::from_millis(100),
            usage_dedup_window: Duration::from_secs(7 * 86_400),
            usage_max_lateness: Duration::from_secs(86_400),
            usage_max_skew: Duration::from_secs(60),
        }
    }
}
