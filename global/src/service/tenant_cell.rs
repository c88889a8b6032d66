//! Routing to a tenant's home cell: what only that cell holds of the tenant
//! (configuration, secret references, quotas, plan, projects) is read and
//! written there. `route` checks the caller's level on the tenant
//! (NOT_FOUND when it may not see it, FORBIDDEN below what the action
//! needs) and, for writes, the tenant's status (a SUSPENDED,
//! DEPROVISIONING or DELETED tenant refuses them), then finds its cell; the
//! `Home` it answers makes the typed cell calls, writes on behalf of the
//! caller after the checks this tier makes of their input.

use shared::auth::Principal;
use shared::configkeys::api::{
    ConfigChange, ConfigValue, ConfigVersion, RollbackTenantConfigInput, SecretRef,
    SetSecretRefInput, UpdateTenantConfigInput,
};
use shared::error::Field;
use shared::ids::TenantId;
use shared::plans::{ChangePlanInput, SetEntitlementOverrideInput, TenantPlan};
use shared::projects::{CreateEnvironmentInput, CreateProjectInput, Project};
use shared::quota::api::{ClearQuotaInput, Quota, QuotaChange, SetQuotaInput};
use shared::quota::{Rule, store};
use shared::{Error, Result};

use crate::State;
use crate::entity::cell;
use crate::service::directory;
use crate::service::members::{self, Level};

/// A tenant's home cell, reached by a caller who passed the checks.
pub struct Home<'a> {
    st: &'a State,
    actor: &'a str,
    pub tenant: TenantId,
    pub cell: cell::Model,
}

/// The home cell of the tenant `id` (a GraphQL ID, BAD_USER_INPUT on
/// `tenantId` when it is not a tenant id) for `action`, after checking that
/// `p` has at least `need` on it and, when `need` is above viewer, that the
/// tenant takes writes. UNAVAILABLE when its cell is not registered.
pub async fn route<'a>(
    st: &'a State,
    p: &'a Principal,
    id: &str,
    need: Level,
    action: &str,
) -> Result<Home<'a>> {
    let t: TenantId = id.parse().field("tenantId")?;
    members::require(&st.db, p, t, need, action).await?;
    let row = if need > Level::Viewer {
        directory::writable(&st.db, t).await?
    } else {
        directory::get(&st.db, t)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {t} not found")))?
    };
    let cell = st
        .cells
        .get(&row.cell_id)
        .ok_or_else(|| Error::Unavailable(format!("cell {} is not registered", row.cell_id)))?;
    Ok(Home {
        st,
        actor: &p.subject,
        tenant: t,
        cell,
    })
}

/// The kind of the catalog's metric `metric`, or BAD_USER_INPUT on `field`
/// when the catalog does not have it.
pub async fn metric_kind(st: &State, metric: &str, field: &str) -> Result<shared::quota::Kind> {
    store::get(&st.db, metric)
        .await?
        .map(|m| m.def.kind)
        .ok_or_else(|| Error::bad_input(field, format!("unknown metric `{metric}`")))
}

impl Home<'_> {
    fn client(&self) -> &crate::cell_client::CellClient {
        &self.st.cell_client
    }

    pub async fn secret_refs(&self) -> Result<Vec<SecretRef>> {
        self.client().secret_refs(&self.cell, self.tenant).await
    }

    pub async fn effective_config(
        &self,
        project_id: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Vec<ConfigValue>> {
        self.client()
            .effective_config(&self.cell, self.tenant, project_id, environment)
            .await
    }

    pub async fn config_history(&self, first: i32) -> Result<Vec<ConfigChange>> {
        self.client()
            .config_history(&self.cell, self.tenant, first)
            .await
    }

    pub async fn quotas(&self) -> Result<Vec<Quota>> {
        self.client().quotas(&self.cell, self.tenant).await
    }

    /// Anything but a reference is refused before the cell is asked.
    pub async fn set_secret_ref(&self, input: &SetSecretRefInput) -> Result<SecretRef> {
        shared::secretref::validate(&input.reference).field("input.ref")?;
        self.client()
            .set_secret_ref(&self.cell, input, self.actor)
            .await
    }

    pub async fn update_tenant_config(
        &self,
        input: &UpdateTenantConfigInput,
    ) -> Result<ConfigVersion> {
        self.client()
            .update_tenant_config(&self.cell, input, self.actor)
            .await
    }

    pub async fn rollback_tenant_config(
        &self,
        input: &RollbackTenantConfigInput,
    ) -> Result<ConfigVersion> {
        self.client()
            .rollback_tenant_config(&self.cell, input, self.actor)
            .await
    }

    /// The metric must be in the catalog and the rule fit its kind.
    pub async fn set_quota(&self, input: &SetQuotaInput) -> Result<QuotaChange> {
        let kind = metric_kind(self.st, &input.metric, "input.metric").await?;
        Rule {
            limit: input.limit,
            period: input.period,
            burst: input.burst,
            enforcement: input.enforcement,
        }
        .check(kind, "input")?;
        self.client().set_quota(&self.cell, input, self.actor).await
    }

    /// The metric must be in the catalog.
    pub async fn clear_quota(&self, input: &ClearQuotaInput) -> Result<QuotaChange> {
        metric_kind(self.st, &input.metric, "input.metric").await?;
        self.client()
            .clear_quota(&self.cell, input, self.actor)
            .await
    }

    /// The plan must be one this tier knows, allowing at least as many
    /// members as the tenant has (members live here, not in the cell).
    pub async fn change_plan(&self, input: &ChangePlanInput) -> Result<TenantPlan> {
        if !self.st.plans.iter().any(|p| p.as_str() == input.plan) {
            let valid: Vec<&str> = self.st.plans.iter().map(|p| p.as_str()).collect();
            return Err(Error::bad_input(
                "input.plan",
                format!(
                    "unknown plan `{}`; valid plans: {}",
                    input.plan,
                    valid.join(", ")
                ),
            ));
        }
        members::check_plan_room(&self.st.db, self.tenant, &input.plan).await?;
        self.client()
            .change_plan(&self.cell, input, self.actor)
            .await
    }

    pub async fn set_entitlement_override(
        &self,
        input: &SetEntitlementOverrideInput,
    ) -> Result<TenantPlan> {
        self.client()
            .set_entitlement_override(&self.cell, input, self.actor)
            .await
    }

    pub async fn create_project(&self, input: &CreateProjectInput) -> Result<Project> {
        self.client()
            .create_project(&self.cell, input, self.actor)
            .await
    }

    pub async fn create_environment(&self, input: &CreateEnvironmentInput) -> Result<Project> {
        self.client()
            .create_environment(&self.cell, input, self.actor)
            .await
    }
}
