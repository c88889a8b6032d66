//! The tenant directory: which cell is each tenant's home. Creating a
//! tenant reserves its slug, places it, has its cell create it, then
//! activates the directory row.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use shared::db::is_unique_violation;
use shared::ids::{CellId, IdempotencyKey, Plan, Region, Slug, TenantId};
use shared::model::TenantStatus;
use shared::{Code, Error, Result};
use uuid::Uuid;

use crate::State;
use crate::entity::tenant;
use crate::service::{cells, idempotency, placement};

const OP_CREATE: &str = "createTenant";

#[derive(Debug, Clone, Serialize)]
pub struct NewTenant {
    pub slug: Slug,
    pub name: String,
    pub region: Region,
    pub plan: Plan,
}

/// Creates a tenant in a cell of its region. Safe to retry with the same
/// idempotency key: concurrent and later retries get the same tenant.
pub async fn create(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    t: NewTenant,
) -> Result<tenant::Model> {
    if !st.plans.iter().any(|p| p == &t.plan) {
        let valid: Vec<&str> = st.plans.iter().map(|p| p.as_str()).collect();
        return Err(Error::bad_input(
            "input.plan",
            format!(
                "unknown plan `{}`; valid plans: {}",
                t.plan,
                valid.join(", ")
            ),
        ));
    }
    let hash = idempotency::fingerprint(&t);
    let proposed = TenantId::new();
    let claim =
        idempotency::claim(&st.db, OP_CREATE, key, actor, &hash, &proposed.to_string()).await?;
    let id: TenantId = claim
        .resource_id
        .parse()
        .map_err(|e: shared::ids::Invalid| Error::internal(anyhow::anyhow!(e.0)))?;
    if claim.done
        && let Some(row) = get(&st.db, id).await?
    {
        return Ok(row);
    }
    let row = match reserve(st, id, &t).await {
        Ok(row) => row,
        Err(e) => {
            // Nothing was made: free the key so a corrected retry may use it.
            idempotency::release(&st.db, OP_CREATE, key).await?;
            return Err(e);
        }
    };
    let cell = st
        .cells
        .get(&row.cell_id)
        .ok_or_else(|| Error::Unavailable(format!("cell {} is not registered", row.cell_id)))?;
    match st.cell_client.create_tenant(&cell, id, &t).await {
        Ok(record) => {
            let row = activate(&st.db, id, record.version).await?;
            idempotency::complete(&st.db, OP_CREATE, key).await?;
            Ok(row)
        }
        Err(e) if matches!(e.code(), Code::Unavailable | Code::Internal) => {
            // The cell may or may not have it: keep the reservation so a retry
            // with the same key finishes the same tenant.
            tracing::warn!(tenant_id = %id, cell = %cell.id, error = %e, "cell did not confirm tenant creation");
            Err(Error::Unavailable(format!(
                "cell {} did not confirm the tenant; retry with the same idempotency key",
                cell.id
            )))
        }
        Err(e) => {
            // The cell refused: undo the reservation.
            tenant::Entity::delete_by_id(id.0).exec(&st.db).await?;
            idempotency::release(&st.db, OP_CREATE, key).await?;
            Err(e)
        }
    }
}

/// Inserts the PROVISIONING directory row (placing the tenant), or returns
/// the one a concurrent or earlier retry made.
async fn reserve(st: &State, id: TenantId, t: &NewTenant) -> Result<tenant::Model> {
    if let Some(existing) = get(&st.db, id).await? {
        return Ok(existing);
    }
    if let Some(taken) = get_by_slug(&st.db, &t.slug).await? {
        if taken.id == id.0 {
            // A concurrent retry with the same key reserved it a moment ago.
            return Ok(taken);
        }
        return Err(Error::Conflict(format!(
            "slug `{}` is already taken{}",
            t.slug,
            if taken.status == TenantStatus::Deleted.as_str() {
                " by a deleted tenant"
            } else {
                ""
            }
        )));
    }
    let counts = cells::tenant_counts(&st.db).await?;
    let cell = placement::choose(&t.region, &st.cells.all(), &counts)?;
    let now = Utc::now();
    let row = tenant::ActiveModel {
        id: sea_orm::Set(id.0),
        slug: sea_orm::Set(t.slug.to_string()),
        region: sea_orm::Set(t.region.to_string()),
        cell_id: sea_orm::Set(cell.id.clone()),
        status: sea_orm::Set(TenantStatus::Provisioning.as_str().to_owned()),
        version: sea_orm::Set(0),
        created_at: sea_orm::Set(now),
        updated_at: sea_orm::Set(now),
    };
    match tenant::Entity::insert(row).exec(&st.db).await {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return match get(&st.db, id).await? {
                Some(existing) => Ok(existing),
                None => Err(Error::Conflict(format!(
                    "slug `{}` is already taken",
                    t.slug
                ))),
            };
        }
        Err(e) => return Err(e.into()),
    }
    get(&st.db, id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("directory row vanished after insert")))
}

async fn activate(db: &DatabaseConnection, id: TenantId, version: i64) -> Result<tenant::Model> {
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::Status,
            Expr::value(TenantStatus::Active.as_str()),
        )
        .col_expr(tenant::Column::Version, Expr::value(version))
        .col_expr(tenant::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(tenant::Column::Id.eq(id.0))
        .exec(db)
        .await?;
    get(db, id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("directory row vanished")))
}

pub async fn get(db: &DatabaseConnection, id: TenantId) -> Result<Option<tenant::Model>> {
    Ok(tenant::Entity::find_by_id(id.0).one(db).await?)
}

pub async fn get_by_slug(db: &DatabaseConnection, slug: &Slug) -> Result<Option<tenant::Model>> {
    Ok(tenant::Entity::find()
        .filter(tenant::Column::Slug.eq(slug.as_str()))
        .one(db)
        .await?)
}

/// Which tenants a listing may show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub region: Option<Region>,
    pub cell_id: Option<CellId>,
    pub status: Option<TenantStatus>,
    /// `None`: every tenant; `Some(ids)`: only these (a tenant principal's).
    pub only: Option<Vec<TenantId>>,
}

impl Filter {
    fn condition(&self) -> Condition {
        let mut c = Condition::all();
        if let Some(r) = &self.region {
            c = c.add(tenant::Column::Region.eq(r.as_str()));
        }
        if let Some(cell) = &self.cell_id {
            c = c.add(tenant::Column::CellId.eq(cell.as_str()));
        }
        if let Some(s) = self.status {
            c = c.add(tenant::Column::Status.eq(s.as_str()));
        }
        if let Some(ids) = &self.only {
            c = c.add(tenant::Column::Id.is_in(ids.iter().map(|i| i.0).collect::<Vec<Uuid>>()));
        }
        c
    }
}

/// One page in id order (ids are time-ordered UUIDv7): `first` rows after
/// `after`, plus whether more follow, plus the total for the filter.
pub async fn page(
    db: &DatabaseConnection,
    filter: &Filter,
    after: Option<TenantId>,
    first: u64,
) -> Result<(Vec<tenant::Model>, bool, u64)> {
    let total = tenant::Entity::find()
        .filter(filter.condition())
        .count(db)
        .await?;
    let mut q = tenant::Entity::find()
        .filter(filter.condition())
        .order_by_asc(tenant::Column::Id);
    if let Some(a) = after {
        q = q.filter(tenant::Column::Id.gt(a.0));
    }
    let mut rows = q.limit(first + 1).all(db).await?;
    let more = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, more, total))
}
