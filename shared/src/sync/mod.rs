//! State sync between the tiers: a transactional outbox, a relay that
//! publishes it right after commit, stream transports (Redis Streams with
//! consumer groups, or in-process for the dev stack) and consumers that
//! apply each event at most once per entity version.
//!
//! Delivery is at least once; applying is idempotent and monotonic per
//! entity (see [`applied::advance`]), so duplicates and reordering are harmless.

pub mod applied;
pub mod consumer;
pub mod digest;
pub mod memory;
pub mod migration;
pub mod outbox;
pub mod redis;
pub mod transport;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use transport::{Claimed, Delivery, GroupIdle, GroupStatus, Transport};

/// A change to one entity, as it travels between the tiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// A UUIDv7, unique per event; orders the outbox.
    pub id: Uuid,
    /// The stream it travels on, e.g. `global.directory` or `cell.us-east-1-a.status`.
    pub stream: String,
    /// The entity it changes, e.g. `tenant:0192…`; versions are per entity.
    pub entity: String,
    /// The entity's version after the change; consumers apply an event only
    /// if it is newer than what they applied for the entity.
    pub version: i64,
    /// Who made the change (`global`, a cell id).
    pub origin: String,
    /// The change itself, in the stream's payload type (e.g.
    /// [`crate::lifecycle::DirectoryChange`]).
    pub payload: serde_json::Value,
    /// W3C trace context of the change, so traces cross the stream.
    #[serde(default)]
    pub trace: HashMap<String, String>,
    /// When the event was made: the commit of the change, give or take
    /// (propagation delay is measured from it).
    pub created_at: DateTime<Utc>,
}

impl Event {
    /// A new event with a fresh id, the current span's trace context and
    /// the current time.
    pub fn new(
        stream: &str,
        entity: &str,
        version: i64,
        origin: &str,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            stream: stream.to_owned(),
            entity: entity.to_owned(),
            version,
            origin: origin.to_owned(),
            payload,
            trace: crate::telemetry::current_trace_headers(),
            created_at: Utc::now(),
        }
    }
}
