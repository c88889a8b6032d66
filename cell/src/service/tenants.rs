//! The cell's tenant records.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    Set,
};
use shared::db::is_unique_violation;
use shared::ids::{Plan, Region, Slug, TenantId};
use shared::model::{CellTenant, TenantStatus};
use shared::{Error, Result};

use crate::entity::tenant;
use crate::service::purge;

/// What the global tier asks a cell to create.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub slug: Slug,
    pub name: String,
    pub region: Region,
    pub plan: Plan,
}

fn to_record(m: tenant::Model) -> Result<CellTenant> {
    Ok(CellTenant {
        id: TenantId(m.id),
        status: TenantStatus::parse(&m.status)
            .map_err(|e| Error::internal(anyhow::anyhow!(e.0)))?,
        slug: m.slug,
        name: m.name,
        region: m.region,
        plan: m.plan,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn same_request(m: &tenant::Model, t: &NewTenant) -> bool {
    m.slug == t.slug.as_str()
        && m.name == t.name
        && m.region == t.region.as_str()
        && m.plan == t.plan.as_str()
}

/// Creates the tenant, or returns it when the same request already did:
/// the global tier retries with the same id.
pub async fn create(
    db: &DatabaseConnection,
    cell_region: &Region,
    t: NewTenant,
) -> Result<CellTenant> {
    if &t.region != cell_region {
        return Err(Error::bad_input(
            "input.region",
            format!("this cell serves region {cell_region}, not {}", t.region),
        ));
    }
    let txn = shared::db::begin_write(db).await?;
    // A purge of this id (a saga that gave up and compensated) and this
    // create take the same lock: whichever comes second sees the first.
    purge::lock_tenant(&txn, t.id).await?;
    if purge::was_purged(&txn, t.id).await? {
        return Err(Error::Conflict(format!(
            "tenant {} was purged from this cell (its provisioning was undone); \
             it cannot be created again",
            t.id
        )));
    }
    if let Some(existing) = tenant::Entity::find_by_id(t.id.0).one(&txn).await? {
        return if same_request(&existing, &t) {
            to_record(existing)
        } else {
            Err(Error::Conflict(format!(
                "tenant {} already exists with other data",
                t.id
            )))
        };
    }
    let now = Utc::now();
    let row = tenant::ActiveModel {
        id: Set(t.id.0),
        slug: Set(t.slug.to_string()),
        name: Set(t.name.clone()),
        region: Set(t.region.to_string()),
        plan: Set(t.plan.to_string()),
        status: Set(TenantStatus::Active.as_str().to_owned()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        purge_at: Set(None),
        plan_version: Set(1),
    };
    match row.insert(&txn).await {
        Ok(m) => {
            let target = Some(t.id.to_string());
            shared::audit::change(&txn, Some(t.id.0), target, shared::audit::NONE, &m).await?;
            txn.commit().await?;
            to_record(m)
        }
        Err(e) if is_unique_violation(&e) => {
            drop(txn);
            // A concurrent retry may have won the race on the id.
            match tenant::Entity::find_by_id(t.id.0).one(db).await? {
                Some(existing) if same_request(&existing, &t) => to_record(existing),
                Some(_) => Err(Error::Conflict(format!(
                    "tenant {} already exists with other data",
                    t.id
                ))),
                None => Err(Error::Conflict(format!(
                    "slug `{}` is already taken in this cell",
                    t.slug
                ))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get(db: &DatabaseConnection, id: TenantId) -> Result<Option<CellTenant>> {
    tenant::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(to_record)
        .transpose()
}

pub async fn get_many(db: &DatabaseConnection, ids: &[TenantId]) -> Result<Vec<CellTenant>> {
    let ids: Vec<_> = ids.iter().map(|i| i.0).collect();
    tenant::Entity::find()
        .filter(tenant::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(to_record)
        .collect()
}

pub async fn count(db: &DatabaseConnection) -> Result<u64> {
    Ok(tenant::Entity::find().count(db).await?)
}

/// Applies `global.directory` events for this cell's tenants: status and
/// purge time, monotonic per directory version (duplicates are no-ops).
pub async fn apply_directory(
    db: &DatabaseConnection,
    cell_id: &str,
    events: &[shared::sync::Event],
) -> Result<()> {
    use sea_orm::TransactionTrait;
    use sea_orm::sea_query::Expr;
    let txn = db.begin().await?;
    for e in events {
        let change: shared::lifecycle::DirectoryChange =
            serde_json::from_value(e.payload.clone()).map_err(Error::internal)?;
        if change.cell_id != cell_id {
            continue;
        }
        if !shared::sync::applied::advance(&txn, &e.entity, e.version).await? {
            continue;
        }
        tenant::Entity::update_many()
            .col_expr(tenant::Column::Status, Expr::value(change.status.as_str()))
            .col_expr(tenant::Column::PurgeAt, Expr::value(change.purge_at))
            // The record carries the directory's version, so the tenant
            // version flags target is the same in both tiers.
            .col_expr(tenant::Column::Version, Expr::value(e.version))
            .col_expr(tenant::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(tenant::Column::Id.eq(change.tenant_id))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Every record of this cell after `after` (by id), at most `first`: the
/// global tier rebuilds its directory from these after losing it.
pub async fn records_after(
    db: &DatabaseConnection,
    after: Option<uuid::Uuid>,
    first: u64,
) -> Result<Vec<tenant::Model>> {
    use sea_orm::{QueryOrder, QuerySelect};
    let mut q = tenant::Entity::find().order_by_asc(tenant::Column::Id);
    if let Some(a) = after {
        q = q.filter(tenant::Column::Id.gt(a));
    }
    Ok(q.limit(first).all(db).await?)
}

/// Places a request's tenant for its metrics: its plan (the cell is this one).
pub struct Placement(pub DatabaseConnection);

#[async_trait::async_trait]
impl shared::metrics::operation::PlacementLookup for Placement {
    async fn placement(&self, tenant: &str) -> Option<(Option<String>, Option<String>)> {
        let id: uuid::Uuid = tenant.parse().ok()?;
        let row = tenant::Entity::find_by_id(id)
            .one(&self.0)
            .await
            .ok()
            .flatten()?;
        Some((None, Some(row.plan)))
    }
}
