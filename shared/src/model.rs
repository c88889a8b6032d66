//! Records that travel between the tiers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{Invalid, TenantId};

/// A tenant's lifecycle status.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TenantStatus {
    Pending,
    Provisioning,
    Active,
    Suspended,
    Failed,
    Deprovisioning,
    Deleted,
}

impl TenantStatus {
    pub const ALL: [TenantStatus; 7] = [
        TenantStatus::Pending,
        TenantStatus::Provisioning,
        TenantStatus::Active,
        TenantStatus::Suspended,
        TenantStatus::Failed,
        TenantStatus::Deprovisioning,
        TenantStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Pending => "PENDING",
            TenantStatus::Provisioning => "PROVISIONING",
            TenantStatus::Active => "ACTIVE",
            TenantStatus::Suspended => "SUSPENDED",
            TenantStatus::Failed => "FAILED",
            TenantStatus::Deprovisioning => "DEPROVISIONING",
            TenantStatus::Deleted => "DELETED",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| Invalid(format!("unknown tenant status `{s}`")))
    }
}

/// A tenant's own record, as its home cell holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellTenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub region: String,
    pub plan: String,
    pub status: TenantStatus,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The fields of `CellTenant` in GraphQL selection syntax.
pub const CELL_TENANT_FIELDS: &str = "id slug name region plan status version createdAt updatedAt";
