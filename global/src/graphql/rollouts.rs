//! Rollouts in the global API: start, operate, read, and follow progress
//! over graphql-ws. Every operation is audited.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde_json::json;
use shared::IntoGql;
use shared::auth::Role;
use shared::flags::{RolloutState, Stage};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use super::args::idempotency_key;
use super::audited::{Target, audited};
use super::auth::caller;
use crate::service::rollouts::{self, NewRollout, Op, Progress, Stored};

#[derive(Default)]
pub struct RolloutQuery;

#[derive(Default)]
pub struct RolloutMutation;

#[derive(Default)]
pub struct RolloutSubscription;

#[derive(SimpleObject)]
pub struct RolloutCell {
    pub id: String,
    /// The stage this cell last acknowledged serving.
    pub acked_stage: Option<i32>,
    pub exposed_tenants: i64,
    /// Tenants outside `requiresTenantVersion`, never exposed.
    pub excluded_tenants: i64,
    pub tenants: i64,
    pub acked_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct RolloutHistory {
    pub at: DateTime<Utc>,
    pub event: String,
    pub detail: String,
}

#[derive(SimpleObject)]
pub struct Rollout {
    pub id: ID,
    pub flag_key: String,
    pub environment: String,
    pub variant: String,
    pub state: RolloutState,
    /// The current stage's index (0 is the canary).
    pub stage: i32,
    pub stage_name: String,
    pub stages: Vec<Stage>,
    pub requires_tenant_version: Option<String>,
    /// Exposed tenants over the tenants of the cells that acknowledged, in percent.
    pub percent_exposed: f64,
    pub exposed_tenants: i64,
    pub excluded_tenants: i64,
    pub stuck_reason: Option<String>,
    pub stuck_cells: Vec<String>,
    /// The rollout variant's requests and errors signalled in this stage.
    pub requests: i64,
    pub errors: i64,
    pub cells: Vec<RolloutCell>,
    pub history: Vec<RolloutHistory>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    /// While PENDING: when the first stage starts by itself.
    pub start_at: Option<DateTime<Utc>>,
}

impl From<Stored> for Rollout {
    fn from(s: Stored) -> Self {
        let d = s.doc;
        let p = d.plan;
        let start_at = d.start_at.filter(|_| p.state == RolloutState::Pending);
        let mut cells: Vec<RolloutCell> = d
            .target_cells
            .iter()
            .chain(d.cells.keys().filter(|c| !d.target_cells.contains(c)))
            .map(|id| {
                let a = d.cells.get(id);
                RolloutCell {
                    id: id.clone(),
                    acked_stage: a.map(|a| a.stage as i32),
                    exposed_tenants: a.map_or(0, |a| a.exposed_tenants),
                    excluded_tenants: a.map_or(0, |a| a.excluded_tenants),
                    tenants: a.map_or(0, |a| a.tenants),
                    acked_at: a.map(|a| a.at),
                }
            })
            .collect();
        cells.sort_by(|a, b| a.id.cmp(&b.id));
        let exposed: i64 = cells.iter().map(|c| c.exposed_tenants).sum();
        let total: i64 = cells.iter().map(|c| c.tenants).sum();
        Self {
            id: ID(p.id.to_string()),
            stage_name: p.stages[p.stage].name.clone(),
            flag_key: p.flag_key,
            environment: p.environment,
            variant: p.variant,
            state: p.state,
            stage: p.stage as i32,
            stages: p.stages,
            requires_tenant_version: p.requires_tenant_version,
            percent_exposed: if total > 0 {
                exposed as f64 * 100.0 / total as f64
            } else {
                0.0
            },
            exposed_tenants: exposed,
            excluded_tenants: cells.iter().map(|c| c.excluded_tenants).sum(),
            stuck_reason: d.stuck.as_ref().map(|s| s.reason.clone()),
            stuck_cells: d.stuck.map(|s| s.cells).unwrap_or_default(),
            requests: d.health.requests,
            errors: d.health.errors,
            cells,
            history: d
                .history
                .into_iter()
                .map(|h| RolloutHistory {
                    at: h.at,
                    event: h.event,
                    detail: h.detail,
                })
                .collect(),
            version: s.version,
            created_at: d.created_at,
            start_at,
        }
    }
}

#[derive(InputObject)]
pub struct StartRolloutInput {
    pub flag_key: String,
    pub environment: String,
    pub variant: String,
    pub stages: Vec<Stage>,
    /// A semver range: tenants whose version is outside it are never exposed.
    pub requires_tenant_version: Option<String>,
    /// Start even when a stage's cohort matches no tenant.
    #[graphql(default)]
    pub allow_empty_cohort: bool,
    /// How long cells have to acknowledge a stage before it turns STUCK.
    #[graphql(default = 30)]
    pub ack_deadline_seconds: i64,
    /// Later than now: the rollout is PENDING (nothing exposed) until then,
    /// and starts its first stage by itself; `advanceRollout` starts it at
    /// once, `rollbackRollout` cancels it. Absent or past: it starts now.
    pub start_at: Option<DateTime<Utc>>,
    pub idempotency_key: String,
}

/// A step of a rollout, as `rolloutProgress` pushes it.
#[derive(SimpleObject)]
pub struct RolloutEvent {
    pub rollout_id: ID,
    pub at: DateTime<Utc>,
    pub event: String,
    pub detail: String,
    pub state: RolloutState,
    pub stage: i32,
}

impl From<Progress> for RolloutEvent {
    fn from(p: Progress) -> Self {
        Self {
            rollout_id: ID(p.rollout_id.to_string()),
            at: p.at,
            event: p.event,
            detail: p.detail,
            state: p.state,
            stage: p.stage as i32,
        }
    }
}

fn rollout_id(id: &ID) -> shared::Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| {
        shared::Error::bad_input("id", format!("`{}` is not a rollout id", id.as_str()))
    })
}

