//! The cell registry: registration, heartbeats, and marking silent cells DOWN.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use shared::ids::{CellId, IdempotencyKey, Region};
use shared::model::TenantStatus;
use shared::{Error, Result};

use crate::entity::{cell, tenant};
use crate::service::idempotency;

pub const UP: &str = "UP";
pub const DOWN: &str = "DOWN";
pub const ACCEPTING: &str = "ACCEPTING";
pub const DRAINING: &str = "DRAINING";
/// Not a stored state: what placement sees of a cell a maintenance window
/// in progress covers (`service::maintenance::placement_view`).
pub const MAINTENANCE: &str = "MAINTENANCE";

/// What a cell says about itself when it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: CellId,
    pub region: Region,
    pub endpoint: String,
    pub capacity: i64,
    /// Kept as they are when not given.
    pub weight: Option<i64>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// An in-memory copy of the registry, so reads need not ask the database
/// where a cell is. Refreshed on every registration and sweep.
#[derive(Clone, Default)]
pub struct Cache(Arc<RwLock<HashMap<String, cell::Model>>>);

impl Cache {
    pub fn get(&self, id: &str) -> Option<cell::Model> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn all(&self) -> Vec<cell::Model> {
        let mut v: Vec<_> = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn replace(&self, cells: Vec<cell::Model>) {
        let map = cells.into_iter().map(|c| (c.id.clone(), c)).collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    fn put(&self, c: cell::Model) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.id.clone(), c);
    }

    pub async fn reload(&self, db: &DatabaseConnection) -> Result<()> {
        self.replace(list(db).await?);
        Ok(())
    }
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<cell::Model>> {
    Ok(cell::Entity::find().all(db).await?)
}

/// Inserts or refreshes a cell; it is UP from now.
pub async fn register(
    db: &DatabaseConnection,
    cache: &Cache,
    r: Registration,
) -> Result<cell::Model> {
    if !(r.endpoint.starts_with("http://") || r.endpoint.starts_with("https://")) {
        return Err(Error::bad_input(
            "input.endpoint",
            "endpoint must be an http:// or https:// URL",
        ));
    }
    if r.capacity < 1 {
        return Err(Error::bad_input(
            "input.capacity",
            "capacity must be at least 1",
        ));
    }
    if r.weight.is_some_and(|w| w < 1) {
        return Err(Error::bad_input(
            "input.weight",
            "weight must be at least 1",
        ));
    }
    if let Some(labels) = &r.labels {
        for (k, v) in labels {
            if CellId::parse(k).is_err() || v.is_empty() || v.len() > 63 {
                return Err(Error::bad_input(
                    "input.labels",
                    format!("label `{k}={v}`: keys are DNS labels, values 1 to 63 characters"),
                ));
            }
        }
    }
    let txn = shared::db::begin_write(db).await?;
    let before = cell::Entity::find_by_id(r.id.to_string()).one(&txn).await?;
    if let Some(existing) = &before
        && existing.region != r.region.as_str()
    {
        return Err(Error::Conflict(format!(
            "cell {} is registered in region {}; a cell cannot move regions",
            r.id, existing.region
        )));
    }
    let now = Utc::now();
    let row = cell::ActiveModel {
        id: sea_orm::Set(r.id.to_string()),
        region: sea_orm::Set(r.region.to_string()),
        endpoint: sea_orm::Set(r.endpoint),
        capacity: sea_orm::Set(r.capacity),
        status: sea_orm::Set(UP.into()),
        last_heartbeat_at: sea_orm::Set(now),
        registered_at: sea_orm::Set(now),
        weight: sea_orm::Set(r.weight.unwrap_or(1)),
        labels: sea_orm::Set(
            serde_json::to_string(&r.labels.clone().unwrap_or_default())
                .map_err(Error::internal)?,
        ),
        state: sea_orm::Set(ACCEPTING.into()),
        version: sea_orm::Set(1),
    };
    let mut update = vec![
        cell::Column::Endpoint,
        cell::Column::Capacity,
        cell::Column::Status,
        cell::Column::LastHeartbeatAt,
    ];
    if r.weight.is_some() {
        update.push(cell::Column::Weight);
    }
    if r.labels.is_some() {
        update.push(cell::Column::Labels);
    }
    cell::Entity::insert(row)
        .on_conflict(
            OnConflict::column(cell::Column::Id)
                .update_columns(update)
                .to_owned(),
        )
        .exec(&txn)
        .await?;
    let saved = cell::Entity::find_by_id(r.id.to_string())
        .one(&txn)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("cell vanished after upsert")))?;
    shared::audit::change(&txn, None, Some(saved.id.clone()), &before, &saved).await?;
    txn.commit().await?;
    cache.put(saved.clone());
    Ok(saved)
}

