//! A rollout's plan as it travels to the cells: the flag and environment it
//! changes, the variant it exposes, its stages and where it stands.

use async_graphql::{Enum, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    Pending,
    Running,
    Paused,
    Completed,
    RolledBack,
    Stuck,
    Aborted,
}

impl RolloutState {
    /// States in which the current stage's exposure is served.
    pub fn exposes(self) -> bool {
        matches!(
            self,
            RolloutState::Running | RolloutState::Paused | RolloutState::Stuck
        )
    }

    pub fn finished(self) -> bool {
        matches!(
            self,
            RolloutState::Completed | RolloutState::RolledBack | RolloutState::Aborted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Pending => "PENDING",
            RolloutState::Running => "RUNNING",
            RolloutState::Paused => "PAUSED",
            RolloutState::Completed => "COMPLETED",
            RolloutState::RolledBack => "ROLLED_BACK",
            RolloutState::Stuck => "STUCK",
            RolloutState::Aborted => "ABORTED",
        }
    }
}

/// Who a stage exposes: every dimension given must match (a tenant id,
/// cell, region or plan of the lists), then the percentage split applies.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[graphql(name = "Cohort", input_name = "CohortInput")]
#[serde(rename_all = "camelCase")]
pub struct Cohort {
    #[graphql(default)]
    #[serde(default)]
    pub tenant_ids: Vec<Uuid>,
    #[graphql(default)]
    #[serde(default)]
    pub cell_ids: Vec<String>,
    #[graphql(default)]
    #[serde(default)]
    pub regions: Vec<String>,
    #[graphql(default)]
    #[serde(default)]
    pub plans: Vec<String>,
    pub percentage: Option<f64>,
}

/// Health a stage must show before it advances.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[graphql(name = "Gates", input_name = "GatesInput")]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    /// Errors / requests of the rollout's variant above this fail the gate.
    pub max_error_rate: Option<f64>,
    /// Fewer requests than this cannot be judged (the stage turns STUCK).
    pub min_requests: Option<i64>,
}

#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[graphql(name = "Stage", input_name = "StageInput")]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub name: String,
    pub cohort: Cohort,
    pub soak_seconds: i64,
    #[graphql(default)]
    #[serde(default)]
    pub gates: Gates,
}

/// What the cells need of a rollout to serve it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPlan {
    pub id: Uuid,
    pub flag_key: String,
    pub environment: String,
    pub variant: String,
    pub stages: Vec<Stage>,
    pub requires_tenant_version: Option<String>,
    pub state: RolloutState,
    /// The current stage's index.
    pub stage: usize,
}
