//! The tenant directory: which cell is each tenant's home. Creating a
//! tenant runs its provisioning saga (`service::provisioning::create`).

use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use shared::ids::{CellId, Region, Slug, TenantId};
use shared::model::TenantStatus;
use shared::{Error, Result};
use uuid::Uuid;

use crate::entity::tenant;

/// Refuses changes to a tenant that is SUSPENDED, DEPROVISIONING or DELETED.
pub async fn writable(db: &DatabaseConnection, id: TenantId) -> Result<tenant::Model> {
    let row = get(db, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {id} not found")))?;
    let status =
        TenantStatus::parse(&row.status).map_err(|e| Error::internal(anyhow::anyhow!(e.0)))?;
    if matches!(
        status,
        TenantStatus::Suspended | TenantStatus::Deprovisioning | TenantStatus::Deleted
    ) {
        return Err(Error::Conflict(format!(
            "tenant {id} is {}: writes are refused",
            status.as_str()
        )));
    }
    Ok(row)
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

/// Records that the home cell moved tenant `id` to `plan` at plan version
/// `version`; an older report than the directory holds changes nothing.
pub async fn record_plan<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: Uuid,
    plan: &str,
    version: i64,
) -> Result<()> {
    tenant::Entity::update_many()
        .col_expr(tenant::Column::Plan, sea_orm::sea_query::Expr::value(plan))
        .col_expr(
            tenant::Column::PlanVersion,
            sea_orm::sea_query::Expr::value(version),
        )
        .filter(tenant::Column::Id.eq(id))
        .filter(tenant::Column::PlanVersion.lt(version))
        .exec(db)
        .await?;
    Ok(())
}

/// Places a request's tenant for its metrics: the directory row's cell and plan.
pub struct Placement(pub DatabaseConnection);

#[async_trait::async_trait]
impl shared::metrics::operation::PlacementLookup for Placement {
    async fn placement(&self, tenant: &str) -> Option<(Option<String>, Option<String>)> {
        let id: TenantId = tenant.parse().ok()?;
        let row = get(&self.0, id).await.ok().flatten()?;
        Some((Some(row.cell_id), Some(row.plan)))
    }
}
