//! A tenant's life in its cell, as the provisioning saga drives it, and the
//! cell's tenant records a lost directory is rebuilt from.

use serde::Deserialize;
use serde_json::json;
use shared::Result;
use shared::ids::TenantId;
use shared::model::{CELL_TENANT_FIELDS, CellTenant};

use super::CellClient;
use crate::entity::cell;
use crate::service::provisioning::NewTenant;

/// A tenant record as its cell holds it (`tenantRecords`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: uuid::Uuid,
    pub slug: String,
    pub region: String,
    pub plan: String,
    pub plan_version: i64,
    pub status: String,
    pub version: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub purge_at: Option<chrono::DateTime<chrono::Utc>>,
}

const RECORD_FIELDS: &str =
    "id slug region plan planVersion status version createdAt updatedAt purgeAt";

impl CellClient {
    /// Creates the tenant in `cell` with the id the directory gave it
    /// (idempotent by id).
    pub async fn create_tenant(
        &self,
        cell: &cell::Model,
        id: TenantId,
        t: &NewTenant,
    ) -> Result<CellTenant> {
        let query = format!(
            "mutation($input: CreateTenantInput!) {{ createTenant(input: $input) {{ {CELL_TENANT_FIELDS} }} }}"
        );
        let vars = json!({ "input": {
            "id": id, "slug": t.slug, "name": t.name, "region": t.region, "plan": t.plan,
        }});
        self.field(cell, "createTenant", &query, vars).await
    }

    /// Has the cell make the tenant's default resources (idempotent).
    pub async fn allocate(&self, cell: &cell::Model, id: TenantId) -> Result<()> {
        let _: serde_json::Value = self
            .call(
                cell,
                "mutation($t: ID!) { allocateTenantResources(tenantId: $t) { id } }",
                json!({ "t": id }),
            )
            .await?;
        Ok(())
    }

    /// Has the cell delete every row it holds of the tenant (idempotent).
    pub async fn purge(&self, cell: &cell::Model, id: TenantId) -> Result<()> {
        let _: serde_json::Value = self
            .call(
                cell,
                "mutation($t: ID!) { purgeTenant(tenantId: $t) }",
                json!({ "t": id }),
            )
            .await?;
        Ok(())
    }

    /// One page of the cell's tenant records, by id after `after`.
    pub async fn records(
        &self,
        cell: &cell::Model,
        after: Option<uuid::Uuid>,
        first: i32,
    ) -> Result<Vec<Record>> {
        let query = format!(
            "query($a: ID, $f: Int) {{ tenantRecords(after: $a, first: $f) {{ {RECORD_FIELDS} }} }}"
        );
        self.field(
            cell,
            "tenantRecords",
            &query,
            json!({ "a": after, "f": first }),
        )
        .await
    }
}
