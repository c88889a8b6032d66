//! A tenant's plan on the cell's API: what the global tier forwards.

use async_graphql::{Context, ID, Object, Result};
use shared::IntoGql;
use shared::error::Field;
use shared::ids::IdempotencyKey;
use shared::plans::{ChangePlanInput, SetEntitlementOverrideInput, TenantPlan};

use super::config::{audited, readable};
use super::query::reader;
use crate::service::plans;

#[derive(Default)]
pub struct PlansQuery;

#[derive(Default)]
pub struct PlansMutation;

#[Object]
impl PlansQuery {
    /// The tenant's plan, quotas and effective entitlements.
    async fn tenant_plan(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<TenantPlan> {
        let (st, p) = reader(ctx).gql()?;
        let t = readable(p, &tenant_id).gql()?;
        plans::get(&st.db, t).await.gql()
    }

    /// The plans of those of `tenantIds` (at most 500) this cell holds and
    /// the caller may read: one call for a page of tenants.
    async fn tenant_plans(
        &self,
        ctx: &Context<'_>,
        tenant_ids: Vec<ID>,
    ) -> Result<Vec<shared::plans::TenantPlanOf>> {
        let (st, p) = reader(ctx).gql()?;
        let ids = super::projects::visible(p, &tenant_ids).gql()?;
        Ok(plans::get_many(&st.db, &ids)
            .await
            .gql()?
            .into_iter()
            .map(|(t, plan)| shared::plans::TenantPlanOf {
                tenant_id: ID(t.to_string()),
                plan,
            })
            .collect())
    }
}

#[Object]
impl PlansMutation {
    /// Moves the tenant to another plan (refused when its usage exceeds the new quotas).
    async fn change_plan(
        &self,
        ctx: &Context<'_>,
        input: ChangePlanInput,
        on_behalf_of: Option<String>,
    ) -> Result<TenantPlan> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant_id = input.tenant_id.clone();
        audited(
            ctx,
            "changePlan",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, _| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                plans::change(st, t, &input.plan, input.expected_version, &key).await
            },
        )
        .await
    }

    /// Overrides one of the plan's entitlements for this tenant (null removes the override).
    async fn set_entitlement_override(
        &self,
        ctx: &Context<'_>,
        input: SetEntitlementOverrideInput,
        on_behalf_of: Option<String>,
    ) -> Result<TenantPlan> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant_id = input.tenant_id.clone();
        audited(
            ctx,
            "setEntitlementOverride",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, _| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                plans::set_override(
                    &st.db,
                    t,
                    &input.name,
                    input.enabled,
                    input.expected_version,
                    &key,
                )
                .await
            },
        )
        .await
    }
}
