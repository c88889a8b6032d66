//! Reads of many tenants of one cell in one call (what the DataLoaders of
//! `graphql/loader.rs` batch per cell and kind).

use serde_json::json;
use shared::Result;
use shared::ids::TenantId;
use shared::model::{CELL_TENANT_FIELDS, CellTenant};
use shared::plans::{TENANT_PLAN_FIELDS, TenantPlan, TenantPlanOf};
use shared::projects::{Project, TENANT_PROJECTS_FIELDS, TenantProjects};

use super::{CellClient, parse_id};
use crate::entity::cell;

impl CellClient {
    /// The records (name, plan, updatedAt, …) of several tenants of `cell`.
    pub async fn tenants(&self, cell: &cell::Model, ids: &[TenantId]) -> Result<Vec<CellTenant>> {
        let query =
            format!("query($ids: [ID!]!) {{ tenants(ids: $ids) {{ {CELL_TENANT_FIELDS} }} }}");
        self.field(cell, "tenants", &query, json!({ "ids": ids }))
            .await
    }

    /// The projects of several tenants of `cell`, in one call.
    pub async fn projects_of(
        &self,
        cell: &cell::Model,
        ids: &[TenantId],
    ) -> Result<Vec<(TenantId, Vec<Project>)>> {
        let query = format!(
            "query($ids: [ID!]!) {{ projectsOf(tenantIds: $ids) {{ {TENANT_PROJECTS_FIELDS} }} }}"
        );
        let out: Vec<TenantProjects> = self
            .field(cell, "projectsOf", &query, json!({ "ids": ids }))
            .await?;
        out.into_iter()
            .map(|t| Ok((parse_id(cell, &t.tenant_id)?, t.projects)))
            .collect()
    }

    /// The plans of several tenants of `cell`, in one call.
    pub async fn plans_of(
        &self,
        cell: &cell::Model,
        ids: &[TenantId],
    ) -> Result<Vec<(TenantId, TenantPlan)>> {
        let query = format!(
            "query($ids: [ID!]!) {{ tenantPlans(tenantIds: $ids) {{ tenantId plan {{ {TENANT_PLAN_FIELDS} }} }} }}"
        );
        let out: Vec<TenantPlanOf> = self
            .field(cell, "tenantPlans", &query, json!({ "ids": ids }))
            .await?;
        out.into_iter()
            .map(|t| Ok((parse_id(cell, &t.tenant_id)?, t.plan)))
            .collect()
    }
}
