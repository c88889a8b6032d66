//! Incidents: a title, a severity, a scope (cells, regions, components,
//! flags, tenants) and a status moved along with timeline entries. Every
//! change is keyed (idempotency), versioned and audited by the resolver.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use shared::ids::IdempotencyKey;
use shared::{Error, Result};
use uuid::Uuid;

use super::{idempotency, scope};
use crate::State;
use crate::entity::{incident, incident_event};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
            Severity::Sev4 => "SEV4",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Sev1, Self::Sev2, Self::Sev3, Self::Sev4]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Investigating => "INVESTIGATING",
            Status::Identified => "IDENTIFIED",
            Status::Monitoring => "MONITORING",
            Status::Resolved => "RESOLVED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Investigating,
            Self::Identified,
            Self::Monitoring,
            Self::Resolved,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// What an incident touches. A tenant is impacted when it lives in one of
/// the cells or regions, is named, or is served a non-off variant of one
/// of the flags; components are for people (no tenant mapping).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    #[serde(default)]
    pub cell_ids: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub flag_keys: Vec<String>,
    #[serde(default)]
    pub tenant_ids: Vec<Uuid>,
}

impl Scope {
    fn is_empty(&self) -> bool {
        self.cell_ids.is_empty()
            && self.regions.is_empty()
            && self.components.is_empty()
            && self.flag_keys.is_empty()
            && self.tenant_ids.is_empty()
    }
}

pub fn scope_of(m: &incident::Model) -> Result<Scope> {
    serde_json::from_str(&m.scope).map_err(Error::internal)
}

#[derive(Debug, Clone, Serialize)]
pub struct NewIncident {
    pub title: String,
    pub severity: Severity,
    pub scope: Scope,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Update {
    pub id: Uuid,
    pub status: Option<Status>,
    pub note: String,
    pub expected_version: i64,
}

const MAX_TITLE: usize = 200;
const MAX_NOTE: usize = 4000;

async fn check_scope(st: &State, s: &Scope) -> Result<()> {
    if s.is_empty() {
        return Err(Error::bad_input(
            "input.scope",
            "name at least one cell, region, component, flag or tenant",
        ));
    }
    scope::cells(st, "input.scope.cellIds", &s.cell_ids)?;
    scope::regions(st, "input.scope.regions", &s.regions)?;
    scope::flags(st, "input.scope.flagKeys", &s.flag_keys).await?;
    scope::tenants(st, "input.scope.tenantIds", &s.tenant_ids).await?;
    if let Some(c) = s
        .components
        .iter()
        .find(|c| c.trim().is_empty() || c.len() > 100)
    {
        return Err(Error::bad_input(
            "input.scope.components",
            format!("component names are 1 to 100 characters, not `{c}`"),
        ));
    }
    Ok(())
}

fn check_note(field: &str, note: &str) -> Result<()> {
    if note.len() > MAX_NOTE {
        return Err(Error::bad_input(
            field,
            format!("a note is at most {MAX_NOTE} bytes"),
        ));
    }
    Ok(())
}

pub async fn get(st: &State, id: Uuid) -> Result<incident::Model> {
    incident::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("incident {id} not found")))
}

pub async fn list(st: &State, status: Option<Status>) -> Result<Vec<incident::Model>> {
    let mut q = incident::Entity::find().order_by_desc(incident::Column::CreatedAt);
    if let Some(s) = status {
        q = q.filter(incident::Column::Status.eq(s.as_str()));
    }
    Ok(q.all(&st.db).await?)
}

pub async fn timeline(st: &State, id: Uuid) -> Result<Vec<incident_event::Model>> {
    Ok(incident_event::Entity::find()
        .filter(incident_event::Column::IncidentId.eq(id))
        .order_by_asc(incident_event::Column::At)
        .order_by_asc(incident_event::Column::Id)
        .all(&st.db)
        .await?)
}

fn event(incident: Uuid, actor: &str, status: &str, note: String) -> incident_event::ActiveModel {
    incident_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        incident_id: Set(incident),
        at: Set(Utc::now()),
        actor: Set(actor.to_owned()),
        status: Set(status.to_owned()),
        note: Set(note),
    }
}

