//! One tenant's data its home cell alone holds: configuration, secret
//! references, quotas, plan and projects. Writes are made on behalf of
//! `who`, the subject the cell records as the actor.

use serde_json::json;
use shared::Result;
use shared::configkeys::api::{
    ConfigChange, ConfigValue, ConfigVersion, RollbackTenantConfigInput, SecretRef,
    SetSecretRefInput, UpdateTenantConfigInput,
};
use shared::ids::TenantId;
use shared::plans::{ChangePlanInput, SetEntitlementOverrideInput, TENANT_PLAN_FIELDS, TenantPlan};
use shared::projects::{CreateEnvironmentInput, CreateProjectInput, Project};
use shared::quota::api::{ClearQuotaInput, Quota, QuotaChange, SetQuotaInput};

use super::CellClient;
use crate::entity::cell;

const SECRET_REF_FIELDS: &str = "name ref version updatedAt";
const QUOTA_CHANGE_FIELDS: &str = "metric version source";
const PROJECT_FIELDS: &str = "id name version environments { name }";

impl CellClient {
    /// The tenant's secret references.
    pub async fn secret_refs(&self, cell: &cell::Model, t: TenantId) -> Result<Vec<SecretRef>> {
        let query =
            format!("query($t: ID!) {{ secretRefs(tenantId: $t) {{ {SECRET_REF_FIELDS} }} }}");
        self.field(cell, "secretRefs", &query, json!({ "t": t }))
            .await
    }

    /// Every registered key's value for the tenant in a project (its default
    /// one when `None`) and environment, with the layer it came from.
    pub async fn effective_config(
        &self,
        cell: &cell::Model,
        t: TenantId,
        project_id: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Vec<ConfigValue>> {
        self.field(
            cell,
            "effectiveConfig",
            "query($t: ID!, $p: String, $e: String) { effectiveConfig(tenantId: $t, projectId: $p, environment: $e) { key value source } }",
            json!({ "t": t, "p": project_id, "e": environment }),
        )
        .await
    }

    /// The tenant's configuration changes, newest first.
    pub async fn config_history(
        &self,
        cell: &cell::Model,
        t: TenantId,
        first: i32,
    ) -> Result<Vec<ConfigChange>> {
        self.field(
            cell,
            "configHistory",
            "query($t: ID!, $n: Int!) { configHistory(tenantId: $t, first: $n) { version actor at diff } }",
            json!({ "t": t, "n": first }),
        )
        .await
    }

    /// Each metric the tenant has a limit on, with its usage.
    pub async fn quotas(&self, cell: &cell::Model, t: TenantId) -> Result<Vec<Quota>> {
        self.field(
            cell,
            "quotas",
            "query($t: ID!) { quotas(tenantId: $t) { metric kind limit period burst enforcement used remaining resetAt source version } }",
            json!({ "t": t }),
        )
        .await
    }

    pub async fn set_secret_ref(
        &self,
        cell: &cell::Model,
        input: &SetSecretRefInput,
        who: &str,
    ) -> Result<SecretRef> {
        let m = format!(
            "mutation($i: SetSecretRefInput!, $who: String) {{ setSecretRef(input: $i, onBehalfOf: $who) {{ {SECRET_REF_FIELDS} }} }}"
        );
        self.on_behalf_of(cell, "setSecretRef", &m, input, who)
            .await
    }

    pub async fn update_tenant_config(
        &self,
        cell: &cell::Model,
        input: &UpdateTenantConfigInput,
        who: &str,
    ) -> Result<ConfigVersion> {
        let m = "mutation($i: UpdateTenantConfigInput!, $who: String) { updateTenantConfig(input: $i, onBehalfOf: $who) { version } }";
        self.on_behalf_of(cell, "updateTenantConfig", m, input, who)
            .await
    }

    pub async fn rollback_tenant_config(
        &self,
        cell: &cell::Model,
        input: &RollbackTenantConfigInput,
        who: &str,
    ) -> Result<ConfigVersion> {
        let m = "mutation($i: RollbackTenantConfigInput!, $who: String) { rollbackTenantConfig(input: $i, onBehalfOf: $who) { version } }";
        self.on_behalf_of(cell, "rollbackTenantConfig", m, input, who)
            .await
    }

    pub async fn set_quota(
        &self,
        cell: &cell::Model,
        input: &SetQuotaInput,
        who: &str,
    ) -> Result<QuotaChange> {
        let m = format!(
            "mutation($i: SetQuotaInput!, $who: String) {{ setQuota(input: $i, onBehalfOf: $who) {{ {QUOTA_CHANGE_FIELDS} }} }}"
        );
        self.on_behalf_of(cell, "setQuota", &m, input, who).await
    }

    pub async fn clear_quota(
        &self,
        cell: &cell::Model,
        input: &ClearQuotaInput,
        who: &str,
    ) -> Result<QuotaChange> {
        let m = format!(
            "mutation($i: ClearQuotaInput!, $who: String) {{ clearQuota(input: $i, onBehalfOf: $who) {{ {QUOTA_CHANGE_FIELDS} }} }}"
        );
        self.on_behalf_of(cell, "clearQuota", &m, input, who).await
    }

    pub async fn change_plan(
        &self,
        cell: &cell::Model,
        input: &ChangePlanInput,
        who: &str,
    ) -> Result<TenantPlan> {
        let m = format!(
            "mutation($i: ChangePlanInput!, $who: String) {{ changePlan(input: $i, onBehalfOf: $who) {{ {TENANT_PLAN_FIELDS} }} }}"
        );
        self.on_behalf_of(cell, "changePlan", &m, input, who).await
    }

    pub async fn set_entitlement_override(
        &self,
        cell: &cell::Model,
        input: &SetEntitlementOverrideInput,
        who: &str,
    ) -> Result<TenantPlan> {
        let m = format!(
            "mutation($i: SetEntitlementOverrideInput!, $who: String) {{ setEntitlementOverride(input: $i, onBehalfOf: $who) {{ {TENANT_PLAN_FIELDS} }} }}"
        );
        self.on_behalf_of(cell, "setEntitlementOverride", &m, input, who)
            .await
    }

    pub async fn create_project(
        &self,
        cell: &cell::Model,
        input: &CreateProjectInput,
        who: &str,
    ) -> Result<Project> {
        let m = format!(
            "mutation($i: CreateProjectInput!, $who: String) {{ createProject(input: $i, onBehalfOf: $who) {{ {PROJECT_FIELDS} }} }}"
        );
        self.on_behalf_of(cell, "createProject", &m, input, who)
            .await
    }

    pub async fn create_environment(
        &self,
        cell: &cell::Model,
        input: &CreateEnvironmentInput,
        who: &str,
    ) -> Result<Project> {
        let m = format!(
            "mutation($i: CreateEnvironmentInput!, $who: String) {{ createEnvironment(input: $i, onBehalfOf: $who) {{ {PROJECT_FIELDS} }} }}"
        );
        self.on_behalf_of(cell, "createEnvironment", &m, input, who)
            .await
    }
}
