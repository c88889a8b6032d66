//! Plan changes and entitlement overrides through the global API, routed
//! to the tenant's home cell (the authority of its plan).

use async_graphql::{Context, Object, Result};
use shared::plans::{ChangePlanInput, SetEntitlementOverrideInput, TenantPlan};

use super::auth::caller;
use super::config::routed_write;
use crate::service::directory;

#[derive(Default)]
pub struct PlansMutation;

#[Object]
impl PlansMutation {
    /// Moves a tenant to another plan under `expectedVersion` (its plan
    /// version); refused when its usage exceeds the new plan's quotas.
    async fn change_plan(&self, ctx: &Context<'_>, input: ChangePlanInput) -> Result<TenantPlan> {
        let (st, _) = caller(ctx).map_err(shared::Error::into_gql)?;
        let check = if st.plans.iter().any(|p| p.as_str() == input.plan) {
            // Members live here, not in the cell: a plan that allows fewer
            // than the tenant has is refused before the cell is asked.
            match input.tenant_id.parse::<shared::ids::TenantId>() {
                Ok(t) => crate::service::members::check_plan_room(&st.db, t, &input.plan).await,
                Err(_) => Ok(()),
            }
        } else {
            let valid: Vec<&str> = st.plans.iter().map(|p| p.as_str()).collect();
            Err(shared::Error::bad_input(
                "input.plan",
                format!(
                    "unknown plan `{}`; valid plans: {}",
                    input.plan,
                    valid.join(", ")
                ),
            ))
        };
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let q = format!(
            "mutation($i: ChangePlanInput!, $who: String) {{ changePlan(input: $i, onBehalfOf: $who) {{ {} }} }}",
            shared::plans::TENANT_PLAN_FIELDS
        );
        let tenant_id = input.tenant_id.clone();
        let changed: TenantPlan =
            routed_write(ctx, "changePlan", &tenant_id, detail, check, &q, input).await?;
        // The cell reports the change on `cell.tenants` too; recording it
        // here makes the directory right before this answer.
        if let Ok(id) = tenant_id.parse::<uuid::Uuid>() {
            directory::record_plan(&st.db, id, &changed.plan, changed.version)
                .await
                .map_err(shared::Error::into_gql)?;
        }
        Ok(changed)
    }

    /// Overrides one entitlement of the tenant's plan (null removes the override).
    async fn set_entitlement_override(
        &self,
        ctx: &Context<'_>,
        input: SetEntitlementOverrideInput,
    ) -> Result<TenantPlan> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let q = format!(
            "mutation($i: SetEntitlementOverrideInput!, $who: String) {{ setEntitlementOverride(input: $i, onBehalfOf: $who) {{ {} }} }}",
            shared::plans::TENANT_PLAN_FIELDS
        );
        routed_write(
            ctx,
            "setEntitlementOverride",
            &input.tenant_id.clone(),
            detail,
            Ok(()),
            &q,
            input,
        )
        .await
    }
}
