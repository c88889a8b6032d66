//! Feature flags and rollouts: definitions owned by the global tier and
//! synced to every cell (`global.flags`, `global.rollouts`), evaluation from
//! a compiled snapshot, and what cells report back (`cell.rollout-acks`,
//! `cell.signals`).

pub mod bucket;
pub mod def;
pub mod eval;
pub mod report;
pub mod rollout;
pub mod store;

pub use def::{Constraint, FlagDef, Kind, Operator, Prerequisite, Rule, Targeting, Variant};
pub use eval::{Engine, Evaluation, Reason, Snapshot, StoredFlag, TenantAttrs};
pub use rollout::{Cohort, Gates, RolloutPlan, RolloutState, Stage};

/// Flag definitions, global → cells.
pub const STREAM: &str = "global.flags";
/// Rollout plans and their current stage, global → cells.
pub const ROLLOUT_STREAM: &str = "global.rollouts";
/// Cells acknowledging the rollout stage they serve, cell → global.
pub const ACK_STREAM: &str = "cell.rollout-acks";
/// Data-plane health per tenant, flag and variant, cell → global.
pub const SIGNAL_STREAM: &str = "cell.signals";

/// The sync entity of flag `key` on [`STREAM`]: `flag:{key}`.
pub fn flag_entity(key: &str) -> String {
    format!("flag:{key}")
}

/// The sync entity of rollout `id` on [`ROLLOUT_STREAM`]: `rollout:{id}`.
pub fn rollout_entity(id: uuid::Uuid) -> String {
    format!("rollout:{id}")
}
