//! The limiter of a cell that runs several replicas: every tenant's state
//! in Redis, each decision one atomic script (`limiter.lua`, the same rules
//! as `shared::quota::decide`), consume keys stored with their outcome.

use std::sync::RwLock;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shared::quota::decide::{Outcome, Window};
use shared::quota::{Enforcement, Kind, Rule};
use uuid::Uuid;

use super::memory::{Ask, Op};

/// What Redis answered.
pub enum RedisStep {
    /// The outcome and whether it was a retried key's first answer.
    Decided(Outcome, bool),
    /// The key was first used with other input.
    Conflict,
}

/// Adds metered usage to a PERIODIC counter of the window starting at
/// ARGV[1] (a counter already in a later window is left alone).
const ADD_USAGE: &str = r"
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or '0') or 0
local ws = tonumber(ARGV[1])
if at == ws then
  redis.call('HINCRBY', KEYS[1], 'used', ARGV[2])
elseif at < ws then
  redis.call('HSET', KEYS[1], 'at', ARGV[1], 'used', ARGV[2])
else
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

pub struct RedisLimiter {
    client: redis::Client,
    prefix: String,
    conn: RwLock<Option<MultiplexedConnection>>,
    script: redis::Script,
    add_usage: redis::Script,
    timeout: Duration,
    key_ttl_secs: u64,
}

/// Why Redis gave no decision.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl RedisLimiter {
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        key_ttl: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            client: redis::Client::open(url)
                .map_err(|e| format!("invalid quota redis url: {e}"))?,
            prefix: format!("{prefix}:quota"),
            conn: RwLock::new(None),
            script: redis::Script::new(include_str!("limiter.lua")),
            add_usage: redis::Script::new(ADD_USAGE),
            timeout,
            key_ttl_secs: key_ttl.as_secs().max(1),
        })
    }

    async fn conn(&self) -> Result<MultiplexedConnection, Unreachable> {
        if let Some(c) = self.conn.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| Unreachable(e.to_string()))?;
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    fn reset(&self) {
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn slot(&self, tenant: Uuid, metric: &str) -> String {
        format!("{}:{{{tenant}}}:{metric}", self.prefix)
    }

    /// Decides in Redis.
    pub async fn apply(
        &self,
        a: &Ask<'_>,
        rule: &Rule,
        window: Option<Window>,
    ) -> Result<RedisStep, Unreachable> {
        let mut conn = self.conn().await?;
        let key = format!(
            "{}:{{{}}}:key:{:032x}",
            self.prefix,
            a.tenant,
            a.key.unwrap_or(0)
        );
        let kind = match (a.kind, a.op) {
            (_, Op::Release) => 3,
            (Kind::Rate, _) => 0,
            (Kind::Periodic, _) => 1,
            (Kind::Gauge, _) => 2,
        };
        let (ws, we) = window.unwrap_or((0, 0));
        let mut inv = self.script.key(self.slot(a.tenant, a.name));
        inv.key(key)
            .arg(kind)
            .arg(rule.limit)
            .arg(rule.burst())
            .arg(i32::from(rule.enforcement == Enforcement::Soft))
            .arg(a.amount)
            .arg(a.now)
            .arg(ws)
            .arg(we)
            .arg(i32::from(a.op == Op::Check))
            .arg(i32::from(a.key.is_some()))
            .arg(self.key_ttl_secs)
            .arg(a.fingerprint.to_string());
        let r: Result<Result<Vec<i64>, redis::RedisError>, _> =
            tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn)).await;
        let v = match r {
            Ok(Ok(v)) if v.len() == 8 => v,
            Ok(Ok(v)) => return Err(Unreachable(format!("unexpected script answer {v:?}"))),
            Ok(Err(e)) => {
                self.reset();
                return Err(Unreachable(e.to_string()));
            }
            Err(_) => {
                self.reset();
                return Err(Unreachable("timed out".into()));
            }
        };
        if v[7] == 2 {
            return Ok(RedisStep::Conflict);
        }
        let opt = |x: i64| (x >= 0).then_some(x);
        Ok(RedisStep::Decided(
            Outcome {
                allowed: v[0] == 1,
                limit: v[1],
                remaining: v[2],
                reset_at: opt(v[3]),
                retry_after_us: opt(v[4]),
                overage: v[5],
                used: v[6],
            },
            v[7] == 1,
        ))
    }

    /// Adds metered usage to the tenant's PERIODIC counter of the window `w`.
    pub async fn add_usage(
        &self,
        tenant: Uuid,
        metric: &str,
        w: Window,
        amount: i64,
        now: i64,
    ) -> Result<(), Unreachable> {
        let mut conn = self.conn().await?;
        let ttl_ms = (w.1 - now) / 1000 + 60_000;
        let mut inv = self.add_usage.key(self.slot(tenant, metric));
        inv.arg(w.0).arg(amount).arg(ttl_ms.max(1));
        match tokio::time::timeout(self.timeout, inv.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.reset();
                Err(Unreachable(e.to_string()))
            }
            Err(_) => {
                self.reset();
                Err(Unreachable("timed out".into()))
            }
        }
    }
}
