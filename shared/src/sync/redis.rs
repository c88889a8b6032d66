//! Redis Streams: one stream key per stream under the deployment's prefix,
//! trimmed with `MAXLEN ~`, read through consumer groups.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamInfoConsumersReply,
    StreamInfoGroupsReply, StreamMaxlen, StreamPendingReply, StreamRangeReply, StreamReadOptions,
    StreamReadReply,
};
use tokio::sync::Mutex;

use super::{Claimed, Delivery, Event, GroupIdle, GroupStatus, Transport};
use crate::{Error, Result};

/// The Redis Streams [`Transport`]: stream `s` is the key
/// `{prefix}:sync:{s}`, trimmed to about `maxlen` entries on append.
pub struct Redis {
    client: redis::Client,
    prefix: String,
    maxlen: usize,
    /// Short commands (XADD, XACK, XAUTOCLAIM) share one connection.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Each consumer's blocking reads get a connection of their own.
    blocking: Mutex<HashMap<String, MultiplexedConnection>>,
}

fn unavailable(e: redis::RedisError) -> Error {
    tracing::warn!(error = %e, "redis stream call failed");
    Error::Unavailable("the sync stream (Redis) is unavailable".into())
}

impl Redis {
    /// A transport on `url`; connects lazily, so an unreachable Redis shows
    /// as UNAVAILABLE calls, not here. A malformed `url` is BAD_USER_INPUT.
    pub fn new(url: &str, prefix: &str, maxlen: usize) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::bad_input("redis_url", format!("invalid redis url: {e}")))?;
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            maxlen,
            conn: Mutex::new(None),
            blocking: Mutex::new(HashMap::new()),
        })
    }

    fn key(&self, stream: &str) -> String {
        format!("{}:sync:{stream}", self.prefix)
    }

    async fn conn(&self) -> Result<MultiplexedConnection> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(unavailable)?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Forgets a connection after a failure so the next call reconnects.
    async fn reset(&self) {
        *self.conn.lock().await = None;
    }

    async fn blocking_conn(&self, consumer: &str) -> Result<MultiplexedConnection> {
        let mut map = self.blocking.lock().await;
        if let Some(c) = map.get(consumer) {
            return Ok(c.clone());
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(None);
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(unavailable)?;
        map.insert(consumer.to_owned(), c.clone());
        Ok(c)
    }

    async fn checked<T>(&self, r: redis::RedisResult<T>) -> Result<T> {
        if r.is_err() {
            self.reset().await;
        }
        r.map_err(unavailable)
    }
}

fn decode(entry: StreamId) -> Option<Delivery> {
    let Some(redis::Value::BulkString(bytes)) = entry.map.get("event") else {
        tracing::warn!(id = %entry.id, "stream entry without an event field skipped");
        return None;
    };
    match serde_json::from_slice::<Event>(bytes) {
        Ok(event) => Some(Delivery {
            position: entry.id,
            event,
        }),
        Err(e) => {
            tracing::warn!(id = %entry.id, error = %e, "undecodable stream entry skipped");
            None
        }
    }
}

#[async_trait::async_trait]
impl Transport for Redis {
    async fn publish(&self, stream: &str, event: &Event) -> Result<String> {
        let payload = serde_json::to_string(event).map_err(Error::internal)?;
        let mut c = self.conn().await?;
        let r: redis::RedisResult<String> = c
            .xadd_maxlen(
                self.key(stream),
                StreamMaxlen::Approx(self.maxlen),
                "*",
                &[("event", payload)],
            )
            .await;
        self.checked(r).await
    }

    /// One pipelined round trip for the whole batch.
    async fn publish_many(&self, events: &[(String, Event)]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (stream, e) in events {
            let payload = serde_json::to_string(e).map_err(Error::internal)?;
            pipe.xadd_maxlen(
                self.key(stream),
                StreamMaxlen::Approx(self.maxlen),
                "*",
                &[("event", payload)],
            )
            .ignore();
        }
        let mut c = self.conn().await?;
        let r: redis::RedisResult<()> = pipe.query_async(&mut c).await;
        self.checked(r).await
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> Result<()> {
        let mut c = self.conn().await?;
        let r: redis::RedisResult<()> =
            c.xgroup_create_mkstream(self.key(stream), group, "0").await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => self.checked(Err(e)).await,
        }
    }

