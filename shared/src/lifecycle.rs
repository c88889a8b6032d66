//! The tenant lifecycle streams between the tiers and their payloads.
//!
//! - `global.directory` (global → cells): directory status changes made at
//!   the global tier (suspend, resume, deprovision, restore); entity
//!   `tenant:{id}`, version = the directory version.
//! - `cell.tenants` (cell → global): tenant record changes made in a cell
//!   (its purge done → DELETED); entity `tenant-record:{id}`. A plan change
//!   travels on the same stream as entity `tenant-plan:{id}`, versioned by
//!   the cell's plan version, so the directory knows every tenant's plan.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::TenantStatus;

/// Directory status changes, global → cells.
pub const DIRECTORY_STREAM: &str = "global.directory";
/// Tenant record and plan changes, cell → global.
pub const RECORDS_STREAM: &str = "cell.tenants";

/// The entity of tenant `id`'s directory row on [`DIRECTORY_STREAM`]: `tenant:{id}`.
pub fn directory_entity(id: Uuid) -> String {
    format!("tenant:{id}")
}

/// The entity of tenant `id`'s cell record on [`RECORDS_STREAM`]: `tenant-record:{id}`.
pub fn record_entity(id: Uuid) -> String {
    format!("tenant-record:{id}")
}

/// The entity of tenant `id`'s plan on [`RECORDS_STREAM`]: `tenant-plan:{id}`.
pub fn plan_entity(id: Uuid) -> String {
    format!("tenant-plan:{id}")
}

/// The payload of a `global.directory` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryChange {
    /// The tenant changed.
    pub tenant_id: Uuid,
    /// Its home cell; other cells ignore the event.
    pub cell_id: String,
    /// The tenant's status now.
    pub status: TenantStatus,
    /// While DEPROVISIONING: when the grace period ends and the cell purges the tenant.
    pub purge_at: Option<DateTime<Utc>>,
}

/// The payload of a `cell.tenants` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordChange {
    /// The tenant changed.
    pub tenant_id: Uuid,
    /// Its status in the cell (DELETED once purged).
    pub status: TenantStatus,
    /// Set on `tenant-plan:{id}` events: the tenant's plan now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}
