//! A rollout's plan as it travels to the cells: the flag and environment it
//! changes, the variant it exposes, its stages and where it stands.

use async_graphql::{Enum, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a rollout stands. RUNNING, PAUSED and STUCK serve the current
/// stage's exposure; COMPLETED, ROLLED_BACK and ABORTED are final.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    /// Waiting for its start time (or `advanceRollout`); exposes no one yet.
    Pending,
    /// Serving the current stage, which advances once every cell has
    /// acknowledged it, its soak time has passed and its gates hold.
    Running,
    /// Held at the current stage by `pauseRollout`: still served, advanced
    /// only by `advanceRollout` until `resumeRollout`.
    Paused,
    /// Past its last stage: its cohorts became rules of the flag's
    /// targeting in the environment, which serves them from here on.
    Completed,
    /// A health gate failed, or `rollbackRollout`: no longer served.
    RolledBack,
    /// Cannot advance (a cell has not acknowledged the stage in time, or too
    /// few requests to judge the gates); still served. Resumes by itself
    /// once the cause is gone, or by `resumeRollout`.
    Stuck,
    /// Ended by the flag's kill switch or archiving: no longer served.
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

    /// Final states: the rollout no longer changes or exposes anyone.
    pub fn finished(self) -> bool {
        matches!(
            self,
            RolloutState::Completed | RolloutState::RolledBack | RolloutState::Aborted
        )
    }

    /// The state as GraphQL and the database spell it, e.g. `ROLLED_BACK`.
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
    /// Only these tenants; empty: any tenant.
    #[graphql(default)]
    #[serde(default)]
    pub tenant_ids: Vec<Uuid>,
    /// Only tenants homed in these cells; empty: any cell.
    #[graphql(default)]
    #[serde(default)]
    pub cell_ids: Vec<String>,
    /// Only tenants in these regions; empty: any region.
    #[graphql(default)]
    #[serde(default)]
    pub regions: Vec<String>,
    /// Only tenants on these plans (`free`, `pro`, `enterprise`); empty: any plan.
    #[graphql(default)]
    #[serde(default)]
    pub plans: Vec<String>,
    /// Percentage (0 to 100, in steps of 0.001) of the matching tenants, by
    /// sticky bucket of the flag's salt; absent: all of them. Must not go
    /// down from one stage to the next.
    pub percentage: Option<f64>,
}

/// Health a stage must show before it advances.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[graphql(name = "Gates", input_name = "GatesInput")]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    /// Errors / requests of the rollout's variant (0 to 1) above this fail
    /// the gate and roll the rollout back; absent: no error-rate gate.
    pub max_error_rate: Option<f64>,
    /// Fewer requests than this (≥ 0) during the stage cannot be judged: the
    /// stage turns STUCK after its soak instead of advancing.
    pub min_requests: Option<i64>,
}

/// One step of a rollout: who it exposes, how long it soaks and the health
/// it must show before the next. Each stage adds to the earlier stages' exposure.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[graphql(name = "Stage", input_name = "StageInput")]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// A label for the stage (1 to 64 characters), e.g. `canary`.
    pub name: String,
    /// The tenants this stage exposes.
    pub cohort: Cohort,
    /// Seconds (≥ 0) from the stage's start before it may advance.
    pub soak_seconds: i64,
    /// Health checks the stage must pass to advance; none by default.
    #[graphql(default)]
    #[serde(default)]
    pub gates: Gates,
}

/// What the cells need of a rollout to serve it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPlan {
    /// The rollout's id.
    pub id: Uuid,
    /// The flag whose variant is rolled out.
    pub flag_key: String,
    /// The one environment the rollout changes.
    pub environment: String,
    /// The variant the stages' cohorts are served.
    pub variant: String,
    /// 1 to 20 stages, in order.
    pub stages: Vec<Stage>,
    /// A semver range (e.g. `>=3`) a tenant's version, read as `N.0.0`, must
    /// match to be exposed; absent: every version.
    pub requires_tenant_version: Option<String>,
    /// Where the rollout stands; only exposing states are served.
    pub state: RolloutState,
    /// The current stage's index.
    pub stage: usize,
}
