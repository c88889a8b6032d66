//! What cells report to the global tier about rollouts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RolloutState;

/// A cell serves a rollout's `stage` (in `state`), with this exposure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    pub rollout_id: Uuid,
    pub cell: String,
    pub stage: usize,
    pub state: RolloutState,
    pub exposed_tenants: i64,
    /// Tenants kept out by the rollout's version requirement.
    pub excluded_tenants: i64,
    pub tenants: i64,
}

/// Request and error counts the data plane saw for one tenant, flag and variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    pub tenant_id: Uuid,
    pub flag_key: String,
    pub variant: String,
    pub requests: i64,
    pub errors: i64,
}

/// A batch of signals from one cell, for one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signals {
    pub cell: String,
    pub environment: String,
    pub signals: Vec<Signal>,
}

pub fn ack_entity(rollout: Uuid, cell: &str) -> String {
    format!("rollout-ack:{rollout}:{cell}")
}
