//! Suspend, resume, deprovision and restore a tenant.

use async_graphql::{Context, ID, InputObject, Object, Result};
use serde::Serialize;
use shared::IntoGql;
use shared::audit;
use shared::auth::{Principal, Role};
use shared::error::Field;
use shared::ids::{IdempotencyKey, TenantId};

use super::auth::caller;
use super::types::Tenant;
use crate::service::members::{self, Level};
use crate::service::tenant_status::{self, Change};

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeTenantStatusInput {
    pub tenant_id: ID,
    /// The tenant's current version; a stale one is a CONFLICT.
    pub expected_version: i64,
    /// A retry with the same key and input gets the first answer again.
    pub idempotency_key: String,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeprovisionTenantInput {
    pub tenant_id: ID,
    pub idempotency_key: String,
    /// Seconds the tenant can still be restored (0 to the configured maximum);
    /// then its cell purges it.
    pub grace_period_seconds: i64,
    pub expected_version: Option<i64>,
}

#[derive(Default)]
pub struct StatusMutation;

/// Who may do what: operators (platform-admin, sre) suspend and resume;
/// the tenant's owners (and platform admins) deprovision and restore.
async fn authorize(
    st: &crate::State,
    p: &Principal,
    id: TenantId,
    change: Change,
) -> shared::Result<()> {
    match change {
        Change::Suspend | Change::Resume => {
            members::require(&st.db, p, id, Level::Viewer, change.action()).await?;
            p.require_any(&[Role::PlatformAdmin, Role::Sre], change.action())
        }
        _ => members::require(&st.db, p, id, Level::Owner, change.action())
            .await
            .map(|_| ()),
    }
}

async fn run(
    ctx: &Context<'_>,
    tenant_id: &ID,
    expected: Option<i64>,
    key: &str,
    change: Change,
    detail: serde_json::Value,
) -> Result<Tenant> {
    let (st, p) = caller(ctx).gql()?;
    let trail = audit::Trail::new(p, change.action(), detail.clone());
    let result = trail
        .scope(async {
            let id: TenantId = tenant_id.parse().field("input.tenantId")?;
            authorize(st, p, id, change).await?;
            let key = IdempotencyKey::parse(key).field("input.idempotencyKey")?;
            tenant_status::change(st, &p.subject, id, expected, &key, change).await
        })
        .await;
    let tenant = result.as_ref().ok().map(|r| r.id);
    trail.finish(&st.db, tenant, None, &result).await.gql()?;
    let row = result.gql()?;
    shared::server::record_tenant_at(ctx, &row.id, super::query::placement(&row));
    Ok(Tenant(row))
}

#[Object]
impl StatusMutation {
    /// ACTIVE → SUSPENDED: writes are refused, reads still work.
    async fn suspend_tenant(
        &self,
        ctx: &Context<'_>,
        input: ChangeTenantStatusInput,
    ) -> Result<Tenant> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        run(
            ctx,
            &input.tenant_id,
            Some(input.expected_version),
            &input.idempotency_key,
            Change::Suspend,
            detail,
        )
        .await
    }

    /// SUSPENDED → ACTIVE.
    async fn resume_tenant(
        &self,
        ctx: &Context<'_>,
        input: ChangeTenantStatusInput,
    ) -> Result<Tenant> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        run(
            ctx,
            &input.tenant_id,
            Some(input.expected_version),
            &input.idempotency_key,
            Change::Resume,
            detail,
        )
        .await
    }

    /// ACTIVE or SUSPENDED → DEPROVISIONING: writes are refused and data is
    /// kept until the grace period ends; then the home cell purges every
    /// row of the tenant and the directory keeps a DELETED tombstone.
    async fn deprovision_tenant(
        &self,
        ctx: &Context<'_>,
        input: DeprovisionTenantInput,
    ) -> Result<Tenant> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let change = Change::Deprovision {
            grace_seconds: input.grace_period_seconds,
        };
        run(
            ctx,
            &input.tenant_id,
            input.expected_version,
            &input.idempotency_key,
            change,
            detail,
        )
        .await
    }

    /// DEPROVISIONING → ACTIVE, within the grace period, with its data intact.
    async fn restore_tenant(
        &self,
        ctx: &Context<'_>,
        input: ChangeTenantStatusInput,
    ) -> Result<Tenant> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        run(
            ctx,
            &input.tenant_id,
            Some(input.expected_version),
            &input.idempotency_key,
            Change::Restore,
            detail,
        )
        .await
    }
}
