use async_graphql::connection::{Connection, Edge, OpaqueCursor};
use async_graphql::{Context, ID, Object, Result};
use shared::IntoGql;
use shared::auth::Role;
use shared::error::Field;
use shared::ids::{CellId, Region, Slug, TenantId};
use shared::server::{Placement, record_tenant, record_tenant_at};

use super::auth::caller;
use super::types::{AuditEntry, AuditFilter, Cell, Tenant, TenantFilter, TotalCount};
use crate::service::members::{self, Level};
use crate::service::{cells, directory};

#[derive(Default)]
pub struct Query;

pub type TenantConnection = Connection<OpaqueCursor<String>, Tenant, TotalCount>;

const MAX_PAGE: i32 = 100;

#[Object(name = "DirectoryQuery")]
impl Query {
    /// A tenant by id. A caller who may not see it gets NOT_FOUND, exactly
    /// as if it did not exist.
    async fn tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let (st, p) = caller(ctx).gql()?;
        let id: TenantId = id.parse().field("id").gql()?;
        record_tenant(ctx, &id);
        let not_found = || shared::Error::NotFound(format!("tenant {id} not found")).into_gql();
        if members::level(&st.db, p, id).await.gql()? == Level::None {
            return Err(not_found());
        }
        let row = directory::get(&st.db, id)
            .await
            .gql()?
            .ok_or_else(not_found)?;
        record_tenant_at(ctx, &id, placement(&row));
        Ok(Tenant(row))
    }

    /// A tenant by its slug.
    async fn tenant_by_slug(&self, ctx: &Context<'_>, slug: String) -> Result<Tenant> {
        let (st, p) = caller(ctx).gql()?;
        let slug = Slug::parse(&slug).field("slug").gql()?;
        let not_found = || shared::Error::NotFound(format!("tenant `{slug}` not found")).into_gql();
        let row = directory::get_by_slug(&st.db, &slug).await.gql()?;
        let visible = match &row {
            Some(t) => members::level(&st.db, p, TenantId(t.id)).await.gql()? > Level::None,
            None => false,
        };
        match row {
            Some(t) if visible => {
                record_tenant_at(ctx, &t.id, placement(&t));
                Ok(Tenant(t))
            }
            _ => Err(not_found()),
        }
    }

    /// Tenants in creation order, `first` (1 to 100, default 20) after the
    /// cursor `after`. Tenant principals see only their own tenants.
    async fn tenants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<TenantFilter>,
    ) -> Result<TenantConnection> {
        let (st, p) = caller(ctx).gql()?;
        let first = first.unwrap_or(20);
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(shared::Error::bad_input(
                "first",
                format!("first must be between 1 and {MAX_PAGE}"),
            )
            .into_gql());
        }
        let after = match after {
            None => None,
            Some(c) => {
                let cursor =
                    <OpaqueCursor<String> as async_graphql::connection::CursorType>::decode_cursor(
                        &c,
                    )
                    .map_err(|_| {
                        shared::Error::bad_input("after", "not a cursor from this API").into_gql()
                    })?;
                Some(cursor.0.parse::<TenantId>().field("after").gql()?)
            }
        };
        let f = filter.unwrap_or_default();
        let filter = directory::Filter {
            region: f
                .region
                .as_deref()
                .map(Region::parse)
                .transpose()
                .field("filter.region")
                .gql()?,
            cell_id: f
                .cell_id
                .as_ref()
                .map(|c| CellId::parse(c))
                .transpose()
                .field("filter.cellId")
                .gql()?,
            status: f.status,
            only: if p.reads_everything() {
                None
            } else {
                // Its token's tenants and those it is a member of.
                let mut only = p.tenants.clone();
                only.extend(members::tenants_of(&st.db, &p.subject).await.gql()?);
                Some(only)
            },
        };
        let (rows, more, total) = directory::page(&st.db, &filter, after, first as u64)
            .await
            .gql()?;
        let mut conn = Connection::with_additional_fields(
            after.is_some(),
            more,
            TotalCount { total_count: total },
        );
        conn.edges.extend(
            rows.into_iter()
                .map(|t| Edge::new(OpaqueCursor(t.id.to_string()), Tenant(t))),
        );
        Ok(conn)
    }

    /// The newest audited changes (at most `first`, 1 to 200, default 50).
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilter>,
        first: Option<i32>,
    ) -> Result<Vec<AuditEntry>> {
        let (st, p) = caller(ctx).gql()?;
        p.require_any(&[Role::PlatformAdmin, Role::Sre], "auditLog")
            .gql()?;
        let first = first.unwrap_or(50);
        if !(1..=200).contains(&first) {
            return Err(
                shared::Error::bad_input("first", "first must be between 1 and 200").into_gql(),
            );
        }
        let f = filter.unwrap_or_default();
        let filter = shared::audit::Filter {
            tenant_id: f
                .tenant_id
                .map(|t| t.parse::<TenantId>().map(|t| t.0))
                .transpose()
                .field("filter.tenantId")
                .gql()?,
            actor: f.actor,
            action: f.action,
        };
        let rows = shared::audit::list(&st.db, &filter, first as u64)
            .await
            .gql()?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    /// The config schema registry.
    async fn config_keys(&self, ctx: &Context<'_>) -> Result<Vec<shared::configkeys::View>> {
        let (st, _) = caller(ctx).gql()?;
        let keys = shared::configkeys::store::all(&st.db).await.gql()?;
        Ok(keys.into_iter().map(Into::into).collect())
    }

    /// Every registered cell with its status and load.
    async fn cells(&self, ctx: &Context<'_>) -> Result<Vec<Cell>> {
        let (st, p) = caller(ctx).gql()?;
        if !p.reads_everything() {
            return Err(shared::Error::Forbidden(
                "listing cells needs platform-admin or sre".into(),
            )
            .into_gql());
        }
        let counts = cells::tenant_counts(&st.db).await.gql()?;
        Ok(cells::list(&st.db)
            .await
            .gql()?
            .into_iter()
            .map(|c| Cell {
                tenant_count: Some(counts.get(&c.id).copied().unwrap_or(0)),
                model: c,
            })
            .collect())
    }
}

/// A directory row's cell, region and plan, for the request's span and metrics.
pub(crate) fn placement(row: &crate::entity::tenant::Model) -> Placement<'_> {
    Placement {
        cell: Some(row.cell_id.as_str()),
        region: Some(row.region.as_str()),
        plan: Some(row.plan.as_str()),
    }
}
