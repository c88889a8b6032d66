//! Records that travel between the tiers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{Invalid, TenantId};

/// A tenant's lifecycle status.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TenantStatus {
    /// Reserved by `createTenant` (the slug is held); not yet placed in a cell.
    Pending,
    /// Placed in a cell; being created there.
    Provisioning,
    /// Serving: reads and writes are allowed.
    Active,
    /// Stopped by `suspendTenant`: data kept, writes refused until `resumeTenant`.
    Suspended,
    /// Provisioning failed and was undone; the record stays, the slug is free.
    Failed,
    /// In its grace period after `deprovisionTenant`: writes refused,
    /// `restoreTenant` brings it back, and at the end its data is purged.
    Deprovisioning,
    /// Purged: a tombstone whose slug stays reserved for a while; no change is allowed.
    Deleted,
}

impl TenantStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TenantStatus; 7] = [
        TenantStatus::Pending,
        TenantStatus::Provisioning,
        TenantStatus::Active,
        TenantStatus::Suspended,
        TenantStatus::Failed,
        TenantStatus::Deprovisioning,
        TenantStatus::Deleted,
    ];

    /// The status as GraphQL and the databases spell it, e.g. `DEPROVISIONING`.
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

    /// The inverse of [`TenantStatus::as_str`]; anything else is [`Invalid`].
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
    /// The tenant's id, chosen by the global tier.
    pub id: TenantId,
    /// A DNS label of 3 to 63 characters, unique platform-wide.
    pub slug: String,
    /// The display name.
    pub name: String,
    /// The region the tenant lives in (its home cell's).
    pub region: String,
    /// `free`, `pro` or `enterprise`.
    pub plan: String,
    /// The lifecycle status, as the cell last heard it from the directory.
    pub status: TenantStatus,
    /// The directory version the cell last applied; flags target it as the
    /// tenant's `version`.
    pub version: i64,
    /// When the cell created the record.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

/// The fields of `CellTenant` in GraphQL selection syntax.
pub const CELL_TENANT_FIELDS: &str = "id slug name region plan status version createdAt updatedAt";
