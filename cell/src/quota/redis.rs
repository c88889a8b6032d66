//! The limiter of a cell that runs several replicas: every tenant's state
//! in Redis, each decision one atomic script (`limiter.lua`, the same rules
//! as `shared::quota::decide`), consume keys stored with their outcome.

use std::sync::RwLock;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shared::quota::decide::Outcome;
use shared::quota::{Enforcement, Kind};

use super::memory::Ask;

pub struct RedisLimiter {
    client: redis::Client,
    prefix: String,
    conn: RwLock<Option<MultiplexedConnection>>,
    script: redis::Script,
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

    /// Decides in Redis; returns the outcome and whether it was a replay.
    pub async fn apply(&self, a: &Ask<'_>, metric: &str) -> Result<(Outcome, bool), Unreachable> {
        let mut conn = self.conn().await?;
        let slot = format!("{}:{{{}}}:{metric}", self.prefix, a.tenant);
        let key = format!(
            "{}:{{{}}}:key:{}",
            self.prefix,
            a.tenant,
            a.key.unwrap_or("")
        );
        let kind = match a.kind {
            Kind::Rate => 0,
            Kind::Periodic => 1,
            Kind::Gauge => 2,
        };
        let (ws, we) = a.window.unwrap_or((0, 0));
        let mut inv = self.script.key(slot);
        inv.key(key)
            .arg(kind)
            .arg(a.rule.limit)
            .arg(a.rule.burst())
            .arg(i32::from(a.rule.enforcement == Enforcement::Soft))
            .arg(a.amount)
            .arg(a.now)
            .arg(ws)
            .arg(we)
            .arg(i32::from(a.dry))
            .arg(i32::from(a.key.is_some()))
            .arg(self.key_ttl_secs);
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
        let opt = |x: i64| (x >= 0).then_some(x);
        Ok((
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
}
