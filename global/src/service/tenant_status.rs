//! A tenant's life after provisioning: suspend ⇄ resume, deprovision (a
//! grace period) → restore, or → DELETED once its cell purged it.
//!
//! Streams: each directory change is enqueued on `global.directory` in the
//! same transaction (entity `tenant:{id}`, version = directory version) for
//! the home cell to apply; the cell reports its purge on `cell.tenants`
//! (entity `tenant-record:{id}`), applied here by the `global` group.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};
use serde::Serialize;
use shared::ids::{IdempotencyKey, TenantId};
use shared::model::TenantStatus;
use shared::sync::{Event, Transport, applied, consumer, outbox};
use shared::{Error, Result};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::State;
use crate::entity::tenant;
use crate::events::{TenantEvent, TenantEventKind};
use crate::service::idempotency;

pub use shared::lifecycle::{DIRECTORY_STREAM as STREAM, RECORDS_STREAM as CELL_STREAM};
use shared::lifecycle::{DirectoryChange, RecordChange, directory_entity as entity};

#[derive(Debug, Clone, Copy, Serialize)]
pub enum Change {
    Suspend,
    Resume,
    Deprovision { grace_seconds: i64 },
    Restore,
}

impl Change {
    pub fn action(self) -> &'static str {
        match self {
            Change::Suspend => "suspendTenant",
            Change::Resume => "resumeTenant",
            Change::Deprovision { .. } => "deprovisionTenant",
            Change::Restore => "restoreTenant",
        }
    }
}

/// Applies `change` under `expected` (the directory version; None: any).
/// The idempotency key is completed with the answer in the change's own
/// transaction: a retry with the key gets that first answer, not the
/// tenant as it is by then.
pub async fn change(
    st: &State,
    actor: &str,
    id: TenantId,
    expected: Option<i64>,
    key: &IdempotencyKey,
    change: Change,
) -> Result<tenant::Model> {
    if let Change::Deprovision { grace_seconds } = change {
        let max = st.provisioning.max_grace_period.as_secs() as i64;
        if !(0..=max).contains(&grace_seconds) {
            return Err(Error::bad_input(
                "input.gracePeriodSeconds",
                format!("gracePeriodSeconds must be between 0 and {max}"),
            ));
        }
    }
    let op = change.action();
    let hash = idempotency::fingerprint(&(id, expected, change));
    let claim = idempotency::claim(&st.db, op, key, actor, &hash, &id.to_string()).await?;
    if claim.resource_id != id.to_string() {
        return Err(Error::Conflict(format!(
            "idempotency key `{key}` was already used for another tenant"
        )));
    }
    if claim.done {
        return replay(st, id, claim.answer).await;
    }
    match apply(st, id, expected, change, Some((op, key))).await {
        Ok(row) => Ok(row),
        Err(e) => {
            // A concurrent twin with the key may have finished meanwhile.
            if let Some(twin) = idempotency::answer(&st.db, op, key).await? {
                return replay(st, id, Some(twin)).await;
            }
            idempotency::release(&st.db, op, key).await?;
            Err(e)
        }
    }
}

