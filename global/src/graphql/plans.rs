//! Plan changes and entitlement overrides through the global API, routed
//! to the tenant's home cell (the authority of its plan).

use async_graphql::{Context, Object, Result};
use shared::IntoGql;
use shared::plans::{ChangePlanInput, SetEntitlementOverrideInput, TenantPlan};

use super::auth::caller;
use super::config::audited;
use crate::service::members::Level;
use crate::service::{directory, tenant_cell};

#[derive(Default)]
pub struct PlansMutation;

#[Object]
impl PlansMutation {
    /// Moves a tenant to another plan under `expectedVersion` (its plan
    /// version); refused when its usage exceeds the new plan's quotas.
    async fn change_plan(&self, ctx: &Context<'_>, input: ChangePlanInput) -> Result<TenantPlan> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        // Plans are the owners' to change.
        let action = "changePlan";
        let changed = audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Owner, action).await?;
            Ok((home.tenant, home.change_plan(&input).await?))
        })
        .await?;
        // The cell reports the change on `cell.tenants` too; recording it
        // here makes the directory right before this answer.
        if let Ok(id) = input.tenant_id.parse::<uuid::Uuid>() {
            directory::record_plan(&st.db, id, &changed.plan, changed.version)
                .await
                .gql()?;
        }
        Ok(changed)
    }

    /// Overrides one entitlement of the tenant's plan (null removes the override).
    async fn set_entitlement_override(
        &self,
        ctx: &Context<'_>,
        input: SetEntitlementOverrideInput,
    ) -> Result<TenantPlan> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let action = "setEntitlementOverride";
        audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Owner, action).await?;
            Ok((home.tenant, home.set_entitlement_override(&input).await?))
        })
        .await
    }
}
