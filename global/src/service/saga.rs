//! The persisted state of provisioning sagas: the saga row (input, status,
//! deadline, lease) and one row per step (status, attempts, last error).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use shared::db::is_unique_violation;
use shared::ids::{IdempotencyKey, TenantId};
use shared::model::TenantStatus;
use shared::{Error, Result};
use uuid::Uuid;

use crate::entity::{saga, saga_step, tenant};
use crate::service::provisioning::NewTenant;

pub const RUNNING: &str = "RUNNING";
pub const COMPENSATING: &str = "COMPENSATING";
pub const DONE: &str = "DONE";
pub const FAILED: &str = "FAILED";

pub const STEP_PENDING: &str = "PENDING";
pub const STEP_RUNNING: &str = "RUNNING";
pub const STEP_DONE: &str = "DONE";
pub const STEP_FAILED: &str = "FAILED";
pub const STEP_COMPENSATED: &str = "COMPENSATED";

/// One step's change, as `tenantLifecycle` streams it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LifecycleEvent {
    pub tenant_id: Uuid,
    pub step: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The directory status after the change.
    pub tenant_status: String,
    pub at: DateTime<Utc>,
}

/// Who drives a saga and for how long, without renewing, it may.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub duration: Duration,
}

impl Lease {
    fn until(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(self.duration).unwrap_or_default()
    }
}

