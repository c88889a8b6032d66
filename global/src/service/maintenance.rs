//! Maintenance windows: a scope (cells, regions, tenants) and a time span.
//! While one is in progress, placement avoids its cells and, with
//! `freeze_rollouts`, rollouts do not advance onto its tenants.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use shared::ids::IdempotencyKey;
use shared::{Error, Result};
use uuid::Uuid;

use super::{idempotency, scope};
use crate::State;
use crate::entity::{maintenance, tenant};

/// How far in the past a window may start: the clock skew between the
/// caller and this tier. Anything earlier is refused as "in the past".
const SKEW: Duration = Duration::seconds(60);
/// The longest window.
const MAX_LENGTH: Duration = Duration::days(14);

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Scheduled,
    InProgress,
    Completed,
    Cancelled,
}

/// A window's status at `now`.
pub fn status(m: &maintenance::Model, now: DateTime<Utc>) -> Status {
    if m.cancelled_at.is_some() {
        Status::Cancelled
    } else if now < m.starts_at {
        Status::Scheduled
    } else if now < m.ends_at {
        Status::InProgress
    } else {
        Status::Completed
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    #[serde(default)]
    pub cell_ids: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub tenant_ids: Vec<Uuid>,
}

impl Scope {
    /// The directory rows this scope covers.
    pub fn condition(&self) -> Condition {
        let mut any = Condition::any();
        if !self.cell_ids.is_empty() {
            any = any.add(tenant::Column::CellId.is_in(self.cell_ids.iter().cloned()));
        }
        if !self.regions.is_empty() {
            any = any.add(tenant::Column::Region.is_in(self.regions.iter().cloned()));
        }
        if !self.tenant_ids.is_empty() {
            any = any.add(tenant::Column::Id.is_in(self.tenant_ids.iter().copied()));
        }
        any
    }

    /// Whether the scope covers every tenant of the cell.
    pub fn covers_cell(&self, cell: &str, region: &str) -> bool {
        self.cell_ids.iter().any(|c| c == cell) || self.regions.iter().any(|r| r == region)
    }

    pub fn covers(&self, t: &tenant::Model) -> bool {
        self.covers_cell(&t.cell_id, &t.region) || self.tenant_ids.contains(&t.id)
    }
}

pub fn scope_of(m: &maintenance::Model) -> Result<Scope> {
    serde_json::from_str(&m.scope).map_err(Error::internal)
}

#[derive(Debug, Clone, Serialize)]
pub struct NewWindow {
    pub scope: Scope,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub description: String,
    pub freeze_rollouts: bool,
}

pub async fn get(st: &State, id: Uuid) -> Result<maintenance::Model> {
    maintenance::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("maintenance window {id} not found")))
}

/// Filters of `maintenanceWindows`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// In progress at this instant (and not cancelled).
    pub active_at: Option<DateTime<Utc>>,
    /// Covering this tenant.
    pub tenant: Option<Uuid>,
    /// Overlapping `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

