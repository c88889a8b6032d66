//! `impactedTenants`: which tenants a scope touches, with counts by cell
//! and region, and the cells that could not be asked.

use async_graphql::connection::{Connection, CursorType, Edge, OpaqueCursor};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use shared::IntoGql;

use super::types::{Cell, Tenant};
use super::{args::uuid, auth::ops_caller};
use crate::service::impact::{self, MAX_PAGE, Query};

#[derive(Default)]
pub struct ImpactQuery;

/// What to select. Every field given must hold (AND); give at least one.
#[derive(InputObject, Default)]
pub struct ImpactScope {
    #[graphql(default)]
    pub cell_ids: Vec<String>,
    #[graphql(default)]
    pub regions: Vec<String>,
    #[graphql(default)]
    pub plans: Vec<String>,
    /// Tenants the flag serves `flagVariant` (any variant but its off
    /// variant when unset) in `environment` (default `prod`), asked of the
    /// cells.
    pub flag_key: Option<String>,
    pub flag_variant: Option<String>,
    pub environment: Option<String>,
    /// Tenants whose tenant-level effective value of `configKey` equals
    /// `configValue` (JSON, or plain text for a string), asked of the cells.
    pub config_key: Option<String>,
    pub config_value: Option<String>,
    pub incident_id: Option<ID>,
    pub maintenance_window_id: Option<ID>,
    /// Tenants at this directory version.
    pub tenant_version: Option<i64>,
}

/// One impacted tenant.
pub struct ImpactedTenant {
    tenant: crate::entity::tenant::Model,
    reasons: Vec<String>,
}

#[Object]
impl ImpactedTenant {
    async fn tenant(&self) -> Tenant {
        Tenant(self.tenant.clone())
    }
    async fn cell(&self, ctx: &Context<'_>) -> Option<Cell> {
        let st = ctx.data_unchecked::<crate::State>();
        st.cells.get(&self.tenant.cell_id).map(|model| Cell {
            model,
            tenant_count: None,
        })
    }
    /// Why it is selected ("cell unreachable" when its cell did not answer).
    async fn reasons(&self) -> &[String] {
        &self.reasons
    }
}

#[derive(SimpleObject)]
pub struct CellCount {
    pub cell_id: String,
    pub count: i64,
}

#[derive(SimpleObject)]
pub struct RegionCount {
    pub region: String,
    pub count: i64,
}

pub type ImpactedTenantConnection = Connection<OpaqueCursor<String>, ImpactedTenant>;

/// The answer: a page of tenants and counts over the whole selection.
#[derive(SimpleObject)]
pub struct ImpactConnection {
    pub tenants: ImpactedTenantConnection,
    pub total_count: i64,
    pub by_cell: Vec<CellCount>,
    pub by_region: Vec<RegionCount>,
    /// Cells that did not answer within the timeout; their tenants are
    /// listed from the directory with the reason "cell unreachable".
    pub unreachable_cells: Vec<String>,
    /// False when some cell did not answer.
    pub complete: bool,
}

impl ImpactScope {
    fn into_query(self) -> shared::Result<Query> {
        Ok(Query {
            cell_ids: self.cell_ids,
            regions: self.regions,
            plans: self.plans,
            flag_key: self.flag_key,
            flag_variant: self.flag_variant,
            environment: self.environment,
            config_key: self.config_key,
            config_value: self.config_value,
            incident_id: self
                .incident_id
                .map(|i| uuid("scope.incidentId", &i))
                .transpose()?,
            maintenance_window_id: self
                .maintenance_window_id
                .map(|i| uuid("scope.maintenanceWindowId", &i))
                .transpose()?,
            tenant_version: self.tenant_version,
        })
    }
}

/// Runs an impact query for a resolver.
pub(super) async fn impacted_tenants(
    ctx: &Context<'_>,
    scope: Query,
    first: i32,
    after: Option<String>,
) -> Result<ImpactConnection> {
    let (st, _) = ops_caller(ctx, "impactedTenants").gql()?;
    if !(0..=MAX_PAGE as i32).contains(&first) {
        return Err(shared::Error::bad_input(
            "first",
            format!("first must be between 0 and {MAX_PAGE}"),
        )
        .into_gql());
    }
    let after = match after {
        None => None,
        Some(c) => {
            let cursor = OpaqueCursor::<String>::decode_cursor(&c).map_err(|_| {
                shared::Error::bad_input("after", "not a cursor from this API").into_gql()
            })?;
            Some(uuid("after", &cursor.0).gql()?)
        }
    };
    let out = impact::impacted(st, &scope, first as usize, after)
        .await
        .gql()?;
    let mut tenants = Connection::new(after.is_some(), out.has_next_page);
    tenants.edges.extend(out.page.into_iter().map(|i| {
        Edge::new(
            OpaqueCursor(i.tenant.id.to_string()),
            ImpactedTenant {
                tenant: i.tenant,
                reasons: i.reasons,
            },
        )
    }));
    Ok(ImpactConnection {
        tenants,
        total_count: out.total_count,
        by_cell: out
            .by_cell
            .into_iter()
            .map(|(cell_id, count)| CellCount { cell_id, count })
            .collect(),
        by_region: out
            .by_region
            .into_iter()
            .map(|(region, count)| RegionCount { region, count })
            .collect(),
        unreachable_cells: out.unreachable_cells,
        complete: out.complete,
    })
}

#[Object]
impl ImpactQuery {
    /// Which tenants the scope touches. Directory facts are answered here;
    /// flag and config facts are asked of the cells in parallel, each
    /// within the impact timeout. Ordered by tenant id: pages are stable.
    async fn impacted_tenants(
        &self,
        ctx: &Context<'_>,
        scope: ImpactScope,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ImpactConnection> {
        let q = scope.into_query().gql()?;
        impacted_tenants(ctx, q, first.unwrap_or(100), after).await
    }
}
