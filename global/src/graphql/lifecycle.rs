//! A tenant's provisioning saga as the API shows it, and the
//! `tenantLifecycle` subscription that streams each step as it happens.

use async_graphql::{Context, Enum, ID, Result, SimpleObject};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use shared::IntoGql;
use shared::error::Field;
use shared::ids::TenantId;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::auth::caller;
use crate::State;
use crate::service::saga;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum StepStatus {
    Pending,
    Running,
    Done,
    Failed,
    Compensated,
}

impl StepStatus {
    fn parse(s: &str) -> Self {
        match s {
            saga::STEP_RUNNING => Self::Running,
            saga::STEP_DONE => Self::Done,
            saga::STEP_FAILED => Self::Failed,
            saga::STEP_COMPENSATED => Self::Compensated,
            _ => Self::Pending,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SagaStatus {
    /// Steps are running or being retried.
    Running,
    /// It failed and is undoing what ran.
    Compensating,
    /// Every step is done: the tenant is ACTIVE.
    Done,
    /// It failed and was undone: the tenant is FAILED.
    Failed,
}

/// One step of the saga.
#[derive(SimpleObject)]
pub struct ProvisioningStep {
    /// reserve, place, create, allocate or activate.
    pub name: String,
    pub status: StepStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// How a tenant's provisioning went.
#[derive(SimpleObject)]
pub struct Provisioning {
    pub status: SagaStatus,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Retrying stops here; then the saga compensates.
    pub deadline_at: DateTime<Utc>,
    pub steps: Vec<ProvisioningStep>,
}

impl Provisioning {
    pub async fn load(st: &State, id: TenantId) -> shared::Result<Option<Self>> {
        let Some(s) = saga::get(&st.db, id).await? else {
            return Ok(None);
        };
        let steps = saga::steps(&st.db, id).await?;
        Ok(Some(Self {
            status: match s.status.as_str() {
                saga::COMPENSATING => SagaStatus::Compensating,
                saga::DONE => SagaStatus::Done,
                saga::FAILED => SagaStatus::Failed,
                _ => SagaStatus::Running,
            },
            reason: s.reason,
            deadline_at: s.deadline_at,
            steps: steps
                .into_iter()
                .map(|r| ProvisioningStep {
                    status: StepStatus::parse(&r.status),
                    name: r.name,
                    attempts: r.attempts,
                    last_error: r.last_error,
                    updated_at: r.updated_at,
                })
                .collect(),
        }))
    }
}

/// A step of a tenant's saga changed.
#[derive(SimpleObject)]
pub struct LifecycleStep {
    pub tenant_id: ID,
    pub step: String,
    pub status: StepStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The tenant's status after the change.
    pub tenant_status: String,
    pub at: DateTime<Utc>,
}

/// The stream behind the `tenantLifecycle` subscription: each recorded
/// step as it stands now (in saga order), then every change as it happens.
/// (Members of the tenant and readers by token may subscribe; others get NOT_FOUND.)
pub async fn steps(
    ctx: &Context<'_>,
    tenant_id: ID,
) -> Result<impl Stream<Item = LifecycleStep> + use<>> {
    let (st, p) = caller(ctx).gql()?;
    let id: TenantId = tenant_id.parse().field("tenantId").gql()?;
    crate::service::members::require(
        &st.db,
        p,
        id,
        crate::service::members::Level::Viewer,
        "tenantLifecycle",
    )
    .await
    .gql()?;
    // Subscribe before reading the recorded steps, so that no change falls
    // between the two (one may be sent twice: the snapshot, then the event).
    let live = BroadcastStream::new(st.lifecycle.subscribe()).filter_map(move |ev| {
        let ev = ev.ok()?;
        (ev.tenant_id == id.0).then(|| LifecycleStep {
            tenant_id: ID(ev.tenant_id.to_string()),
            status: StepStatus::parse(&ev.status),
            step: ev.step,
            attempts: ev.attempts,
            last_error: ev.last_error,
            tenant_status: ev.tenant_status,
            at: ev.at,
        })
    });
    let tenant_status = crate::service::directory::get(&st.db, id)
        .await
        .gql()?
        .map(|r| r.status)
        .unwrap_or_default();
    let recorded: Vec<LifecycleStep> = saga::steps(&st.db, id)
        .await
        .gql()?
        .into_iter()
        .map(|r| LifecycleStep {
            tenant_id: ID(id.to_string()),
            status: StepStatus::parse(&r.status),
            step: r.name,
            attempts: r.attempts,
            last_error: r.last_error,
            tenant_status: tenant_status.clone(),
            at: r.updated_at,
        })
        .collect();
    Ok(tokio_stream::iter(recorded).chain(live))
}
