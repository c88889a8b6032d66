//! Tenant configuration through the global API: every read and write is
//! routed to the tenant's home cell (`service::tenant_cell`), the only place
//! it is stored.

use async_graphql::{Context, ID, Object, Result};
use serde_json::json;
use shared::IntoGql;
use shared::audit;
use shared::auth::Principal;
use shared::configkeys::api::{
    ConfigChange, ConfigValue, ConfigVersion, RollbackTenantConfigInput, SecretRef,
    SetSecretRefInput, UpdateTenantConfigInput,
};
use shared::ids::TenantId;
use shared::server::record_tenant;

use super::auth::caller;
use crate::State;
use crate::service::members::Level;
use crate::service::tenant_cell;

#[derive(Default)]
pub struct ConfigQuery;

#[derive(Default)]
pub struct ConfigMutation;

#[Object]
impl ConfigQuery {
    /// The tenant's secret references, from its home cell.
    async fn secret_refs(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<Vec<SecretRef>> {
        let (st, p) = caller(ctx).gql()?;
        let home = tenant_cell::route(st, p, &tenant_id, Level::Viewer, "secretRefs")
            .await
            .gql()?;
        home.secret_refs().await.gql()
    }

    /// Every registered key's value for the tenant (its default project when
    /// `projectId` is left out), with the layer it came from.
    async fn effective_config(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        project_id: Option<String>,
        environment: Option<String>,
    ) -> Result<Vec<ConfigValue>> {
        let (st, p) = caller(ctx).gql()?;
        let home = tenant_cell::route(st, p, &tenant_id, Level::Viewer, "effectiveConfig")
            .await
            .gql()?;
        record_tenant(ctx, &home.tenant);
        home.effective_config(project_id.as_deref(), environment.as_deref())
            .await
            .gql()
    }

    /// Who changed the tenant's configuration, when, and what; newest first.
    async fn config_history(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<ConfigChange>> {
        let (st, p) = caller(ctx).gql()?;
        let home = tenant_cell::route(st, p, &tenant_id, Level::Viewer, "configHistory")
            .await
            .gql()?;
        home.config_history(first).await.gql()
    }
}

#[Object]
impl ConfigMutation {
    /// Stores where one of the tenant's secrets lives, in its home cell.
    /// Anything but a reference is refused; the value is never logged.
    async fn set_secret_ref(
        &self,
        ctx: &Context<'_>,
        input: SetSecretRefInput,
    ) -> Result<SecretRef> {
        let (st, p) = caller(ctx).gql()?;
        let detail =
            json!({ "name": input.name, "scheme": shared::secretref::scheme(&input.reference) });
        let action = "setSecretRef";
        audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Member, action).await?;
            Ok((home.tenant, home.set_secret_ref(&input).await?))
        })
        .await
    }

    /// Sets and unsets values all or nothing, in the tenant's home cell.
    async fn update_tenant_config(
        &self,
        ctx: &Context<'_>,
        input: UpdateTenantConfigInput,
    ) -> Result<ConfigVersion> {
        let (st, p) = caller(ctx).gql()?;
        // The keys, not their values: those stay in the cell (residency).
        let detail = json!({
            "tenantId": input.tenant_id,
            "projectId": input.project_id,
            "environment": input.environment,
            "set": input.set.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
            "unset": input.unset,
            "expectedVersion": input.expected_version,
        });
        let action = "updateTenantConfig";
        audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Member, action).await?;
            Ok((home.tenant, home.update_tenant_config(&input).await?))
        })
        .await
    }

    /// Restores an earlier version's values as a new version.
    async fn rollback_tenant_config(
        &self,
        ctx: &Context<'_>,
        input: RollbackTenantConfigInput,
    ) -> Result<ConfigVersion> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let action = "rollbackTenantConfig";
        audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Member, action).await?;
            Ok((home.tenant, home.rollback_tenant_config(&input).await?))
        })
        .await
    }
}

/// Runs `write`, a change of one tenant's data, under an audit trail of
/// `action`: its outcome is recorded here whether it succeeds or is
/// refused, with the tenant `write` answers (none when it failed).
pub(super) async fn audited<T>(
    st: &State,
    p: &Principal,
    action: &str,
    tenant_id: &ID,
    detail: serde_json::Value,
    write: impl Future<Output = shared::Result<(TenantId, T)>>,
) -> Result<T> {
    let trail = audit::Trail::routed(p, action, detail);
    let result = trail.scope(write).await;
    // A refusal names the tenant too, so its purge erases the entry's input.
    let tenant = match &result {
        Ok((t, _)) => Some(t.0),
        Err(_) => tenant_id.parse::<TenantId>().ok().map(|t| t.0),
    };
    trail.finish(&st.db, tenant, None, &result).await.gql()?;
    Ok(result.gql()?.1)
}