fn may_read(p: &shared::auth::Principal) -> shared::Result<()> {
    if p.reads_everything() {
        Ok(())
    } else {
        Err(shared::Error::Forbidden(
            "reading rollouts needs platform-admin or sre".into(),
        ))
    }
}

#[Object]
impl RolloutQuery {
    async fn rollout(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Rollout>> {
        let (st, p) = caller(ctx).gql()?;
        may_read(p).gql()?;
        let id = rollout_id(&id).gql()?;
        Ok(rollouts::get(&st.db, id).await.gql()?.map(Into::into))
    }

    /// Rollouts, newest first; only those in `state` when given.
    async fn rollouts(
        &self,
        ctx: &Context<'_>,
        state: Option<RolloutState>,
    ) -> Result<Vec<Rollout>> {
        let (st, p) = caller(ctx).gql()?;
        may_read(p).gql()?;
        Ok(rollouts::list(st, state)
            .await
            .gql()?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

async fn operate(ctx: &Context<'_>, action: &str, id: ID, op: Op) -> Result<Rollout> {
    let detail = json!({ "id": id.to_string() });
    let target = Target::Input(Some(id.to_string()));
    let roles = [Role::PlatformAdmin, Role::Sre];
    audited(ctx, action, &roles, detail, target, async |st, p| {
        let id = rollout_id(&id)?;
        rollouts::operate(st, id, op, &p.subject).await
    })
    .await
    .map(Into::into)
}

#[Object]
impl RolloutMutation {
    /// Starts exposing `variant` stage by stage; the first stage is the canary.
    async fn start_rollout(&self, ctx: &Context<'_>, input: StartRolloutInput) -> Result<Rollout> {
        let detail = json!({ "flagKey": input.flag_key, "environment": input.environment, "variant": input.variant, "stages": input.stages, "requiresTenantVersion": input.requires_tenant_version, "startAt": input.start_at, "idempotencyKey": input.idempotency_key });
        let target = Target::Input(Some(input.flag_key.clone()));
        let roles = [Role::PlatformAdmin];
        audited(
            ctx,
            "startRollout",
            &roles,
            detail,
            target,
            async |st, p| {
                let key = idempotency_key(&input.idempotency_key)?;
                let n = NewRollout {
                    flag_key: input.flag_key,
                    environment: input.environment,
                    variant: input.variant,
                    stages: input.stages,
                    requires_tenant_version: input.requires_tenant_version,
                    allow_empty_cohort: input.allow_empty_cohort,
                    ack_deadline_seconds: input.ack_deadline_seconds,
                    start_at: input.start_at,
                };
                rollouts::start(st, &p.subject, &key, n).await
            },
        )
        .await
        .map(Into::into)
    }

    async fn pause_rollout(&self, ctx: &Context<'_>, id: ID) -> Result<Rollout> {
        operate(ctx, "pauseRollout", id, Op::Pause).await
    }

    async fn resume_rollout(&self, ctx: &Context<'_>, id: ID) -> Result<Rollout> {
        operate(ctx, "resumeRollout", id, Op::Resume).await
    }

    /// Moves to the next stage now, skipping the soak and the gates.
    async fn advance_rollout(&self, ctx: &Context<'_>, id: ID) -> Result<Rollout> {
        operate(ctx, "advanceRollout", id, Op::Advance).await
    }

    /// Restores the exposure from before the rollout.
    async fn rollback_rollout(&self, ctx: &Context<'_>, id: ID) -> Result<Rollout> {
        operate(ctx, "rollbackRollout", id, Op::Rollback).await
    }
}

#[Subscription(name = "RolloutSubscription")]
impl RolloutSubscription {
    /// Every step of one rollout as it happens.
    async fn rollout_progress(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<impl Stream<Item = RolloutEvent>> {
        let (st, p) = caller(ctx).gql()?;
        may_read(p).gql()?;
        let id = rollout_id(&id).gql()?;
        Ok(BroadcastStream::new(st.rollout_events.subscribe())
            .filter_map(move |e| e.ok().filter(|e| e.rollout_id == id).map(Into::into)))
    }
}