/// The first answer of a keyed change (the tenant as it is now when none
/// was recorded).
async fn replay(st: &State, id: TenantId, answer: Option<String>) -> Result<tenant::Model> {
    if let Some(a) = answer.and_then(|a| serde_json::from_str(&a).ok()) {
        return Ok(a);
    }
    crate::service::directory::get(&st.db, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {id} not found")))
}

async fn apply(
    st: &State,
    id: TenantId,
    expected: Option<i64>,
    change: Change,
    key: Option<(&str, &IdempotencyKey)>,
) -> Result<tenant::Model> {
    let txn = st.db.begin().await?;
    // Write first: locks the row (PostgreSQL) or the database (SQLite, which
    // must not upgrade a read snapshot to a write).
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::UpdatedAt,
            Expr::col(tenant::Column::UpdatedAt),
        )
        .filter(tenant::Column::Id.eq(id.0))
        .exec(&txn)
        .await?;
    let row = tenant::Entity::find_by_id(id.0)
        .one(&txn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {id} not found")))?;
    let status =
        TenantStatus::parse(&row.status).map_err(|e| Error::internal(anyhow::anyhow!(e.0)))?;
    if status == TenantStatus::Deleted {
        return Err(Error::Conflict(format!(
            "tenant {id} is DELETED: it can no longer change"
        )));
    }
    if let Some(v) = expected
        && v != row.version
    {
        return Err(Error::Conflict(format!(
            "tenant {id} is at version {}; expectedVersion was {v}",
            row.version
        )));
    }
    let refuse = |what: &str| {
        Err(Error::Conflict(format!(
            "{what}; tenant {id} is {}",
            status.as_str()
        )))
    };
    let now = Utc::now();
    let (to, purge_at) = match change {
        Change::Suspend if status == TenantStatus::Active => (TenantStatus::Suspended, None),
        Change::Suspend => return refuse("only an ACTIVE tenant can be suspended"),
        Change::Resume if status == TenantStatus::Suspended => (TenantStatus::Active, None),
        Change::Resume => return refuse("only a SUSPENDED tenant can be resumed"),
        Change::Deprovision { grace_seconds }
            if matches!(status, TenantStatus::Active | TenantStatus::Suspended) =>
        {
            (
                TenantStatus::Deprovisioning,
                Some(now + chrono::Duration::seconds(grace_seconds)),
            )
        }
        Change::Deprovision { .. } => {
            return refuse("only an ACTIVE or SUSPENDED tenant can be deprovisioned");
        }
        Change::Restore if status == TenantStatus::Deprovisioning => {
            if let Some(at) = row.purge_at
                && at <= now
            {
                return Err(Error::Conflict(format!(
                    "tenant {id}'s grace period ended at {}: it is being purged and cannot be restored",
                    at.to_rfc3339()
                )));
            }
            (TenantStatus::Active, None)
        }
        Change::Restore => return refuse("only a DEPROVISIONING tenant can be restored"),
    };
    let version = row.version + 1;
    let res = tenant::Entity::update_many()
        .col_expr(tenant::Column::Status, Expr::value(to.as_str()))
        .col_expr(tenant::Column::Version, Expr::value(version))
        .col_expr(tenant::Column::PurgeAt, Expr::value(purge_at))
        .col_expr(tenant::Column::UpdatedAt, Expr::value(now))
        .filter(tenant::Column::Id.eq(id.0))
        .filter(tenant::Column::Version.eq(row.version))
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(Error::Conflict(format!(
            "tenant {id} changed concurrently; read it and retry"
        )));
    }
    let updated = tenant::Model {
        status: to.as_str().to_owned(),
        version,
        purge_at,
        updated_at: now,
        ..row.clone()
    };
    outbox::enqueue(&txn, &event(&updated)?).await?;
    if let Some((op, key)) = key {
        idempotency::complete_with(&txn, op, key, &updated).await?;
    }
    shared::audit::change(&txn, Some(id.0), None, &row, &updated).await?;
    txn.commit().await?;
    st.relay.nudge();
    st.events
        .publish(TenantEvent {
            kind: TenantEventKind::Updated,
            tenant: updated.clone(),
        })
        .await;
    Ok(updated)
}

/// The `global.directory` event describing `row` as it is.
pub fn event(row: &tenant::Model) -> Result<Event> {
    let payload = DirectoryChange {
        tenant_id: row.id,
        cell_id: row.cell_id.clone(),
        status: TenantStatus::parse(&row.status)
            .map_err(|e| Error::internal(anyhow::anyhow!(e.0)))?,
        purge_at: row.purge_at,
    };
    Ok(Event::new(
        STREAM,
        &entity(row.id),
        row.version,
        "global",
        serde_json::to_value(payload).map_err(Error::internal)?,
    ))
}

/// Anti-entropy: the authoritative `(entity, version, last change)` of
/// every directory entry whose home is `cell_id`.
pub async fn authoritative_versions(
    db: &DatabaseConnection,
    cell_id: &str,
) -> Result<Vec<(String, i64, chrono::DateTime<chrono::Utc>)>> {
    let rows = tenant::Entity::find()
        .filter(tenant::Column::CellId.eq(cell_id))
        .filter(tenant::Column::Version.gt(0))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (entity(r.id), r.version, r.updated_at))
        .collect())
}

