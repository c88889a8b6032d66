use async_graphql::{Context, ID, Object, Result};
use shared::IntoGql;
use shared::auth::Principal;
use shared::error::Field;
use shared::ids::TenantId;

use super::types::{CellInfo, Tenant};
use crate::State;
use crate::service::tenants;

#[derive(Default)]
pub struct Query;

/// Cell GraphQL reads are for the control plane and its operators; a tenant
/// principal sees only its own tenants; data-plane tokens use the hooks.
pub(crate) fn reader<'a>(ctx: &'a Context<'_>) -> shared::Result<(&'a State, &'a Principal)> {
    let st = ctx.data_unchecked::<State>();
    let p = ctx
        .data_opt::<Principal>()
        .ok_or_else(|| shared::Error::Unauthenticated("a bearer token is required".into()))?;
    if let Some(cell) = &p.cell
        && cell != &st.cell_id
    {
        return Err(shared::Error::Forbidden(format!(
            "this token is bound to cell {cell}"
        )));
    }
    if p.has(shared::auth::Role::DataPlane) && !p.reads_everything() {
        return Err(shared::Error::Forbidden(
            "data-plane tokens call the data-plane hooks, not the cell API".into(),
        ));
    }
    Ok((st, p))
}

#[Object(name = "CellQuery")]
impl Query {
    /// This cell: id, region, capacity and how many tenants it holds.
    async fn cell(&self, ctx: &Context<'_>) -> Result<CellInfo> {
        let (st, p) = reader(ctx).gql()?;
        if !p.reads_everything() {
            return Err(shared::Error::Forbidden(
                "reading the cell needs platform-admin or sre".into(),
            )
            .into_gql());
        }
        let count = tenants::count(&st.db).await.gql()?;
        Ok(CellInfo {
            id: st.cell_id.to_string(),
            region: st.region.to_string(),
            capacity: st.capacity,
            tenant_count: count as i64,
        })
    }

    /// The config schema registry as this cell holds it.
    async fn config_keys(&self, ctx: &Context<'_>) -> Result<Vec<shared::configkeys::View>> {
        let (st, _) = reader(ctx).gql()?;
        let keys = shared::configkeys::store::all(&st.db).await.gql()?;
        Ok(keys.into_iter().map(Into::into).collect())
    }

    /// One tenant of this cell.
    async fn tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let (st, p) = reader(ctx).gql()?;
        let id: TenantId = id.parse().field("id").gql()?;
        shared::server::record_tenant(ctx, &id);
        let not_found = || shared::Error::NotFound(format!("tenant {id} not found")).into_gql();
        if !p.can_read_tenant(id) {
            return Err(not_found());
        }
        let row = tenants::get(&st.db, id)
            .await
            .gql()?
            .ok_or_else(not_found)?;
        record_plan(ctx, &row);
        Ok(Tenant::from(row))
    }

    /// The tenants of this cell among `ids` (at most 500); unknown ids are left out.
    async fn tenants(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Tenant>> {
        let (st, p) = reader(ctx).gql()?;
        if ids.len() > 500 {
            return Err(shared::Error::bad_input("ids", "at most 500 ids per call").into_gql());
        }
        let ids = ids
            .iter()
            .map(|i| i.parse::<TenantId>().field("ids"))
            .collect::<shared::Result<Vec<_>>>()
            .gql()?;
        let visible: Vec<_> = ids.into_iter().filter(|i| p.can_read_tenant(*i)).collect();
        let rows = tenants::get_many(&st.db, &visible).await.gql()?;
        // A batch of one (a DataLoader batch for one read) is that tenant's request.
        if let [row] = rows.as_slice() {
            record_plan(ctx, row);
        }
        Ok(rows.into_iter().map(Tenant::from).collect())
    }
}

/// Records the tenant and its plan on the request's span and metrics.
fn record_plan(ctx: &Context<'_>, row: &shared::model::CellTenant) {
    shared::server::record_tenant_at(
        ctx,
        &row.id,
        shared::server::Placement {
            plan: Some(row.plan.as_str()),
            ..Default::default()
        },
    );
}
