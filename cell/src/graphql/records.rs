//! The cell's tenant records in full, page by page, for the global tier to
//! rebuild its directory from (the cells are the authority of their tenants).

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use shared::IntoGql;

use super::query::reader;
use crate::service::tenants;

#[derive(Default)]
pub struct RecordsQuery;

/// A tenant record with what the directory keeps of it.
#[derive(SimpleObject)]
pub struct TenantRecord {
    pub id: ID,
    pub slug: String,
    pub region: String,
    pub plan: String,
    pub plan_version: i64,
    pub status: String,
    /// The directory version the cell last applied.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub purge_at: Option<DateTime<Utc>>,
}

#[Object]
impl RecordsQuery {
    /// Records after `after` (a tenant id), ordered by id, at most `first`
    /// (1 to 1000). Control plane, platform-admin and sre only.
    async fn tenant_records(
        &self,
        ctx: &Context<'_>,
        after: Option<ID>,
        first: Option<i32>,
    ) -> Result<Vec<TenantRecord>> {
        let (st, p) = reader(ctx).gql()?;
        if !p.reads_everything() {
            return Err(shared::Error::Forbidden(
                "tenant records are for the control plane, platform-admin and sre".into(),
            )
            .into_gql());
        }
        let first = first.unwrap_or(500);
        if !(1..=1000).contains(&first) {
            return Err(
                shared::Error::bad_input("first", "first must be between 1 and 1000").into_gql(),
            );
        }
        let after = after
            .map(|a| {
                uuid::Uuid::parse_str(&a)
                    .map_err(|_| shared::Error::bad_input("after", "not a tenant id"))
            })
            .transpose()
            .gql()?;
        let rows = tenants::records_after(&st.db, after, first as u64)
            .await
            .gql()?;
        Ok(rows
            .into_iter()
            .map(|t| TenantRecord {
                id: ID(t.id.to_string()),
                slug: t.slug,
                region: t.region,
                plan: t.plan,
                plan_version: t.plan_version,
                status: t.status,
                version: t.version,
                created_at: t.created_at,
                updated_at: t.updated_at,
                purge_at: t.purge_at,
            })
            .collect())
    }
}