/// ACCEPTING or DRAINING under `expected` (the cell's version; a stale one
/// is a CONFLICT): a draining cell keeps its tenants and gets no new ones.
/// Setting the state it has changes nothing and keeps the version.
pub async fn set_state(
    db: &DatabaseConnection,
    cache: &Cache,
    actor: &str,
    key: &IdempotencyKey,
    id: &CellId,
    state: &str,
    expected: i64,
) -> Result<cell::Model> {
    let saved = idempotency::run(
        db,
        "setCellState",
        key,
        actor,
        &(id.as_str(), state, expected),
        id.as_str(),
        |_| async move {
            let txn = shared::db::begin_write(db).await?;
            let current = cell::Entity::find_by_id(id.to_string())
                .one(&txn)
                .await?
                .ok_or_else(|| Error::NotFound(format!("cell {id} is not registered")))?;
            if current.version != expected {
                return Err(Error::Conflict(format!(
                    "cell {id} is at version {}; expectedVersion was {expected}",
                    current.version
                )));
            }
            if current.state == state {
                idempotency::complete(&txn, "setCellState", key).await?;
                txn.commit().await?;
                return Ok(current);
            }
            let res = cell::Entity::update_many()
                .col_expr(cell::Column::State, Expr::value(state))
                .col_expr(cell::Column::Version, Expr::value(expected + 1))
                .filter(cell::Column::Id.eq(id.as_str()))
                .filter(cell::Column::Version.eq(expected))
                .exec(&txn)
                .await?;
            if res.rows_affected == 0 {
                return Err(Error::Conflict(format!(
                    "cell {id} changed concurrently; read it and retry"
                )));
            }
            let saved = cell::Entity::find_by_id(id.to_string())
                .one(&txn)
                .await?
                .ok_or_else(|| Error::NotFound(format!("cell {id} is not registered")))?;
            shared::audit::change(&txn, None, Some(id.to_string()), &current, &saved).await?;
            idempotency::complete(&txn, "setCellState", key).await?;
            txn.commit().await?;
            Ok(saved)
        },
        |_| async move {
            cell::Entity::find_by_id(id.to_string())
                .one(db)
                .await?
                .ok_or_else(|| Error::NotFound(format!("cell {id} is not registered")))
        },
    )
    .await?;
    // Both paths answer the stored row (read in the change's transaction,
    // or afresh on a replay): that is what the cache holds.
    cache.put(saved.clone());
    Ok(saved)
}

/// Records a heartbeat; NOT_FOUND tells the cell to register again.
pub async fn heartbeat(db: &DatabaseConnection, cache: &Cache, id: &CellId) -> Result<cell::Model> {
    let res = cell::Entity::update_many()
        .col_expr(cell::Column::LastHeartbeatAt, Expr::value(Utc::now()))
        .col_expr(cell::Column::Status, Expr::value(UP))
        .filter(cell::Column::Id.eq(id.as_str()))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Err(Error::NotFound(format!("cell {id} is not registered")));
    }
    let saved = cell::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("cell {id} is not registered")))?;
    cache.put(saved.clone());
    Ok(saved)
}

/// Marks DOWN every UP cell silent for longer than `timeout`; returns their ids.
pub async fn mark_silent_down(db: &DatabaseConnection, timeout: Duration) -> Result<Vec<String>> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::seconds(15));
    let silent: Vec<String> = cell::Entity::find()
        .filter(cell::Column::Status.eq(UP))
        .filter(cell::Column::LastHeartbeatAt.lt(cutoff))
        .all(db)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    if !silent.is_empty() {
        cell::Entity::update_many()
            .col_expr(cell::Column::Status, Expr::value(DOWN))
            .filter(cell::Column::Id.is_in(silent.clone()))
            .filter(cell::Column::LastHeartbeatAt.lt(cutoff))
            .exec(db)
            .await?;
    }
    Ok(silent)
}

/// How many live (not deleted or failed) tenants each cell holds.
pub async fn tenant_counts(db: &DatabaseConnection) -> Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = tenant::Entity::find()
        .select_only()
        .column(tenant::Column::CellId)
        .column_as(tenant::Column::Id.count(), "n")
        .filter(tenant::Column::Status.is_not_in([
            TenantStatus::Deleted.as_str(),
            TenantStatus::Failed.as_str(),
        ]))
        .group_by(tenant::Column::CellId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}
