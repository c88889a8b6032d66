//! What the global tier keeps of a rollout: one JSON document per row of
//! `rollouts`, and the values that describe a change to it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::flags::{RolloutPlan, RolloutState, Stage};
use uuid::Uuid;

/// A cell's acknowledgement of the stage it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellAck {
    pub stage: usize,
    /// The plan state the cell served when it acknowledged (None: an
    /// acknowledgement recorded before states were kept).
    #[serde(default)]
    pub state: Option<RolloutState>,
    /// The plan version it acknowledged.
    #[serde(default)]
    pub plan_version: i64,
    pub exposed_tenants: i64,
    pub excluded_tenants: i64,
    pub tenants: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub event: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub requests: i64,
    pub errors: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stuck {
    pub reason: String,
    pub cells: Vec<String>,
}

/// Everything the global tier keeps of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub plan: RolloutPlan,
    /// When a PENDING rollout starts its first stage by itself.
    #[serde(default)]
    pub start_at: Option<DateTime<Utc>>,
    pub ack_deadline_seconds: i64,
    pub stage_started_at: DateTime<Utc>,
    /// The cells that must acknowledge the current stage.
    pub target_cells: Vec<String>,
    pub cells: BTreeMap<String, CellAck>,
    /// The rollout variant's health during the current stage.
    pub health: Health,
    pub stuck: Option<Stuck>,
    pub history: Vec<HistoryEntry>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A rollout as stored: its document, the row's version and the version of
/// the plan cells apply.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    pub doc: Rollout,
    pub version: i64,
    pub plan_version: i64,
}

/// One step of a rollout, pushed to `rolloutProgress` subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub rollout_id: Uuid,
    pub at: DateTime<Utc>,
    pub event: String,
    pub detail: String,
    pub state: RolloutState,
    pub stage: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewRollout {
    pub flag_key: String,
    pub environment: String,
    pub variant: String,
    pub stages: Vec<Stage>,
    pub requires_tenant_version: Option<String>,
    pub allow_empty_cohort: bool,
    pub ack_deadline_seconds: i64,
    /// Later than now: the rollout is PENDING until then.
    pub start_at: Option<DateTime<Utc>>,
}

/// A rollout's plan with the version cells apply.
#[derive(Serialize)]
pub struct PlanVersion {
    pub plan: RolloutPlan,
    pub version: i64,
}

/// What a change did: history entries to add (and push), whether the cells
/// must hear of it.
#[derive(Debug, Default)]
pub struct Change {
    pub entries: Vec<HistoryEntry>,
    pub plan: bool,
}

/// Operator actions on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pause,
    Resume,
    Advance,
    Rollback,
}

/// A history entry made now.
pub fn entry(event: &str, detail: String) -> HistoryEntry {
    HistoryEntry {
        at: Utc::now(),
        event: event.to_owned(),
        detail,
    }
}