/// Reserves the slug with a PENDING directory row and records the saga and
/// its steps (`reserve` done), all in one transaction, leased to `lease`.
/// A FAILED tenant's slug is free again, a DELETED one's after
/// `slug_reuse_after`: their rows are replaced. Returns
/// whether this call made the reservation (false: it already existed).
#[allow(clippy::too_many_arguments)]
pub async fn reserve(
    db: &DatabaseConnection,
    id: TenantId,
    key: &IdempotencyKey,
    actor: &str,
    t: &NewTenant,
    steps: &[&str],
    deadline: Duration,
    slug_reuse_after: Duration,
    lease: &Lease,
) -> Result<bool> {
    // Writes come first in each transaction (SQLite must not upgrade a read
    // snapshot to a write): insert, and on a unique violation look why.
    for _ in 0..3 {
        match insert_all(db, id, key, actor, t, steps, deadline, lease).await {
            Ok(()) => return Ok(true),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        if tenant::Entity::find_by_id(id.0).one(db).await?.is_some() {
            return Ok(false); // ours: a concurrent or earlier request reserved it
        }
        let Some(taken) = tenant::Entity::find()
            .filter(tenant::Column::Slug.eq(t.slug.as_str()))
            .one(db)
            .await?
        else {
            continue; // freed meanwhile
        };
        let free_at = taken.updated_at
            + chrono::Duration::from_std(slug_reuse_after).unwrap_or(chrono::Duration::MAX);
        let deleted = taken.status == TenantStatus::Deleted.as_str();
        if deleted && free_at > Utc::now() {
            return Err(Error::Conflict(format!(
                "slug `{}` belonged to a deleted tenant and stays reserved until {}",
                t.slug,
                free_at.to_rfc3339()
            )));
        }
        if !deleted && taken.status != TenantStatus::Failed.as_str() {
            return Err(Error::Conflict(format!(
                "slug `{}` is already taken",
                t.slug
            )));
        }
        let txn = db.begin().await?;
        delete_rows(&txn, taken.id).await?;
        txn.commit().await?;
    }
    Err(Error::Conflict(format!(
        "slug `{}` is contended; retry",
        t.slug
    )))
}

#[allow(clippy::too_many_arguments)]
async fn insert_all(
    db: &DatabaseConnection,
    id: TenantId,
    key: &IdempotencyKey,
    actor: &str,
    t: &NewTenant,
    steps: &[&str],
    deadline: Duration,
    lease: &Lease,
) -> std::result::Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    let input = serde_json::to_string(t).map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    let txn = db.begin().await?;
    let row = tenant::ActiveModel {
        id: Set(id.0),
        slug: Set(t.slug.to_string()),
        region: Set(t.region.to_string()),
        cell_id: Set(String::new()),
        status: Set(TenantStatus::Pending.as_str().to_owned()),
        version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        purge_at: Set(None),
        plan: Set(t.plan.to_string()),
        plan_version: Set(0),
    }
    .insert(&txn)
    .await?;
    saga::ActiveModel {
        tenant_id: Set(id.0),
        idempotency_key: Set(key.to_string()),
        actor: Set(actor.to_owned()),
        input: Set(input),
        status: Set(RUNNING.to_owned()),
        reason: Set(None),
        deadline_at: Set(now + chrono::Duration::from_std(deadline).unwrap_or_default()),
        lease_owner: Set(Some(lease.owner.clone())),
        lease_until: Set(Some(lease.until())),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    crate::service::members::insert_owner(&txn, id, &t.owner).await?;
    for (i, name) in steps.iter().enumerate() {
        let first = i == 0;
        saga_step::ActiveModel {
            tenant_id: Set(id.0),
            name: Set((*name).to_owned()),
            position: Set(i as i32),
            status: Set(if first { STEP_DONE } else { STEP_PENDING }.to_owned()),
            attempts: Set(i32::from(first)),
            last_error: Set(None),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
    }
    // The reservation is the change createTenant records (last: the audit
    // chain's head stays locked until commit); the saga's later steps move
    // the row on in the background.
    shared::audit::change(&txn, Some(id.0), None, shared::audit::NONE, &row)
        .await
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    txn.commit().await
}

/// Deletes a tenant's directory row and saga (a FAILED tenant whose slug is reused).
async fn delete_rows<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<()> {
    saga_step::Entity::delete_many()
        .filter(saga_step::Column::TenantId.eq(id))
        .exec(db)
        .await?;
    saga::Entity::delete_by_id(id).exec(db).await?;
    crate::service::members::delete_all(db, id).await?;
    tenant::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// Takes or renews the lease of an unfinished saga; false when another
/// driver holds a live lease or the saga is over.
pub async fn acquire(db: &DatabaseConnection, id: TenantId, lease: &Lease) -> Result<bool> {
    let now = Utc::now();
    let res = saga::Entity::update_many()
        .col_expr(saga::Column::LeaseOwner, Expr::value(lease.owner.clone()))
        .col_expr(saga::Column::LeaseUntil, Expr::value(lease.until()))
        .filter(saga::Column::TenantId.eq(id.0))
        .filter(saga::Column::Status.is_in([RUNNING, COMPENSATING]))
        .filter(
            Condition::any()
                .add(saga::Column::LeaseUntil.is_null())
                .add(saga::Column::LeaseUntil.lt(now))
                .add(saga::Column::LeaseOwner.eq(lease.owner.clone())),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn get(db: &DatabaseConnection, id: TenantId) -> Result<Option<saga::Model>> {
    Ok(saga::Entity::find_by_id(id.0).one(db).await?)
}

pub async fn steps(db: &DatabaseConnection, id: TenantId) -> Result<Vec<saga_step::Model>> {
    Ok(saga_step::Entity::find()
        .filter(saga_step::Column::TenantId.eq(id.0))
        .order_by_asc(saga_step::Column::Position)
        .all(db)
        .await?)
}

/// Records a step's status, attempts and last error; returns the row.
pub async fn set_step(
    db: &DatabaseConnection,
    id: TenantId,
    name: &str,
    status: &str,
    attempts: i32,
    last_error: Option<String>,
) -> Result<saga_step::Model> {
    let mut q = saga_step::Entity::update_many()
        .col_expr(saga_step::Column::Status, Expr::value(status))
        .col_expr(saga_step::Column::Attempts, Expr::value(attempts))
        .col_expr(saga_step::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(e) = &last_error {
        q = q.col_expr(saga_step::Column::LastError, Expr::value(e.clone()));
    }
    q.filter(saga_step::Column::TenantId.eq(id.0))
        .filter(saga_step::Column::Name.eq(name))
        .exec(db)
        .await?;
    saga_step::Entity::find_by_id((id.0, name.to_owned()))
        .one(db)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("saga step {name} of {id} vanished")))
}

/// Sets the saga's status (and reason).
pub async fn set_status(
    db: &DatabaseConnection,
    id: TenantId,
    status: &str,
    reason: Option<&str>,
) -> Result<()> {
    let mut q = saga::Entity::update_many()
        .col_expr(saga::Column::Status, Expr::value(status))
        .col_expr(saga::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(r) = reason {
        q = q.col_expr(saga::Column::Reason, Expr::value(r));
    }
    if status == DONE || status == FAILED {
        q = q
            .col_expr(
                saga::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                saga::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
    }
    q.filter(saga::Column::TenantId.eq(id.0)).exec(db).await?;
    Ok(())
}

/// A purged tenant's saga keeps its statuses, steps and times, but not
/// its input (name, slug, owner), who asked for it and under which key,
/// nor error texts that may quote them. Only a finished saga reaches a purge.
pub async fn forget_input<C: sea_orm::ConnectionTrait>(db: &C, id: uuid::Uuid) -> Result<()> {
    saga::Entity::update_many()
        .col_expr(saga::Column::Input, Expr::value("{}"))
        .col_expr(saga::Column::Actor, Expr::value(""))
        .col_expr(saga::Column::IdempotencyKey, Expr::value(""))
        .col_expr(saga::Column::Reason, Expr::value(Option::<String>::None))
        .filter(saga::Column::TenantId.eq(id))
        .exec(db)
        .await?;
    saga_step::Entity::update_many()
        .col_expr(
            saga_step::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .filter(saga_step::Column::TenantId.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Unfinished sagas whose lease ran out: their driver died.
pub async fn orphaned(db: &DatabaseConnection) -> Result<Vec<TenantId>> {
    let rows = saga::Entity::find()
        .filter(saga::Column::Status.is_in([RUNNING, COMPENSATING]))
        .filter(
            Condition::any()
                .add(saga::Column::LeaseUntil.is_null())
                .add(saga::Column::LeaseUntil.lt(Utc::now())),
        )
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|s| TenantId(s.tenant_id)).collect())
}
