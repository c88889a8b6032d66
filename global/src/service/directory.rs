//! The tenant directory: which cell is each tenant's home. Creating a
//! tenant runs its provisioning saga (`service::provisioning`).

use std::time::Duration;

use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use shared::ids::{CellId, IdempotencyKey, Plan, Region, Slug, TenantId};
use shared::model::TenantStatus;
use shared::{Error, Result};
use uuid::Uuid;

use crate::State;
use crate::entity::tenant;
use crate::service::{cells, idempotency, placement, provisioning, saga};

const OP_CREATE: &str = "createTenant";

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NewTenant {
    pub slug: Slug,
    pub name: String,
    pub region: Region,
    pub plan: Plan,
    /// The subject who becomes the tenant's first owner.
    #[serde(default)]
    pub owner: String,
}

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

/// Creates a tenant through its provisioning saga (see `provisioning`) and
/// waits for the saga to end, at most the configured wait: the answer is
/// the ACTIVE tenant, or the FAILED one (its `provisioning.reason` says
/// why); a saga still retrying after the wait answers UNAVAILABLE and goes
/// on in the background. Safe to retry with the same idempotency key:
/// concurrent and later retries get the same tenant.
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
    // Refused at once, with nothing made, when placement cannot succeed now
    // (unknown region, no UP cell, no room); a retry with the same key that
    // finds the saga already reserved skips this.
    if get_by_key(st, key).await?.is_none() {
        let counts = cells::tenant_counts(&st.db).await?;
        placement::choose(
            &t.region,
            &t.plan,
            &crate::service::maintenance::placement_view(st).await?,
            &counts,
            &st.provisioning.placement_policy,
        )?;
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
    if let Err(e) = provisioning::reserve(st, id, key, actor, &t).await {
        // Nothing was made: free the key so a corrected retry may use it.
        idempotency::release(&st.db, OP_CREATE, key).await?;
        return Err(e);
    }
    let driver = provisioning::start(st, id);
    wait(st, id, driver).await
}

/// The tenant an earlier createTenant with `key` reserved, if any.
async fn get_by_key(st: &State, key: &IdempotencyKey) -> Result<Option<TenantId>> {
    idempotency::resource(&st.db, OP_CREATE, key)
        .await
        .map(|r| r.and_then(|id| id.parse().ok()))
}

/// Waits for the saga of `id` to end (at most the configured wait).
async fn wait(
    st: &State,
    id: TenantId,
    driver: Option<tokio::task::JoinHandle<()>>,
) -> Result<tenant::Model> {
    let until = tokio::time::Instant::now() + st.provisioning.wait;
    if let Some(task) = driver {
        let _ = tokio::time::timeout_at(until, task).await;
    }
    loop {
        let s = saga::get(&st.db, id).await?;
        let ended = s
            .as_ref()
            .is_none_or(|s| s.status == saga::DONE || s.status == saga::FAILED);
        if ended {
            return get(&st.db, id)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("directory row of {id} vanished")));
        }
        if tokio::time::Instant::now() >= until {
            if let Some(s) = s.as_ref().filter(|s| s.status == saga::COMPENSATING) {
                return Err(Error::Unavailable(format!(
                    "tenant {id} failed ({}) and what was made is being undone; \
                     its status is FAILED",
                    s.reason.as_deref().unwrap_or("no reason recorded")
                )));
            }
            let steps = saga::steps(&st.db, id).await?;
            let at = steps
                .iter()
                .find(|s| s.status != saga::STEP_DONE)
                .map(|s| match &s.last_error {
                    Some(e) => format!("step `{}` (attempt {}): {e}", s.name, s.attempts),
                    None => format!("step `{}`", s.name),
                })
                .unwrap_or_default();
            return Err(Error::Unavailable(format!(
                "tenant {id} is still provisioning at {at}; it keeps retrying until its deadline: \
                 retry with the same idempotency key, or watch tenantLifecycle"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
