//! Usage rollups from the cells: each event carries a cell's running total
//! for one tenant, metric and hour; applying is monotonic per entity
//! version, so redelivery and reordering are harmless.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use shared::quota::api::{Granularity, UsagePoint};
use shared::quota::{self, Rollup, window};
use shared::sync::{Event, Transport, consumer};
use shared::{Error, Result};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::entity::usage_rollup;

/// Applies rollups in one transaction, each only if newer than what is
/// held, and none of a DELETED tenant (a total published before its purge
/// but delivered after it must not bring its usage back).
pub async fn apply(db: &DatabaseConnection, events: &[Event]) -> Result<usize> {
    // It reads (is the tenant deleted?) before it writes: take SQLite's write
    // lock at BEGIN so the upgrade cannot fail as "database is locked".
    let txn = shared::db::begin_write(db).await?;
    let mut changed = 0;
    for e in events {
        let r: Rollup = serde_json::from_value(e.payload.clone()).map_err(Error::internal)?;
        if is_deleted(&txn, r.tenant_id).await? {
            continue;
        }
        if !shared::sync::applied::advance(&txn, &e.entity, e.version).await? {
            continue;
        }
        upsert(&txn, &r, e.version).await?;
        changed += 1;
    }
    txn.commit().await?;
    Ok(changed)
}

async fn is_deleted<C: ConnectionTrait>(db: &C, tenant: Uuid) -> Result<bool> {
    use crate::entity::tenant;
    Ok(tenant::Entity::find_by_id(tenant)
        .filter(tenant::Column::Status.eq(shared::model::TenantStatus::Deleted.as_str()))
        .one(db)
        .await?
        .is_some())
}

/// A purged tenant's usage goes: its rollups and the versions applied of
/// them (entities `usage:{tenant}:…`).
pub async fn forget_tenant<C: ConnectionTrait>(db: &C, tenant: Uuid) -> Result<()> {
    usage_rollup::Entity::delete_many()
        .filter(usage_rollup::Column::TenantId.eq(tenant))
        .exec(db)
        .await?;
    shared::sync::applied::forget_prefix(db, &format!("usage:{tenant}:")).await?;
    Ok(())
}

async fn upsert<C: ConnectionTrait>(db: &C, r: &Rollup, version: i64) -> Result<()> {
    usage_rollup::Entity::insert(usage_rollup::ActiveModel {
        tenant_id: Set(r.tenant_id),
        metric: Set(r.metric.clone()),
        hour_start: Set(r.hour_start),
        cell_id: Set(r.cell_id.clone()),
        amount: Set(r.amount),
        version: Set(version),
    })
    .on_conflict(
        OnConflict::columns([
            usage_rollup::Column::TenantId,
            usage_rollup::Column::Metric,
            usage_rollup::Column::HourStart,
        ])
        .update_columns([
            usage_rollup::Column::CellId,
            usage_rollup::Column::Amount,
            usage_rollup::Column::Version,
        ])
        .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

/// The tenant's usage of `metric` in `[from, to)`, summed per bucket of
/// `granularity` (buckets without usage are left out).
pub async fn query(
    db: &DatabaseConnection,
    tenant: Uuid,
    metric: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
) -> Result<Vec<UsagePoint>> {
    if from >= to {
        return Err(Error::bad_input("from", "from must be before to"));
    }
    let rows = usage_rollup::Entity::find()
        .filter(usage_rollup::Column::TenantId.eq(tenant))
        .filter(usage_rollup::Column::Metric.eq(metric))
        .filter(usage_rollup::Column::HourStart.gte(window::bounds(quota::Period::Hour, from).0))
        .filter(usage_rollup::Column::HourStart.lt(to))
        .order_by_asc(usage_rollup::Column::HourStart)
        .all(db)
        .await?;
    let mut points: Vec<UsagePoint> = Vec::new();
    for r in rows {
        let start = window::bounds(granularity.period(), r.hour_start).0;
        match points.last_mut() {
            Some(p) if p.start == start => p.amount += r.amount,
            _ => points.push(UsagePoint {
                start,
                amount: r.amount,
            }),
        }
    }
    Ok(points)
}

/// Consumes `cell.usage` until `shutdown`.
pub fn spawn(
    db: DatabaseConnection,
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let handler: consumer::Handler = Arc::new(move |events: Vec<Event>| {
        let db = db.clone();
        Box::pin(async move { apply(&db, &events).await.map(|_| ()) })
    });
    let cfg = consumer::Config {
        stream: quota::USAGE_STREAM.into(),
        group: "global".into(),
        consumer: format!("global:{}", Uuid::now_v7()),
        batch: 200,
        block: Duration::from_secs(1),
        claim_idle: Duration::from_secs(30),
    };
    tokio::spawn(consumer::run(transport, cfg, handler, None, shutdown))
}
