//! A tenant's secret references, stored in its home cell.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use shared::db::is_unique_violation;
use shared::error::Field;
use shared::ids::TenantId;
use shared::{Error, Result};

use crate::entity::secret_ref;

fn check_name(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(
            "input.name",
            "name must start with a lowercase letter and hold only a-z, 0-9, '.', '_' or '-' (at most 128)",
        ))
    }
}

/// Creates or changes a reference; the same reference again is a no-op.
pub async fn set(
    db: &DatabaseConnection,
    tenant: TenantId,
    name: &str,
    reference: &str,
    expected: Option<i64>,
) -> Result<secret_ref::Model> {
    check_name(name)?;
    shared::secretref::validate(reference).field("input.ref")?;
    crate::service::config::writable_tenant(db, tenant).await?;
    let txn = shared::db::begin_write(db).await?;
    let existing = secret_ref::Entity::find_by_id((tenant.0, name.to_owned()))
        .one(&txn)
        .await?;
    let stale = |current: i64| {
        Error::Conflict(format!(
            "secret reference `{name}` is at version {current}; expectedVersion was {}",
            expected.unwrap_or(0)
        ))
    };
    let saved = match &existing {
        Some(e) if e.reference == reference => return Ok(e.clone()),
        Some(e) if expected != Some(e.version) => return Err(stale(e.version)),
        Some(e) => {
            let res = secret_ref::Entity::update_many()
                .col_expr(secret_ref::Column::Reference, Expr::value(reference))
                .col_expr(secret_ref::Column::Version, Expr::value(e.version + 1))
                .col_expr(secret_ref::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(secret_ref::Column::TenantId.eq(tenant.0))
                .filter(secret_ref::Column::Name.eq(name))
                .filter(secret_ref::Column::Version.eq(e.version))
                .exec(&txn)
                .await?;
            if res.rows_affected == 0 {
                return Err(stale(e.version + 1));
            }
            secret_ref::Entity::find_by_id((tenant.0, name.to_owned()))
                .one(&txn)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("secret reference vanished")))?
        }
        None if expected.is_some_and(|v| v != 0) => return Err(stale(0)),
        None => {
            let row = secret_ref::ActiveModel {
                tenant_id: Set(tenant.0),
                name: Set(name.to_owned()),
                reference: Set(reference.to_owned()),
                version: Set(1),
                updated_at: Set(Utc::now()),
            };
            row.insert(&txn).await.map_err(|e| {
                if is_unique_violation(&e) {
                    stale(1)
                } else {
                    Error::from(e)
                }
            })?
        }
    };
    let target = Some(name.to_owned());
    shared::audit::change(&txn, Some(tenant.0), target, &existing, &saved).await?;
    txn.commit().await?;
    Ok(saved)
}

pub async fn list(db: &DatabaseConnection, tenant: TenantId) -> Result<Vec<secret_ref::Model>> {
    Ok(secret_ref::Entity::find()
        .filter(secret_ref::Column::TenantId.eq(tenant.0))
        .order_by_asc(secret_ref::Column::Name)
        .all(db)
        .await?)
}