pub async fn create(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    n: NewIncident,
) -> Result<incident::Model> {
    let title = n.title.trim().to_owned();
    if title.is_empty() || title.len() > MAX_TITLE {
        return Err(Error::bad_input(
            "input.title",
            format!("a title is 1 to {MAX_TITLE} characters"),
        ));
    }
    check_scope(st, &n.scope).await?;
    if let Some(note) = &n.note {
        check_note("input.note", note)?;
    }
    let proposed = Uuid::now_v7().to_string();
    let n = &n;
    idempotency::run(
        &st.db,
        "createIncident",
        key,
        actor,
        n,
        &proposed,
        |rid| async move {
            let id = Uuid::parse_str(&rid).map_err(Error::internal)?;
            let now = Utc::now();
            let txn = shared::db::begin_write(&st.db).await?;
            let status = Status::Investigating.as_str();
            let row = incident::ActiveModel {
                id: Set(id),
                title: Set(title),
                severity: Set(n.severity.as_str().to_owned()),
                status: Set(status.to_owned()),
                scope: Set(serde_json::to_string(&n.scope).map_err(Error::internal)?),
                version: Set(1),
                created_by: Set(actor.to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
                resolved_at: Set(None),
            }
            .insert(&txn)
            .await?;
            let note = n.note.clone().unwrap_or_else(|| "opened".into());
            event(id, actor, status, note).insert(&txn).await?;
            idempotency::complete(&txn, "createIncident", key).await?;
            let target = Some(id.to_string());
            shared::audit::change(&txn, None, target, shared::audit::NONE, &row).await?;
            txn.commit().await?;
            Ok(row)
        },
        |rid| async move { get(st, Uuid::parse_str(&rid).map_err(Error::internal)?).await },
    )
    .await
}

/// Adds a timeline entry, moving the status when one is given.
pub async fn update(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    u: Update,
) -> Result<incident::Model> {
    if u.note.trim().is_empty() {
        return Err(Error::bad_input(
            "input.note",
            "say what changed: a timeline entry needs a note",
        ));
    }
    check_note("input.note", &u.note)?;
    let id = u.id;
    let u = &u;
    idempotency::run(
        &st.db,
        "updateIncident",
        key,
        actor,
        u,
        &id.to_string(),
        |_| async move {
            let txn = shared::db::begin_write(&st.db).await?;
            let cur = incident::Entity::find_by_id(id)
                .one(&txn)
                .await?
                .ok_or_else(|| Error::NotFound(format!("incident {id} not found")))?;
            if cur.version != u.expected_version {
                return Err(Error::Conflict(format!(
                    "incident {id} is at version {}; expectedVersion was {}",
                    cur.version, u.expected_version
                )));
            }
            let status = u
                .status
                .map(Status::as_str)
                .unwrap_or(cur.status.as_str())
                .to_owned();
            let now = Utc::now();
            let resolved_at = match (status.as_str(), cur.resolved_at) {
                ("RESOLVED", Some(at)) => Some(at),
                ("RESOLVED", None) => Some(now),
                _ => None,
            };
            let res = incident::Entity::update_many()
                .col_expr(incident::Column::Status, Expr::value(status.clone()))
                .col_expr(incident::Column::Version, Expr::value(cur.version + 1))
                .col_expr(incident::Column::UpdatedAt, Expr::value(now))
                .col_expr(incident::Column::ResolvedAt, Expr::value(resolved_at))
                .filter(incident::Column::Id.eq(id))
                .filter(incident::Column::Version.eq(cur.version))
                .exec(&txn)
                .await?;
            if res.rows_affected != 1 {
                return Err(Error::Conflict(format!(
                    "incident {id} changed concurrently; read it and retry"
                )));
            }
            event(id, actor, &status, u.note.clone())
                .insert(&txn)
                .await?;
            idempotency::complete(&txn, "updateIncident", key).await?;
            let new = incident::Model {
                status,
                version: cur.version + 1,
                updated_at: now,
                resolved_at,
                ..cur.clone()
            };
            shared::audit::change(&txn, None, Some(id.to_string()), &cur, &new).await?;
            txn.commit().await?;
            Ok(new)
        },
        |_| async move { get(st, id).await },
    )
    .await
}