/// Anti-entropy: enqueues the current `global.directory` event of one tenant again.
pub async fn reenqueue(st: &State, id: TenantId) -> Result<()> {
    let txn = st.db.begin().await?;
    let row = tenant::Entity::find_by_id(id.0)
        .one(&txn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {id} not found")))?;
    outbox::enqueue(&txn, &event(&row)?).await?;
    txn.commit().await?;
    st.relay.nudge();
    Ok(())
}

/// Applies cells' `cell.tenants` events: a purged tenant becomes a DELETED
/// tombstone in the directory (its slug kept for the configured time).
pub async fn apply_record_changes(st: &State, events: &[Event]) -> Result<()> {
    let txn = st.db.begin().await?;
    let mut deleted = Vec::new();
    for e in events {
        let change: RecordChange =
            serde_json::from_value(e.payload.clone()).map_err(Error::internal)?;
        if !applied::advance(&txn, &e.entity, e.version).await? {
            continue;
        }
        if let Some(plan) = change.plan {
            crate::service::directory::record_plan(&txn, change.tenant_id, &plan, e.version)
                .await?;
            continue;
        }
        if change.status == TenantStatus::Deleted {
            tenant::Entity::update_many()
                .col_expr(
                    tenant::Column::Status,
                    Expr::value(TenantStatus::Deleted.as_str()),
                )
                .col_expr(
                    tenant::Column::Version,
                    Expr::col(tenant::Column::Version).add(1),
                )
                .col_expr(tenant::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(tenant::Column::Id.eq(change.tenant_id))
                .filter(tenant::Column::Status.eq(TenantStatus::Deprovisioning.as_str()))
                .exec(&txn)
                .await?;
            // Cells record the tombstone's version too, for anti-entropy.
            if let Some(row) = tenant::Entity::find_by_id(change.tenant_id)
                .one(&txn)
                .await?
            {
                if row.status == TenantStatus::Deleted.as_str() {
                    forget(&txn, change.tenant_id).await?;
                }
                outbox::enqueue(&txn, &event(&row)?).await?;
            }
            deleted.push(change.tenant_id);
        }
    }
    txn.commit().await?;
    if !deleted.is_empty() {
        st.relay.nudge();
    }
    for id in deleted {
        if let Ok(Some(row)) = crate::service::directory::get(&st.db, TenantId(id)).await {
            st.events
                .publish(TenantEvent {
                    kind: TenantEventKind::Updated,
                    tenant: row,
                })
                .await;
        }
    }
    Ok(())
}

/// What the global tier held of a tenant its cell purged goes in the
/// transaction that makes the tombstone: members, usage rollups, the
/// saga's input, the answers kept with its idempotency keys, the values of
/// its audit entries (ids, hashes and changed field names stay, so the
/// chain verifies) and the published events naming it. What remains is
/// listed in docs/DATA-MODEL.md ("What a purge leaves").
async fn forget<C: sea_orm::ConnectionTrait>(txn: &C, id: Uuid) -> Result<()> {
    crate::service::members::delete_all(txn, id).await?;
    crate::service::usage::forget_tenant(txn, id).await?;
    crate::service::saga::forget_input(txn, id).await?;
    // The answers kept with the keys of requests about it (the tenant as it
    // was): a retry after the purge gets the tombstone.
    crate::entity::idempotency::Entity::update_many()
        .col_expr(
            crate::entity::idempotency::Column::Answer,
            Expr::value(Option::<String>::None),
        )
        .filter(crate::entity::idempotency::Column::ResourceId.eq(id.to_string()))
        .exec(txn)
        .await?;
    shared::audit::chain::erase_tenant(txn, id).await?;
    outbox::forget_published(txn, &id.to_string()).await?;
    Ok(())
}

/// The `global` group's consumer of `cell.tenants`.
pub fn spawn_consumer(
    st: State,
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let handler: consumer::Handler = Arc::new(move |events: Vec<Event>| {
        let st = st.clone();
        Box::pin(async move { apply_record_changes(&st, &events).await })
    });
    let cfg = consumer::Config {
        stream: CELL_STREAM.into(),
        group: "global".into(),
        consumer: format!("global:{}", Uuid::now_v7()),
        batch: 100,
        block: Duration::from_secs(1),
        claim_idle: Duration::from_secs(30),
    };
    tokio::spawn(consumer::run(transport, cfg, handler, None, shutdown))
}
