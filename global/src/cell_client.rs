//! Calls from the global tier to a cell's GraphQL API.

use serde::Deserialize;
use serde_json::json;
use shared::Result;
use shared::client::GraphqlClient;
use shared::ids::TenantId;
use shared::model::{CELL_TENANT_FIELDS, CellTenant};

use crate::entity::cell;
use crate::service::directory::NewTenant;

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

#[derive(Clone)]
pub struct CellClient {
    gql: GraphqlClient,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    create_tenant: CellTenant,
}

#[derive(Deserialize)]
struct Listed {
    tenants: Vec<CellTenant>,
}

impl CellClient {
    pub fn new(gql: GraphqlClient) -> Self {
        Self { gql }
    }

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
        let out: Created = self
            .gql
            .call(&format!("cell {}", cell.id), &cell.endpoint, &query, vars)
            .await?;
        Ok(out.create_tenant)
    }

    /// Has the cell make the tenant's default resources (idempotent).
    pub async fn allocate(&self, cell: &cell::Model, id: TenantId) -> Result<()> {
        let _: serde_json::Value = self
            .gql
            .call(
                &format!("cell {}", cell.id),
                &cell.endpoint,
                "mutation($t: ID!) { allocateTenantResources(tenantId: $t) { id } }",
                json!({ "t": id }),
            )
            .await?;
        Ok(())
    }

    /// Has the cell delete every row it holds of the tenant (idempotent).
    pub async fn purge(&self, cell: &cell::Model, id: TenantId) -> Result<()> {
        let _: serde_json::Value = self
            .gql
            .call(
                &format!("cell {}", cell.id),
                &cell.endpoint,
                "mutation($t: ID!) { purgeTenant(tenantId: $t) }",
                json!({ "t": id }),
            )
            .await?;
        Ok(())
    }

    /// Sends any query of the cell API to `cell`.
    pub async fn forward<T: serde::de::DeserializeOwned>(
        &self,
        cell: &cell::Model,
        query: &str,
        vars: serde_json::Value,
    ) -> Result<T> {
        self.gql
            .call(&format!("cell {}", cell.id), &cell.endpoint, query, vars)
            .await
    }

    /// One page of the cell's tenant records, by id after `after`.
    pub async fn records(
        &self,
        cell: &cell::Model,
        after: Option<uuid::Uuid>,
        first: i32,
    ) -> Result<Vec<Record>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            tenant_records: Vec<Record>,
        }
        let out: Out = self
            .gql
            .call(
                &format!("cell {}", cell.id),
                &cell.endpoint,
                "query($a: ID, $f: Int) { tenantRecords(after: $a, first: $f) { id slug region plan planVersion status version createdAt updatedAt purgeAt } }",
                json!({ "a": after, "f": first }),
            )
            .await?;
        Ok(out.tenant_records)
    }

    /// Asks the cell which of its tenants each question matches.
    pub async fn impact_matches(
        &self,
        cell: &cell::Model,
        questions: &[shared::impact::Question],
    ) -> Result<Vec<Vec<uuid::Uuid>>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            impact_matches: Matches,
        }
        #[derive(Deserialize)]
        struct Matches {
            matches: Vec<String>,
        }
        let out: Out = self
            .gql
            .call(
                &format!("cell {}", cell.id),
                &cell.endpoint,
                "query($q: [ImpactQuestion!]!) { impactMatches(questions: $q) { matches } }",
                json!({ "q": questions }),
            )
            .await?;
        out.impact_matches
            .matches
            .iter()
            .map(|m| {
                shared::impact::unpack(m).ok_or_else(|| {
                    shared::Error::internal(anyhow::anyhow!(
                        "cell {} answered impact matches that are not packed ids",
                        cell.id
                    ))
                })
            })
            .collect()
    }

    /// The projects of several tenants of `cell`, in one call.
    pub async fn projects_of(
        &self,
        cell: &cell::Model,
        ids: &[TenantId],
    ) -> Result<Vec<(TenantId, Vec<shared::projects::Project>)>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            projects_of: Vec<shared::projects::TenantProjects>,
        }
        let query = format!(
            "query($ids: [ID!]!) {{ projectsOf(tenantIds: $ids) {{ {} }} }}",
            shared::projects::TENANT_PROJECTS_FIELDS
        );
        let out: Out = self
            .gql
            .call(
                &format!("cell {}", cell.id),
                &cell.endpoint,
                &query,
                json!({ "ids": ids }),
            )
            .await?;
        out.projects_of
            .into_iter()
            .map(|t| Ok((parse_id(cell, &t.tenant_id)?, t.projects)))
            .collect()
    }

    /// The plans of several tenants of `cell`, in one call.
    pub async fn plans_of(
        &self,
        cell: &cell::Model,
        ids: &[TenantId],
    ) -> Result<Vec<(TenantId, shared::plans::TenantPlan)>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            tenant_plans: Vec<shared::plans::TenantPlanOf>,
        }
        let query = format!(
            "query($ids: [ID!]!) {{ tenantPlans(tenantIds: $ids) {{ tenantId plan {{ {} }} }} }}",
            shared::plans::TENANT_PLAN_FIELDS
        );
        let out: Out = self
            .gql
            .call(
                &format!("cell {}", cell.id),
                &cell.endpoint,
                &query,
                json!({ "ids": ids }),
            )
            .await?;
        out.tenant_plans
            .into_iter()
            .map(|t| Ok((parse_id(cell, &t.tenant_id)?, t.plan)))
            .collect()
    }

    pub async fn tenants(&self, cell: &cell::Model, ids: &[TenantId]) -> Result<Vec<CellTenant>> {
        let query =
            format!("query($ids: [ID!]!) {{ tenants(ids: $ids) {{ {CELL_TENANT_FIELDS} }} }}");
        let out: Listed = self
            .gql
            .call(
                &format!("cell {}", cell.id),
                &cell.endpoint,
                &query,
                json!({ "ids": ids }),
            )
            .await?;
        Ok(out.tenants)
    }
}

fn parse_id(cell: &cell::Model, id: &str) -> Result<TenantId> {
    id.parse().map_err(|_| {
        shared::Error::internal(anyhow::anyhow!(
            "cell {} answered a tenant id that is not one: {id}",
            cell.id
        ))
    })
}
