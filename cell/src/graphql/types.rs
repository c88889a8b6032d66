use async_graphql::{ID, InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use shared::model::{CellTenant, TenantStatus};

/// A tenant's record in this cell.
#[derive(SimpleObject, Clone)]
pub struct Tenant {
    pub id: ID,
    pub slug: String,
    pub name: String,
    pub region: String,
    pub plan: String,
    pub status: TenantStatus,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CellTenant> for Tenant {
    fn from(t: CellTenant) -> Self {
        Self {
            id: ID(t.id.to_string()),
            slug: t.slug,
            name: t.name,
            region: t.region,
            plan: t.plan,
            status: t.status,
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// This cell's identity and load.
#[derive(SimpleObject)]
pub struct CellInfo {
    pub id: String,
    pub region: String,
    pub capacity: i64,
    pub tenant_count: i64,
}

#[derive(InputObject)]
pub struct CreateTenantInput {
    /// The id the global tier chose; retries reuse it.
    pub id: ID,
    pub slug: String,
    pub name: String,
    pub region: String,
    pub plan: String,
}
