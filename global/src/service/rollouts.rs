//! Rollouts: a flag variant exposed stage by stage, each stage acknowledged
//! by every cell, soaked, and judged on health signals before the next.
//! Every change is a versioned write of the rollout's document; changes the
//! cells must hear of (state, stage) also go out on `global.rollouts` in the
//! same transaction. The progress loop is in [`super::rollout_progress`].
//!
//! - [`document`]: the document and the values describing a change;
//! - [`validate`]: what a new rollout must satisfy, and cohort matching;
//! - [`stages`]: state and stage transitions (pure);
//! - [`gates`]: judging a running stage (pure);
//! - [`store`]: reads, the versioned write, republishing plans;
//! - [`start`]: starting a rollout; [`actions`]: operator actions, aborts.

mod actions;
mod document;
mod gates;
mod stages;
mod start;
mod store;
mod validate;

#[cfg(test)]
mod tests;

pub use actions::{abort, frozen_by, operate};
pub use document::{
    CellAck, Change, Health, HistoryEntry, NewRollout, Op, PlanVersion, Progress, Rollout, Stored,
    Stuck, entry,
};
pub use gates::judge;
pub use stages::{
    apply_op, begin, begin_if_due, due, frozen_detail, frozen_note, mark_aborted, next_stage,
    permanent_rules, record_ack, roll_back,
};
pub use start::start;
pub use store::{active, entity_versions, get, list, modify, plans, republish};
pub use validate::{check_stages, cohort_matches};
