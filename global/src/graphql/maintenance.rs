//! Maintenance windows in the global API: a scope and a time span during
//! which placement avoids the cells and, when asked, rollouts hold. Reads
//! and writes are for platform-admin and sre.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::IntoGql;
use shared::auth::Role;
use uuid::Uuid;

use super::args::{idempotency_key, uuid};
use super::audited::{Target, audited};
use super::auth::ops_caller;
use super::impact::{ImpactConnection, impacted_tenants};
use crate::entity::maintenance as window;
use crate::service::impact::Query as ImpactScope;
use crate::service::maintenance;

mirror_enum! {
    pub enum MaintenanceStatus mirrors maintenance::Status {
        Scheduled,
        InProgress,
        Completed,
        Cancelled,
    }
}

#[derive(Default)]
pub struct MaintenanceQuery;

#[derive(Default)]
pub struct MaintenanceMutation;

/// What a maintenance window covers.
#[derive(SimpleObject, InputObject, Clone, Default)]
#[graphql(name = "MaintenanceScope", input_name = "MaintenanceScopeInput")]
pub struct MaintenanceScope {
    #[graphql(default)]
    pub cell_ids: Vec<String>,
    #[graphql(default)]
    pub regions: Vec<String>,
    #[graphql(default)]
    pub tenant_ids: Vec<String>,
}

#[derive(InputObject)]
pub struct ScheduleMaintenanceInput {
    pub scope: MaintenanceScope,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub description: String,
    /// While in progress, rollouts do not advance onto its tenants.
    #[graphql(default)]
    pub freeze_rollouts: bool,
    pub idempotency_key: String,
}

#[derive(InputObject)]
pub struct EndMaintenanceInput {
    pub id: ID,
    pub expected_version: i64,
    pub idempotency_key: String,
}

pub struct MaintenanceWindow(pub window::Model);

#[Object]
impl MaintenanceWindow {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn scope(&self) -> Result<MaintenanceScope> {
        let s = maintenance::scope_of(&self.0).gql()?;
        Ok(MaintenanceScope {
            cell_ids: s.cell_ids,
            regions: s.regions,
            tenant_ids: s.tenant_ids.iter().map(Uuid::to_string).collect(),
        })
    }
    async fn starts_at(&self) -> DateTime<Utc> {
        self.0.starts_at
    }
    async fn ends_at(&self) -> DateTime<Utc> {
        self.0.ends_at
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn freeze_rollouts(&self) -> bool {
        self.0.freeze_rollouts
    }
    /// SCHEDULED, IN_PROGRESS, COMPLETED (by the clock) or CANCELLED.
    async fn status(&self) -> MaintenanceStatus {
        maintenance::status(&self.0, Utc::now()).into()
    }
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// The tenants the window covers.
    async fn impacted_tenants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ImpactConnection> {
        let scope = ImpactScope {
            maintenance_window_id: Some(self.0.id),
            ..Default::default()
        };
        impacted_tenants(ctx, scope, first.unwrap_or(100), after).await
    }
}

#[Object]
impl MaintenanceQuery {
    async fn maintenance_window(&self, ctx: &Context<'_>, id: ID) -> Result<MaintenanceWindow> {
        let (st, _) = ops_caller(ctx, "maintenanceWindow").gql()?;
        let id = uuid("id", &id).gql()?;
        Ok(MaintenanceWindow(maintenance::get(st, id).await.gql()?))
    }

    /// Windows in progress at `activeAt`, covering `tenantId`, overlapping
    /// `[from, to)`; filters combine.
    async fn maintenance_windows(
        &self,
        ctx: &Context<'_>,
        active_at: Option<DateTime<Utc>>,
        tenant_id: Option<ID>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<MaintenanceWindow>> {
        let (st, _) = ops_caller(ctx, "maintenanceWindows").gql()?;
        let tenant = tenant_id.map(|t| uuid("tenantId", &t)).transpose().gql()?;
        let f = maintenance::Filter {
            active_at,
            tenant,
            from,
            to,
        };
        Ok(maintenance::list(st, f)
            .await
            .gql()?
            .into_iter()
            .map(MaintenanceWindow)
            .collect())
    }
}

const OPERATORS: [Role; 2] = [Role::PlatformAdmin, Role::Sre];

#[Object]
impl MaintenanceMutation {
    async fn schedule_maintenance(
        &self,
        ctx: &Context<'_>,
        input: ScheduleMaintenanceInput,
    ) -> Result<MaintenanceWindow> {
        let detail = json!({
            "startsAt": input.starts_at, "endsAt": input.ends_at,
            "freezeRollouts": input.freeze_rollouts, "idempotencyKey": input.idempotency_key,
        });
        let target = Target::Result(|w: &window::Model| w.id.to_string());
        let action = "scheduleMaintenance";
        audited(ctx, action, &OPERATORS, detail, target, async |st, p| {
            let key = idempotency_key(&input.idempotency_key)?;
            let n = maintenance::NewWindow {
                scope: maintenance::Scope {
                    tenant_ids: crate::service::scope::tenant_ids(
                        "input.scope.tenantIds",
                        &input.scope.tenant_ids,
                    )?,
                    cell_ids: input.scope.cell_ids,
                    regions: input.scope.regions,
                },
                starts_at: input.starts_at,
                ends_at: input.ends_at,
                description: input.description,
                freeze_rollouts: input.freeze_rollouts,
            };
            maintenance::schedule(st, &p.subject, &key, n).await
        })
        .await
        .map(MaintenanceWindow)
    }

    /// Cancels a SCHEDULED window, or completes an IN_PROGRESS one now.
    async fn end_maintenance(
        &self,
        ctx: &Context<'_>,
        input: EndMaintenanceInput,
    ) -> Result<MaintenanceWindow> {
        let detail = json!({ "expectedVersion": input.expected_version });
        let target = Target::Input(Some(input.id.to_string()));
        audited(
            ctx,
            "endMaintenance",
            &OPERATORS,
            detail,
            target,
            async |st, p| {
                let key = idempotency_key(&input.idempotency_key)?;
                let id = uuid("input.id", &input.id)?;
                maintenance::end(st, &p.subject, &key, id, input.expected_version).await
            },
        )
        .await
        .map(MaintenanceWindow)
    }
}
