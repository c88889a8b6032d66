//! Incidents in the global API: the records SREs keep of what is wrong, with
//! a timeline. Reads and writes are for platform-admin and sre.

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
use crate::entity::{incident, incident_event};
use crate::service::impact::Query as ImpactScope;
use crate::service::incidents;

mirror_enum! {
    pub enum Severity mirrors incidents::Severity {
        #[graphql(name = "SEV1")]
        Sev1,
        #[graphql(name = "SEV2")]
        Sev2,
        #[graphql(name = "SEV3")]
        Sev3,
        #[graphql(name = "SEV4")]
        Sev4,
    }
}

mirror_enum! {
    pub enum IncidentStatus mirrors incidents::Status {
        Investigating,
        Identified,
        Monitoring,
        Resolved,
    }
}

fn status(s: &str) -> IncidentStatus {
    incidents::Status::parse(s)
        .unwrap_or(incidents::Status::Investigating)
        .into()
}

#[derive(Default)]
pub struct IncidentQuery;

#[derive(Default)]
pub struct IncidentMutation;

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
    pub status: Option<IncidentStatus>,
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
    pub status: IncidentStatus,
    pub note: String,
}

impl From<incident_event::Model> for IncidentEvent {
    fn from(e: incident_event::Model) -> Self {
        Self {
            at: e.at,
            actor: e.actor,
            status: status(&e.status),
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
        incidents::Severity::parse(&self.0.severity)
            .unwrap_or(incidents::Severity::Sev4)
            .into()
    }
    async fn status(&self) -> IncidentStatus {
        status(&self.0.status)
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
        let st = ctx.data_unchecked::<crate::State>();
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

#[Object]
impl IncidentQuery {
    async fn incident(&self, ctx: &Context<'_>, id: ID) -> Result<Incident> {
        let (st, _) = ops_caller(ctx, "incident").gql()?;
        let id = uuid("id", &id).gql()?;
        Ok(Incident(incidents::get(st, id).await.gql()?))
    }

    /// Newest first.
    async fn incidents(
        &self,
        ctx: &Context<'_>,
        status: Option<IncidentStatus>,
    ) -> Result<Vec<Incident>> {
        let (st, _) = ops_caller(ctx, "incidents").gql()?;
        Ok(incidents::list(st, status.map(Into::into))
            .await
            .gql()?
            .into_iter()
            .map(Incident)
            .collect())
    }
}

const OPERATORS: [Role; 2] = [Role::PlatformAdmin, Role::Sre];

#[Object]
impl IncidentMutation {
    async fn create_incident(
        &self,
        ctx: &Context<'_>,
        input: CreateIncidentInput,
    ) -> Result<Incident> {
        let severity = incidents::Severity::from(input.severity);
        let detail = json!({
            "title": input.title, "severity": severity.as_str(),
            "idempotencyKey": input.idempotency_key,
        });
        let target = Target::Result(|i: &incident::Model| i.id.to_string());
        audited(
            ctx,
            "createIncident",
            &OPERATORS,
            detail,
            target,
            async |st, p| {
                let key = idempotency_key(&input.idempotency_key)?;
                let n = incidents::NewIncident {
                    title: input.title,
                    severity,
                    scope: input.scope.into_service()?,
                    note: input.note,
                };
                incidents::create(st, &p.subject, &key, n).await
            },
        )
        .await
        .map(Incident)
    }

    /// Adds a timeline entry and moves the status when one is given.
    async fn update_incident(
        &self,
        ctx: &Context<'_>,
        input: UpdateIncidentInput,
    ) -> Result<Incident> {
        let status = input.status.map(incidents::Status::from);
        let detail = json!({
            "status": status.map(incidents::Status::as_str), "note": input.note,
            "expectedVersion": input.expected_version,
        });
        let target = Target::Input(Some(input.id.to_string()));
        audited(
            ctx,
            "updateIncident",
            &OPERATORS,
            detail,
            target,
            async |st, p| {
                let key = idempotency_key(&input.idempotency_key)?;
                let u = incidents::Update {
                    id: uuid("input.id", &input.id)?,
                    status,
                    note: input.note,
                    expected_version: input.expected_version,
                };
                incidents::update(st, &p.subject, &key, u).await
            },
        )
        .await
        .map(Incident)
    }
}
