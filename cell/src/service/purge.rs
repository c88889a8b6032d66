//! Deleting every row a cell holds of a tenant: after a grace period ends,
//! or when a provisioning saga compensates. One transaction, so a crash
//! leaves all or nothing; running it again is a no-op, so an interrupted
//! purge is simply run again.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use shared::Result;
use shared::ids::TenantId;

/// Every tenant-scoped table of the cell and the column naming the tenant.
pub const TENANT_TABLES: [(&str, &str); 7] = [
    ("environments", "tenant_id"),
    ("projects", "tenant_id"),
    ("secret_refs", "tenant_id"),
    ("tenant_config_history", "tenant_id"),
    ("tenant_config", "tenant_id"),
    ("audit_log", "tenant_id"),
    ("tenants", "id"),
];

/// Deletes the tenant's rows from every tenant-scoped table; returns how many.
pub async fn purge(db: &DatabaseConnection, tenant: TenantId) -> Result<u64> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    let mut total = 0;
    for (table, column) in TENANT_TABLES {
        let sql = match backend {
            DbBackend::Postgres => format!("DELETE FROM {table} WHERE {column} = $1"),
            _ => format!("DELETE FROM {table} WHERE {column} = ?"),
        };
        let res = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [tenant.0.into()],
            ))
            .await?;
        total += res.rows_affected();
    }
    txn.commit().await?;
    Ok(total)
}
