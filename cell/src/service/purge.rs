//! Deleting every row a cell holds of a tenant: after a grace period ends,
//! or when a provisioning saga compensates. One transaction per tenant, so
//! a crash leaves all or nothing; the sweeper finds a due tenant again until
//! its purge commits, so an interrupted purge resumes.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, Set,
    Statement,
};
use shared::Result;
use shared::db::begin_write;
use shared::ids::TenantId;
use shared::lifecycle::{RECORDS_STREAM, RecordChange, record_entity};
use shared::model::TenantStatus;
use shared::sync::{Event, outbox};

use crate::entity::{purged_tenant, tenant};

/// Every tenant-scoped table of the cell and the column naming the tenant
/// (a UUID column, or text for the quota and metering tables). The audit
/// log is not deleted but erased (`shared::audit::chain::erase_tenant`):
/// its entries keep ids and hashes, so the chain still verifies.
pub const TENANT_TABLES: [(&str, &str); 14] = [
    ("plan_changes", "tenant_id"),
    ("quota_overrides", "tenant_id"),
    ("quota_counters", "tenant_id"),
    ("quota_consume_keys", "tenant_id"),
    ("quota_changes", "tenant_id"),
    ("usage_dedup", "tenant_id"),
    ("usage_totals", "tenant_id"),
    ("entitlement_overrides", "tenant_id"),
    ("environments", "tenant_id"),
    ("projects", "tenant_id"),
    ("secret_refs", "tenant_id"),
    ("tenant_config_history", "tenant_id"),
    ("tenant_config", "tenant_id"),
    ("tenants", "id"),
];

/// Deletes the tenant's rows from every tenant-scoped table; returns how
/// many. The id is remembered in `purged_tenants` in the same transaction,
/// so a `createTenant` for it arriving later is refused.
pub async fn purge(db: &DatabaseConnection, tenant: TenantId) -> Result<u64> {
    let txn = begin_write(db).await?;
    let total = delete_rows(&txn, tenant).await?;
    if total > 0 {
        // Recorded without the tenant id and without its data: only how
        // many rows went (nothing tenant-scoped may remain).
        let before = serde_json::json!({ "tenantId": tenant, "rows": total });
        let target = Some(tenant.to_string());
        shared::audit::change(&txn, None, target, before, shared::audit::NONE).await?;
    }
    txn.commit().await?;
    Ok(total)
}

/// Serialises the transactions that create or purge one tenant: on
/// PostgreSQL a transaction-scoped advisory lock on the tenant id; SQLite
/// transactions begun with `begin_write` already hold the database's write lock.
pub async fn lock_tenant<C: ConnectionTrait>(db: &C, tenant: TenantId) -> Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
            [tenant.0.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Whether this cell purged `tenant` (it may not hold it again).
pub async fn was_purged<C: ConnectionTrait>(db: &C, tenant: TenantId) -> Result<bool> {
    Ok(purged_tenant::Entity::find_by_id(tenant.0)
        .one(db)
        .await?
        .is_some())
}

async fn delete_rows<C: ConnectionTrait>(db: &C, tenant: TenantId) -> Result<u64> {
    lock_tenant(db, tenant).await?;
    purged_tenant::Entity::insert(purged_tenant::ActiveModel {
        id: Set(tenant.0),
        purged_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(purged_tenant::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let backend = db.get_database_backend();
    let mut total = 0;
    for (table, column) in TENANT_TABLES {
        // Text comparison covers UUID and text columns alike.
        let sql = match backend {
            DbBackend::Postgres => format!("DELETE FROM {table} WHERE {column}::text = $1"),
            _ => format!("DELETE FROM {table} WHERE {column} = ? OR {column} = ?"),
        };
        let values: Vec<sea_orm::Value> = match backend {
            DbBackend::Postgres => vec![tenant.0.to_string().into()],
            _ => vec![tenant.0.into(), tenant.0.to_string().into()],
        };
        let res = db
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        total += res.rows_affected();
    }
    // The audit chain keeps the tenant's entries without their values (ids,
    // hashes, actions, changed field names); entries from before values
    // were hashed apart can only go whole, as they always did.
    let (erased, legacy) = shared::audit::chain::erase_tenant(db, tenant.0).await?;
    total += erased;
    if legacy > 0 {
        let sql = match backend {
            DbBackend::Postgres => {
                "DELETE FROM audit_log WHERE tenant_id::text = $1 AND values_hash IS NULL"
            }
            _ => {
                "DELETE FROM audit_log WHERE (tenant_id = ? OR tenant_id = ?) AND values_hash IS NULL"
            }
        };
        let values: Vec<sea_orm::Value> = match backend {
            DbBackend::Postgres => vec![tenant.0.to_string().into()],
            _ => vec![tenant.0.into(), tenant.0.to_string().into()],
        };
        total += db
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
            .rows_affected();
    }
    // Published events about the tenant (usage totals, plan reports, audit
    // entries) are kept only for inspection: they go too (not counted:
    // they are the cell's events, not the tenant's rows).
    outbox::forget_published(db, &tenant.0.to_string()).await?;
    Ok(total)
}

/// Purges every DEPROVISIONING tenant whose grace period is over, each in
/// one transaction with its `cell.tenants` event (DELETED), so the global
/// tier turns its directory row into a tombstone. Returns the purged ids.
pub async fn purge_due(db: &DatabaseConnection, cell_id: &str) -> Result<Vec<TenantId>> {
    let due = tenant::Entity::find()
        .filter(tenant::Column::Status.eq(TenantStatus::Deprovisioning.as_str()))
        .filter(tenant::Column::PurgeAt.lte(Utc::now()))
        .all(db)
        .await?;
    let mut purged = Vec::new();
    for t in due {
        let txn = begin_write(db).await?;
        // Restored meanwhile? Then it stays.
        let still = tenant::Entity::find_by_id(t.id)
            .filter(tenant::Column::Status.eq(TenantStatus::Deprovisioning.as_str()))
            .one(&txn)
            .await?;
        let Some(t) = still else { continue };
        let id = TenantId(t.id);
        delete_rows(&txn, id).await?;
        let change = RecordChange {
            tenant_id: t.id,
            status: TenantStatus::Deleted,
            plan: None,
        };
        let event = Event::new(
            RECORDS_STREAM,
            &record_entity(t.id),
            t.version + 1,
            cell_id,
            serde_json::to_value(change).map_err(shared::Error::internal)?,
        );
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        purged.push(id);
    }
    Ok(purged)
}
