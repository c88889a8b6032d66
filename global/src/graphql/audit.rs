//! The audit log: both tiers' entries (the global tier's own chain and the
//! chains cells ship), and the chain check.

use async_graphql::{Context, Object, Result};
use shared::IntoGql;
use shared::audit::api::{self, AuditConnection, AuditFilter, ChainVerdict};
use shared::audit::chain;
use shared::auth::Role;
use shared::ids::CellId;

use super::auth::caller;

/// This tier's chain, as `source` names it.
pub const OWN: &str = "global";

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Audited changes of both tiers, newest first (`first` 1 to 200,
    /// default 50; `after` a cursor of the previous page). Tenant
    /// principals see only entries of their tenants.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AuditConnection> {
        let (st, p) = caller(ctx).gql()?;
        let (first, after) = api::page_args(first, after).gql()?;
        let f = api::filter(p, filter, OWN).gql()?;
        let (rows, more) = shared::audit::page(&st.db, &f, first, after).await.gql()?;
        Ok(api::connection(rows, after.is_some(), more, OWN))
    }

    /// Checks the global tier's audit chain (or, with `cellId`, the copy of
    /// that cell's chain it received) from seq `from` to `to` (default: all)
    /// and reports the first link that does not hold.
    async fn verify_audit_chain(
        &self,
        ctx: &Context<'_>,
        from: Option<i64>,
        to: Option<i64>,
        cell_id: Option<String>,
    ) -> Result<ChainVerdict> {
        let (st, p) = caller(ctx).gql()?;
        p.require_any(&[Role::Sre, Role::PlatformAdmin], "verifyAuditChain")
            .gql()?;
        let source = match cell_id {
            None => chain::OWN.to_owned(),
            Some(c) => CellId::parse(&c)
                .map_err(|e| shared::Error::bad_input("cellId", e.0))
                .gql()?
                .to_string(),
        };
        Ok(chain::verify(&st.db, &source, from, to).await.gql()?.into())
    }
}