pub async fn list(st: &State, f: Filter) -> Result<Vec<maintenance::Model>> {
    if let (Some(from), Some(to)) = (f.from, f.to)
        && to <= from
    {
        return Err(Error::bad_input("to", "`to` must be after `from`"));
    }
    let mut q = maintenance::Entity::find().order_by_asc(maintenance::Column::StartsAt);
    if let Some(at) = f.active_at {
        q = q
            .filter(maintenance::Column::StartsAt.lte(at))
            .filter(maintenance::Column::EndsAt.gt(at))
            .filter(maintenance::Column::CancelledAt.is_null());
    }
    if let Some(from) = f.from {
        q = q.filter(maintenance::Column::EndsAt.gt(from));
    }
    if let Some(to) = f.to {
        q = q.filter(maintenance::Column::StartsAt.lt(to));
    }
    let rows = q.all(&st.db).await?;
    let Some(tid) = f.tenant else {
        return Ok(rows);
    };
    let t = tenant::Entity::find_by_id(tid)
        .one(&st.db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {tid} not found")))?;
    let mut out = Vec::new();
    for m in rows {
        if scope_of(&m)?.covers(&t) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Windows in progress now.
pub async fn active(st: &State) -> Result<Vec<maintenance::Model>> {
    list(
        st,
        Filter {
            active_at: Some(Utc::now()),
            ..Default::default()
        },
    )
    .await
}

/// Cells an in-progress window covers whole (placement avoids them), with
/// the window that covers each.
pub async fn cells_under_maintenance(
    st: &State,
) -> Result<std::collections::HashMap<String, Uuid>> {
    let mut out = std::collections::HashMap::new();
    for m in active(st).await? {
        let s = scope_of(&m)?;
        for c in st.cells.all() {
            if s.covers_cell(&c.id, &c.region) {
                out.entry(c.id).or_insert(m.id);
            }
        }
    }
    Ok(out)
}

pub async fn schedule(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    n: NewWindow,
) -> Result<maintenance::Model> {
    let now = Utc::now();
    if n.scope.cell_ids.is_empty() && n.scope.regions.is_empty() && n.scope.tenant_ids.is_empty() {
        return Err(Error::bad_input(
            "input.scope",
            "name at least one cell, region or tenant",
        ));
    }
    if n.ends_at <= n.starts_at {
        return Err(Error::bad_input(
            "input.endsAt",
            "a window must end after it starts",
        ));
    }
    if n.ends_at - n.starts_at > MAX_LENGTH {
        return Err(Error::bad_input(
            "input.endsAt",
            format!("a window lasts at most {} days", MAX_LENGTH.num_days()),
        ));
    }
    if n.starts_at < now - SKEW {
        return Err(Error::bad_input(
            "input.startsAt",
            format!("{} is in the past", n.starts_at.to_rfc3339()),
        ));
    }
    if n.description.trim().is_empty() || n.description.len() > 4000 {
        return Err(Error::bad_input(
            "input.description",
            "describe the work in 1 to 4000 bytes",
        ));
    }
    scope::cells(st, "input.scope.cellIds", &n.scope.cell_ids)?;
    scope::regions(st, "input.scope.regions", &n.scope.regions)?;
    scope::tenants(st, "input.scope.tenantIds", &n.scope.tenant_ids).await?;
    let proposed = Uuid::now_v7().to_string();
    let n = &n;
    idempotency::run(
        &st.db,
        "scheduleMaintenance",
        key,
        actor,
        n,
        &proposed,
        |rid| async move {
            let id = Uuid::parse_str(&rid).map_err(Error::internal)?;
            let txn = shared::db::begin_write(&st.db).await?;
            let row = maintenance::ActiveModel {
                id: Set(id),
                scope: Set(serde_json::to_string(&n.scope).map_err(Error::internal)?),
                starts_at: Set(n.starts_at),
                ends_at: Set(n.ends_at),
                description: Set(n.description.trim().to_owned()),
                freeze_rollouts: Set(n.freeze_rollouts),
                cancelled_at: Set(None),
                version: Set(1),
                created_by: Set(actor.to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
            idempotency::complete(&txn, "scheduleMaintenance", key).await?;
            // A window for one tenant is filed under it.
            let tenant = match n.scope.tenant_ids.as_slice() {
                [t] => Some(*t),
                _ => None,
            };
            let target = Some(id.to_string());
            shared::audit::change(&txn, tenant, target, shared::audit::NONE, &row).await?;
            txn.commit().await?;
            Ok(row)
        },
        |rid| async move { get(st, Uuid::parse_str(&rid).map_err(Error::internal)?).await },
    )
    .await
}

/// Ends a window: a SCHEDULED one is CANCELLED, an IN_PROGRESS one
/// COMPLETED now; a finished one is a CONFLICT.
pub async fn end(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    id: Uuid,
    expected_version: i64,
) -> Result<maintenance::Model> {
    idempotency::run(
        &st.db,
        "endMaintenance",
        key,
        actor,
        &(id, expected_version),
        &id.to_string(),
        |_| async move {
            let txn = shared::db::begin_write(&st.db).await?;
            let cur = maintenance::Entity::find_by_id(id)
                .one(&txn)
                .await?
                .ok_or_else(|| Error::NotFound(format!("maintenance window {id} not found")))?;
            if cur.version != expected_version {
                return Err(Error::Conflict(format!(
                    "maintenance window {id} is at version {}; expectedVersion was {expected_version}",
                    cur.version
                )));
            }
            let now = Utc::now();
            let mut q = maintenance::Entity::update_many()
                .col_expr(maintenance::Column::Version, Expr::value(cur.version + 1))
                .col_expr(maintenance::Column::UpdatedAt, Expr::value(now));
            let mut next = maintenance::Model {
                version: cur.version + 1,
                updated_at: now,
                ..cur.clone()
            };
            match status(&cur, now) {
                Status::Scheduled => {
                    q = q.col_expr(maintenance::Column::CancelledAt, Expr::value(Some(now)));
                    next.cancelled_at = Some(now);
                }
                Status::InProgress => {
                    q = q.col_expr(maintenance::Column::EndsAt, Expr::value(now));
                    next.ends_at = now;
                }
                s => {
                    return Err(Error::Conflict(format!(
                        "maintenance window {id} is already {}",
                        if s == Status::Cancelled { "cancelled" } else { "completed" }
                    )));
                }
            }
            let res = q
                .filter(maintenance::Column::Id.eq(id))
                .filter(maintenance::Column::Version.eq(cur.version))
                .exec(&txn)
                .await?;
            if res.rows_affected != 1 {
                return Err(Error::Conflict(format!(
                    "maintenance window {id} changed concurrently; read it and retry"
                )));
            }
            idempotency::complete(&txn, "endMaintenance", key).await?;
            shared::audit::change(&txn, None, Some(id.to_string()), &cur, &next).await?;
            txn.commit().await?;
            Ok(next)
        },
        |_| async move { get(st, id).await },
    )
    .await
}

/// The registry as placement should see it now: cells an in-progress
/// window covers have the state MAINTENANCE.
pub async fn placement_view(st: &State) -> Result<Vec<crate::entity::cell::Model>> {
    let under = cells_under_maintenance(st).await?;
    Ok(st
        .cells
        .all()
        .into_iter()
        .map(|mut c| {
            if under.contains_key(&c.id) {
                c.state = super::cells::MAINTENANCE.to_owned();
            }
            c
        })
        .collect())
}

/// The in-progress window with `freeze_rollouts` that covers a tenant the
/// next stage of a rollout would newly expose, if any: that rollout must
/// not advance. (A percentage split is not resolved here: any covered
/// tenant the cohort's other fields admit counts.)
pub async fn freezing(st: &State, next: &shared::flags::Cohort) -> Result<Option<Uuid>> {
    use sea_orm::{PaginatorTrait, QuerySelect};
    let mut cohort = Condition::all().add(tenant::Column::CellId.ne(""));
    if !next.tenant_ids.is_empty() {
        cohort = cohort.add(tenant::Column::Id.is_in(next.tenant_ids.iter().copied()));
    }
    if !next.cell_ids.is_empty() {
        cohort = cohort.add(tenant::Column::CellId.is_in(next.cell_ids.iter().cloned()));
    }
    if !next.regions.is_empty() {
        cohort = cohort.add(tenant::Column::Region.is_in(next.regions.iter().cloned()));
    }
    if !next.plans.is_empty() {
        cohort = cohort.add(tenant::Column::Plan.is_in(next.plans.iter().cloned()));
    }
    for w in active(st).await?.into_iter().filter(|w| w.freeze_rollouts) {
        let covered = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .filter(cohort.clone())
            .filter(scope_of(&w)?.condition())
            .limit(1)
            .count(&st.db)
            .await?;
        if covered > 0 {
            return Ok(Some(w.id));
        }
    }
    Ok(None)
}
