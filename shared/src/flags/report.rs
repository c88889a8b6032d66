//! What cells report to the global tier about rollouts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RolloutState;

/// A cell serves a rollout's `stage` (in `state`), with this exposure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    /// The rollout acknowledged.
    pub rollout_id: Uuid,
    /// The id of the acknowledging cell.
    pub cell: String,
    /// Index into the plan's stages of the stage the cell now serves.
    pub stage: usize,
    /// The rollout's state as the cell applied it.
    pub state: RolloutState,
    /// The cell's tenants the rollout's variant reaches now (all stages so
    /// far, after the version requirement).
    pub exposed_tenants: i64,
    /// Tenants kept out by the rollout's version requirement.
    pub excluded_tenants: i64,
    /// Every tenant of the cell's flag snapshot: the denominator of the two counts.
    pub tenants: i64,
}

/// Request and error counts the data plane saw for one tenant, flag and variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    /// A tenant of the reporting cell.
    pub tenant_id: Uuid,
    /// The flag whose variant served the requests.
    pub flag_key: String,
    /// The variant served.
    pub variant: String,
    /// Requests since the previous report (≥ 0); the global tier adds them up.
    pub requests: i64,
    /// How many of `requests` failed (0 to `requests`).
    pub errors: i64,
}

/// A batch of signals from one cell, for one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signals {
    /// The id of the reporting cell.
    pub cell: String,
    /// The environment the requests ran in (a DNS label such as `prod`).
    pub environment: String,
    /// The counts, 1 to 1000 per batch.
    pub signals: Vec<Signal>,
}

/// The sync entity of `cell`'s acknowledgements of `rollout` on
/// [`ACK_STREAM`](super::ACK_STREAM): `rollout-ack:{rollout}:{cell}`.
pub fn ack_entity(rollout: Uuid, cell: &str) -> String {
    format!("rollout-ack:{rollout}:{cell}")
}

/// Bits of an acknowledgement's version below the plan version: the
/// milliseconds since 2024 (69 years), so a cell's re-acknowledgements of
/// one plan are each newer than the last, and an ack of a newer plan is
/// newer than all of them.
const ACK_CLOCK_BITS: u32 = 41;

/// The version of a cell's acknowledgement of plan version `plan_version`,
/// newer than `last` (the previous one it sent for that rollout).
pub fn ack_version(plan_version: i64, last: Option<i64>) -> i64 {
    let since = (chrono::Utc::now().timestamp_millis() - 1_704_067_200_000).max(0);
    let v = (plan_version << ACK_CLOCK_BITS) | (since & ((1i64 << ACK_CLOCK_BITS) - 1));
    match last {
        Some(l) if l >= v && ack_plan_version(l) == plan_version => l + 1,
        _ => v,
    }
}

/// The plan version an acknowledgement's version was made from.
pub fn ack_plan_version(version: i64) -> i64 {
    version >> ACK_CLOCK_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_versions_grow_within_a_plan_and_across_plans() {
        let a = ack_version(3, None);
        let b = ack_version(3, Some(a));
        assert!(b > a);
        assert_eq!(ack_plan_version(b), 3);
        let c = ack_version(4, Some(b));
        assert!(c > b);
        assert_eq!(ack_plan_version(c), 4);
    }
}
