//! Plan changes and entitlement overrides through the global API, routed
//! to the tenant's home cell (the authority of its plan).

use async_graphql::{Context, Object, Result};
use shared::plans::{ChangePlanInput, SetEntitlementOverrideInput, TenantPlan};

use super::auth::caller;
use super::config::routed_write;

#[derive(Default)]
pub struct PlansMutation;

#[Object]
impl PlansMutation {
    /// Moves a tenant to another plan under `expectedVersion` (its plan
    /// version); refused when its usage exceeds the new plan's quotas.
    async fn change_plan(&self, ctx: &Context<'_>, input: ChangePlanInput) -> Result<TenantPlan> {
        let (st, _) = caller(ctx).map_err(shared::Error::into_gql)?;
        let check = if st.plans.iter().any(|p| p.as_str() == input.plan) {
            Ok(())
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
        routed_write(
            ctx,
            "changePlan",
            &input.tenant_id.clone(),
            detail,
            check,
            &q,
            input,
        )
        .await
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
