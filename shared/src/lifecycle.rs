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

pub const DIRECTORY_STREAM: &str = "global.directory";
pub const RECORDS_STREAM: &str = "cell.tenants";

pub fn directory_entity(id: Uuid) -> String {
    format!("tenant:{id}")
}

pub fn record_entity(id: Uuid) -> String {
    format!("tenant-record:{id}")
}

pub fn plan_entity(id: Uuid) -> String {
    format!("tenant-plan:{id}")
}

/// The payload of a `global.directory` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryChange {
    pub tenant_id: Uuid,
    pub cell_id: String,
    pub status: TenantStatus,
    pub purge_at: Option<DateTime<Utc>>,
}

/// The payload of a `cell.tenants` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordChange {
    pub tenant_id: Uuid,
    pub status: TenantStatus,
    /// Set on `tenant-plan:{id}` events: the tenant's plan now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}
