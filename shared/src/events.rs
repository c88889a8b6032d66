//! Fan-out of change events to every replica of a tier. With Redis, events
//! go through a Redis Stream that each replica tails, so a subscriber on
//! one replica hears of changes made on another; without Redis (the dev
//! stack), a process-local broadcast.
//!
//! This is a notification path, not a record: an event published while
//! Redis is unreachable reaches only local subscribers. Durable delivery
//! belongs to the outbox.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamMaxlen, StreamReadOptions, StreamReadReply};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;

const MAXLEN: usize = 10_000;

/// A fan-out channel of events of type `T` (sent as JSON on Redis) to every
/// subscriber on every replica. At most 1024 events wait per subscriber; a
/// slower subscriber misses the oldest (`RecvError::Lagged`).
pub struct Bus<T> {
    local: broadcast::Sender<T>,
    redis: Option<RedisSide>,
    _t: PhantomData<fn() -> T>,
}

struct RedisSide {
    client: redis::Client,
    key: String,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Bus<T> {
    /// A bus within this process only (the dev stack, tests).
    pub fn local() -> Arc<Self> {
        Arc::new(Self {
            local: broadcast::channel(1024).0,
            redis: None,
            _t: PhantomData,
        })
    }

    /// Tails the Redis Stream `key` (capped near 10 000 entries) until
    /// `shutdown`, from its end when first reached. Fails only on a malformed
    /// `url`: an unreachable Redis is retried in the background. Must be
    /// called within a Tokio runtime.
    pub fn redis(url: &str, key: String, shutdown: CancellationToken) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid redis url: {e}"))?;
        let bus = Arc::new(Self {
            local: broadcast::channel(1024).0,
            redis: Some(RedisSide {
                client: client.clone(),
                key: key.clone(),
                conn: Mutex::new(None),
            }),
            _t: PhantomData,
        });
        tokio::spawn(tail(client, key, bus.local.clone(), shutdown));
        Ok(bus)
    }

    /// Receives every event published from now on, on any replica.
    pub fn subscribe(&self) -> broadcast::Receiver<T> {
        self.local.subscribe()
    }

    /// Publishes to every replica (or, when Redis is unreachable, to this one).
    pub async fn publish(&self, event: T) {
        let Some(r) = &self.redis else {
            let _ = self.local.send(event);
            return;
        };
        match r.publish(&event).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, stream = %r.key, "event not published to Redis; delivering locally only");
                let _ = self.local.send(event);
            }
        }
    }
}

impl RedisSide {
    async fn publish<T: Serialize>(&self, event: &T) -> redis::RedisResult<()> {
        let payload = serde_json::to_string(event).unwrap_or_default();
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(1)));
            *guard = Some(
                self.client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?,
            );
        }
        let conn = guard.as_mut().expect("connected above");
        let res: redis::RedisResult<String> = conn
            .xadd_maxlen(
                &self.key,
                StreamMaxlen::Approx(MAXLEN),
                "*",
                &[("data", payload)],
            )
            .await;
        if res.is_err() {
            *guard = None;
        }
        res.map(|_| ())
    }
}

/// Reads the stream from its current end onwards and forwards each event.
async fn tail<T: DeserializeOwned + Send + 'static>(
    client: redis::Client,
    key: String,
    local: broadcast::Sender<T>,
    shutdown: CancellationToken,
) {
    let mut last: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            r = tail_once(&client, &key, &local, &mut last) => r,
            _ = shutdown.cancelled() => return,
        };
        if let Err(e) = result {
            failures += 1;
            if failures == 1 || failures.is_multiple_of(30) {
                tracing::warn!(error = %e, stream = %key, failures, "event stream unreachable; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

async fn tail_once<T: DeserializeOwned>(
    client: &redis::Client,
    key: &str,
    local: &broadcast::Sender<T>,
    last: &mut Option<String>,
) -> redis::RedisResult<()> {
    // Blocking reads get their own connection without a response timeout.
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    if last.is_none() {
        let tip: redis::streams::StreamRangeReply = conn.xrevrange_count(key, "+", "-", 1).await?;
        *last = Some(
            tip.ids
                .first()
                .map(|e| e.id.clone())
                .unwrap_or_else(|| "0-0".into()),
        );
    }
    loop {
        let from = last.clone().unwrap_or_else(|| "0-0".into());
        let opts = StreamReadOptions::default().block(1000).count(100);
        let reply: Option<StreamReadReply> =
            conn.xread_options(&[key], &[from.as_str()], &opts).await?;
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            *last = Some(entry.id.clone());
            let Some(redis::Value::BulkString(bytes)) = entry.map.get("data") else {
                continue;
            };
            match serde_json::from_slice::<T>(bytes) {
                Ok(ev) => {
                    let _ = local.send(ev);
                }
                Err(e) => tracing::warn!(error = %e, id = %entry.id, "undecodable event skipped"),
            }
        }
    }
}
