//! Incidents and maintenance windows: the ops records SREs keep. Reads and
//! writes are for platform-admin and sre.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::IntoGql;
use shared::audit;
use shared::auth::{Principal, Role};
use shared::error::Field;
use shared::ids::IdempotencyKey;
use uuid::Uuid;

use super::auth::caller;
use super::impact::{ImpactConnection, impacted_tenants};
use crate::State;
use crate::entity::{incident, incident_event, maintenance as window};
use crate::service::impact::Query as ImpactScope;
use crate::service::incidents::{self, Severity, Status};
use crate::service::maintenance::{self, Status as WindowStatus};

#[derive(Default)]
pub struct OpsQuery;

#[derive(Default)]
pub struct OpsMutation;

pub(super) fn ops_caller<'a>(
    ctx: &'a Context<'_>,
    action: &str,
) -> shared::Result<(&'a State, &'a Principal)> {
    let (st, p) = caller(ctx)?;
    p.require_any(&[Role::PlatformAdmin, Role::Sre], action)?;
    Ok((st, p))
}

fn idem(key: &str) -> shared::Result<IdempotencyKey> {
    IdempotencyKey::parse(key).field("input.idempotencyKey")
}

pub(super) fn uuid(field: &str, id: &str) -> shared::Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| shared::Error::bad_input(field, format!("`{id}` is not an id")))
}

/// What an incident touches.
#[derive(SimpleObject, InputObject, Clone, Default)]
#[graphql(name = "IncidentScope", input_name = "IncidentScopeInput")]
pub struct IncidentScope {
    #[graphql(default)]
    pub cell_ids: Vec<String>,
    #[graphql(default)]
    pub regions: Vec<String>,
    /// Free-form component names (`api`, `billing`); for people, they map
    /// to no tenant.
    #[graphql(default)]
    pub components: Vec<String>,
    #[graphql(default)]
    pub flag_keys: Vec<String>,
    #[graphql(default)]
    pub tenant_ids: Vec<String>,
}

impl IncidentScope {
    fn into_service(self) -> shared::Result<incidents::Scope> {
        Ok(incidents::Scope {
            tenant_ids: crate::service::scope::tenant_ids(
                "input.scope.tenantIds",
                &self.tenant_ids,
            )?,
            cell_ids: self.cell_ids,
            regions: self.regions,
            components: self.components,
            flag_keys: self.flag_keys,
        })
    }

    fn from_service(s: incidents::Scope) -> Self {
        Self {
            cell_ids: s.cell_ids,
            regions: s.regions,
            components: s.components,
            flag_keys: s.flag_keys,
            tenant_ids: s.tenant_ids.iter().map(Uuid::to_string).collect(),
        }
    }
}

#[derive(InputObject)]
pub struct CreateIncidentInput {
    pub title: String,
    pub severity: Severity,
    pub scope: IncidentScope,
    /// The first timeline entry (default "opened").
    pub note: Option<String>,
    pub idempotency_key: String,
}

#[derive(InputObject)]
pub struct UpdateIncidentInput {
    pub id: ID,
    /// The new status; omit to add a note only.
    pub status: Option<Status>,
    /// The timeline entry.
    pub note: String,
    pub expected_version: i64,
    pub idempotency_key: String,
}

/// One timeline entry.
#[derive(SimpleObject)]
pub struct IncidentEvent {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub status: Status,
    pub note: String,
}

impl From<incident_event::Model> for IncidentEvent {
    fn from(e: incident_event::Model) -> Self {
        Self {
            at: e.at,
            actor: e.actor,
            status: Status::parse(&e.status).unwrap_or(Status::Investigating),
            note: e.note,
        }
    }
}

pub struct Incident(pub incident::Model);

