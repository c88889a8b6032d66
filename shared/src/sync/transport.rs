//! What a stream transport offers: append, consumer-group reads, acks and
//! the takeover of entries a dead consumer left pending.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Event;
use crate::Result;

/// One entry handed to a consumer; ack it by `position` once applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The entry's position in its stream (a Redis Stream id such as
    /// `1700000000000-0`); increases along the stream.
    pub position: String,
    /// The event delivered.
    pub event: Event,
}

/// Entries taken over from idle consumers, and positions the stream trimmed
/// away while they were pending (their events are lost: resync).
#[derive(Debug, Default)]
pub struct Claimed {
    /// Entries now delivered to the claiming consumer.
    pub deliveries: Vec<Delivery>,
    /// Positions that were pending but whose entries are gone; acked away
    /// by the claim. Their events are lost to the group: it must resync.
    pub trimmed: Vec<String>,
}

/// A consumer group on a stream, and how long since one of its consumers
/// last read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupIdle {
    /// The group's name.
    pub name: String,
    /// The least idle consumer's idle time; none when no consumer has read yet.
    pub idle: Option<Duration>,
}

/// Where a consumer group stands on a stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupStatus {
    /// False when the stream or the group does not exist (yet).
    pub exists: bool,
    /// The last position before which everything was applied and acked.
    pub last_applied: Option<String>,
    /// Delivered, not yet acknowledged.
    pub pending: u64,
    /// Appended, never delivered to the group.
    pub undelivered: u64,
    /// Commit time of the oldest event the group has not acknowledged.
    pub oldest_unapplied: Option<DateTime<Utc>>,
}

/// A stream transport: Redis Streams in deployments ([`super::redis`]),
/// in-process for the dev stack and tests ([`super::memory`]). Each group
/// gets every entry of a stream; within a group, each entry goes to one consumer.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Appends `event` to `stream`; returns its position.
    async fn publish(&self, stream: &str, event: &Event) -> Result<String>;

    /// Appends several events in order; all or a prefix of them may land
    /// when it fails (the outbox republishes, consumers are idempotent).
    async fn publish_many(&self, events: &[(String, Event)]) -> Result<()> {
        for (stream, e) in events {
            self.publish(stream, e).await?;
        }
        Ok(())
    }

    /// Creates `group` on `stream` (reading from its start) unless it exists.
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<()>;

    /// Up to `count` entries never delivered to `group`, waiting up to `block`.
    async fn read(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Takes over entries of `group` pending longer than `min_idle`.
    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Claimed>;

    /// Where `group` stands on `stream`.
    async fn group_status(&self, stream: &str, group: &str) -> Result<GroupStatus>;

    /// Marks entries as applied by `group`.
    async fn ack(&self, stream: &str, group: &str, positions: &[String]) -> Result<()>;

    /// The groups on `stream` (none when it does not exist) and how idle each is.
    async fn groups(&self, stream: &str) -> Result<Vec<GroupIdle>>;

    /// Deletes `group` from `stream` (a no-op when it does not exist). A
    /// consumer still reading it recreates it, reading from the start.
    async fn drop_group(&self, stream: &str, group: &str) -> Result<()>;
}
