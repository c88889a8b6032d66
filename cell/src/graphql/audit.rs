//! The cell's own audit chain: its entries and the chain check.

use async_graphql::{Context, Object, Result};
use shared::IntoGql;
use shared::audit::api::{self, AuditConnection, AuditFilter, ChainVerdict};
use shared::audit::chain;
use shared::auth::Role;

use super::query::reader;

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// This cell's audited changes, newest first (`first` 1 to 200, default
    /// 50). Tenant principals see only entries of their tenants.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AuditConnection> {
        let (st, p) = reader(ctx).gql()?;
        let own = st.cell_id.as_str();
        let (first, after) = api::page_args(first, after).gql()?;
        let f = api::filter(p, filter, own).gql()?;
        let (rows, more) = shared::audit::page(&st.db, &f, first, after).await.gql()?;
        Ok(api::connection(rows, after.is_some(), more, own))
    }

    /// Checks this cell's audit chain from seq `from` to `to` (default: all)
    /// and reports the first link that does not hold.
    async fn verify_audit_chain(
        &self,
        ctx: &Context<'_>,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<ChainVerdict> {
        let (st, p) = reader(ctx).gql()?;
        if !p.is_control_plane() {
            p.require_any(&[Role::Sre, Role::PlatformAdmin], "verifyAuditChain")
                .gql()?;
        }
        Ok(chain::verify(&st.db, chain::OWN, from, to)
            .await
            .gql()?
            .into())
    }
}