    async fn read(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>> {
        let mut c = self.blocking_conn(consumer).await?;
        let opts = StreamReadOptions::default()
            .group(group, consumer)
            .count(count)
            .block(block.as_millis().max(1) as usize);
        let r: redis::RedisResult<Option<StreamReadReply>> =
            c.xread_options(&[self.key(stream)], &[">"], &opts).await;
        let reply = match r {
            Ok(r) => r,
            Err(e) => {
                self.blocking.lock().await.remove(consumer);
                // The group vanishes with the stream (e.g. Redis restarted empty): recreate it.
                if e.code() == Some("NOGROUP") {
                    self.ensure_group(stream, group).await?;
                }
                return Err(unavailable(e));
            }
        };
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(decode)
            .collect())
    }

    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Claimed> {
        let mut c = self.conn().await?;
        let r: redis::RedisResult<StreamAutoClaimReply> = c
            .xautoclaim_options(
                self.key(stream),
                group,
                consumer,
                min_idle.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(count),
            )
            .await;
        let reply = self.checked(r).await?;
        Ok(Claimed {
            deliveries: reply.claimed.into_iter().filter_map(decode).collect(),
            trimmed: reply.deleted_ids,
        })
    }

    async fn group_status(&self, stream: &str, group: &str) -> Result<GroupStatus> {
        let key = self.key(stream);
        let mut c = self.conn().await?;
        let r: redis::RedisResult<StreamInfoGroupsReply> = c.xinfo_groups(&key).await;
        let groups = match r {
            Ok(g) => g,
            // No such stream: nothing was ever published or Redis lost it.
            Err(e) if e.to_string().contains("no such key") => {
                return Ok(GroupStatus::default());
            }
            Err(e) => return self.checked(Err(e)).await,
        };
        let Some(g) = groups.groups.into_iter().find(|g| g.name == group) else {
            return Ok(GroupStatus::default());
        };
        let mut status = GroupStatus {
            exists: true,
            pending: g.pending as u64,
            undelivered: g.lag.unwrap_or(0) as u64,
            ..GroupStatus::default()
        };
        // The first entry not applied: the oldest pending one, else the
        // first after the last delivered one.
        let first: Option<StreamId> = if g.pending > 0 {
            let r: redis::RedisResult<StreamPendingReply> = c.xpending(&key, group).await;
            match self.checked(r).await? {
                StreamPendingReply::Data(d) => {
                    let r: redis::RedisResult<StreamRangeReply> =
                        c.xrange_count(&key, &d.start_id, "+", 1).await;
                    self.checked(r).await?.ids.into_iter().next()
                }
                _ => None,
            }
        } else {
            let r: redis::RedisResult<StreamRangeReply> = c
                .xrange_count(&key, format!("({}", g.last_delivered_id), "+", 1)
                .await;
            self.checked(r).await?.ids.into_iter().next()
        };
        match first {
            Some(entry) => {
                let r: redis::RedisResult<StreamRangeReply> = c
                    .xrevrange_count(&key, format!("({}", entry.id), "-", 1)
                    .await;
                status.last_applied = self.checked(r).await?.ids.into_iter().next().map(|e| e.id);
                status.oldest_unapplied = decode(entry).map(|d| d.event.created_at);
            }
            None if g.last_delivered_id != "0-0" => {
                status.last_applied = Some(g.last_delivered_id);
            }
            None => {}
        }
        Ok(status)
    }

    async fn ack(&self, stream: &str, group: &str, positions: &[String]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let r: redis::RedisResult<usize> = c.xack(self.key(stream), group, positions).await;
        self.checked(r).await.map(|_| ())
    }

    /// `XINFO GROUPS`, then `XINFO CONSUMERS` of each group that has consumers.
    async fn groups(&self, stream: &str) -> Result<Vec<GroupIdle>> {
        let key = self.key(stream);
        let mut c = self.conn().await?;
        let r: redis::RedisResult<StreamInfoGroupsReply> = c.xinfo_groups(&key).await;
        let groups = match r {
            Ok(g) => g.groups,
            Err(e) if e.to_string().contains("no such key") => return Ok(Vec::new()),
            Err(e) => return self.checked(Err(e)).await,
        };
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let idle = if g.consumers == 0 {
                None
            } else {
                let r: redis::RedisResult<StreamInfoConsumersReply> =
                    c.xinfo_consumers(&key, &g.name).await;
                match r {
                    Ok(reply) => reply
                        .consumers
                        .iter()
                        .map(|x| Duration::from_millis(x.idle as u64))
                        .min(),
                    // Dropped meanwhile.
                    Err(e) if e.code() == Some("NOGROUP") => continue,
                    Err(e) => return self.checked(Err(e)).await,
                }
            };
            out.push(GroupIdle { name: g.name, idle });
        }
        Ok(out)
    }

    async fn drop_group(&self, stream: &str, group: &str) -> Result<()> {
        let mut c = self.conn().await?;
        let r: redis::RedisResult<bool> = c.xgroup_destroy(self.key(stream), group).await;
        match r {
            Ok(_) => Ok(()),
            // No stream, so no group: "requires the key to exist".
            Err(e) if e.to_string().contains("key to exist") => Ok(()),
            Err(e) => self.checked::<()>(Err(e)).await,
        }
    }
}