#[Object]
impl Incident {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn severity(&self) -> Severity {
        Severity::parse(&self.0.severity).unwrap_or(Severity::Sev4)
    }
    async fn status(&self) -> Status {
        Status::parse(&self.0.status).unwrap_or(Status::Investigating)
    }
    async fn scope(&self) -> Result<IncidentScope> {
        Ok(IncidentScope::from_service(
            incidents::scope_of(&self.0).gql()?,
        ))
    }
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    /// Oldest first.
    async fn timeline(&self, ctx: &Context<'_>) -> Result<Vec<IncidentEvent>> {
        let st = ctx.data_unchecked::<State>();
        Ok(incidents::timeline(st, self.0.id)
            .await
            .gql()?
            .into_iter()
            .map(IncidentEvent::from)
            .collect())
    }
    /// The tenants this incident touches, asked of the cells where its
    /// scope names flags.
    async fn impacted_tenants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ImpactConnection> {
        let scope = ImpactScope {
            incident_id: Some(self.0.id),
            ..Default::default()
        };
        impacted_tenants(ctx, scope, first.unwrap_or(100), after).await
    }
}

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
    async fn status(&self) -> WindowStatus {
        maintenance::status(&self.0, Utc::now())
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
impl OpsQuery {
    async fn incident(&self, ctx: &Context<'_>, id: ID) -> Result<Incident> {
        let (st, _) = ops_caller(ctx, "incident").gql()?;
        let id = uuid("id", &id).gql()?;
        Ok(Incident(incidents::get(st, id).await.gql()?))
    }

    /// Newest first.
    async fn incidents(&self, ctx: &Context<'_>, status: Option<Status>) -> Result<Vec<Incident>> {
        let (st, _) = ops_caller(ctx, "incidents").gql()?;
        Ok(incidents::list(st, status)
            .await
            .gql()?
            .into_iter()
            .map(Incident)
            .collect())
    }

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

#[Object]
impl OpsMutation {
    async fn create_incident(
        &self,
        ctx: &Context<'_>,
        input: CreateIncidentInput,
    ) -> Result<Incident> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({
            "title": input.title, "severity": input.severity.as_str(),
            "idempotencyKey": input.idempotency_key,
        });
        let trail = audit::Trail::new(p, "createIncident", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin, Role::Sre], "createIncident")?;
                let key = idem(&input.idempotency_key)?;
                let n = incidents::NewIncident {
                    title: input.title,
                    severity: input.severity,
                    scope: input.scope.into_service()?,
                    note: input.note,
                };
                incidents::create(st, &p.subject, &key, n).await
            })
            .await;
        let target = result.as_ref().ok().map(|i| i.id.to_string());
        trail.finish(&st.db, None, target, &result).await.gql()?;
        Ok(Incident(result.gql()?))
    }

    /// Adds a timeline entry and moves the status when one is given.
    async fn update_incident(
        &self,
        ctx: &Context<'_>,
        input: UpdateIncidentInput,
    ) -> Result<Incident> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({
            "status": input.status.map(Status::as_str), "note": input.note,
            "expectedVersion": input.expected_version,
        });
        let target = Some(input.id.to_string());
        let trail = audit::Trail::new(p, "updateIncident", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin, Role::Sre], "updateIncident")?;
                let key = idem(&input.idempotency_key)?;
                let u = incidents::Update {
                    id: uuid("input.id", &input.id)?,
                    status: input.status,
                    note: input.note,
                    expected_version: input.expected_version,
                };
                incidents::update(st, &p.subject, &key, u).await
            })
            .await;
        trail.finish(&st.db, None, target, &result).await.gql()?;
        Ok(Incident(result.gql()?))
    }

    async fn schedule_maintenance(
        &self,
        ctx: &Context<'_>,
        input: ScheduleMaintenanceInput,
    ) -> Result<MaintenanceWindow> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({
            "startsAt": input.starts_at, "endsAt": input.ends_at,
            "freezeRollouts": input.freeze_rollouts, "idempotencyKey": input.idempotency_key,
        });
        let trail = audit::Trail::new(p, "scheduleMaintenance", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin, Role::Sre], "scheduleMaintenance")?;
                let key = idem(&input.idempotency_key)?;
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
            .await;
        let target = result.as_ref().ok().map(|w| w.id.to_string());
        trail.finish(&st.db, None, target, &result).await.gql()?;
        Ok(MaintenanceWindow(result.gql()?))
    }

    /// Cancels a SCHEDULED window, or completes an IN_PROGRESS one now.
    async fn end_maintenance(
        &self,
        ctx: &Context<'_>,
        input: EndMaintenanceInput,
    ) -> Result<MaintenanceWindow> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({ "expectedVersion": input.expected_version });
        let target = Some(input.id.to_string());
        let trail = audit::Trail::new(p, "endMaintenance", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin, Role::Sre], "endMaintenance")?;
                let key = idem(&input.idempotency_key)?;
                let id = uuid("input.id", &input.id)?;
                maintenance::end(st, &p.subject, &key, id, input.expected_version).await
            })
            .await;
        trail.finish(&st.db, None, target, &result).await.gql()?;
        Ok(MaintenanceWindow(result.gql()?))
    }
}
