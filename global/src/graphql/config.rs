//! Tenant configuration through the global API: every read and write is
//! routed to the tenant's home cell, the only place it is stored.

use async_graphql::{Context, ID, Object, Result};
use serde::Deserialize;
use serde_json::json;
use shared::IntoGql;
use shared::audit;
use shared::auth::Principal;
use shared::configkeys::api::{
    ConfigChange, ConfigValue, ConfigVersion, RollbackTenantConfigInput, SecretRef,
    SetSecretRefInput, UpdateTenantConfigInput,
};
use shared::error::Field;
use shared::ids::TenantId;
use shared::server::record_tenant;

use super::auth::caller;
use crate::State;
use crate::entity::cell;
use crate::service::directory;
use crate::service::members::{self, Level};

#[derive(Default)]
pub struct ConfigQuery;

#[derive(Default)]
pub struct ConfigMutation;

/// The tenant's home cell, after checking the caller's level on the
/// tenant (NOT_FOUND when it may not see it) and, for writes, its status.
pub(super) async fn home(
    st: &State,
    p: &Principal,
    id: &ID,
    need: Level,
    action: &str,
) -> shared::Result<(TenantId, cell::Model)> {
    let t: TenantId = id.parse().field("tenantId")?;
    let not_found = || shared::Error::NotFound(format!("tenant {t} not found"));
    members::require(&st.db, p, t, need, action).await?;
    let row = if need > Level::Viewer {
        directory::writable(&st.db, t).await?
    } else {
        directory::get(&st.db, t).await?.ok_or_else(not_found)?
    };
    let cell = st.cells.get(&row.cell_id).ok_or_else(|| {
        shared::Error::Unavailable(format!("cell {} is not registered", row.cell_id))
    })?;
    Ok((t, cell))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Effective {
    effective_config: Vec<ConfigValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct History {
    config_history: Vec<ConfigChange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Secrets {
    secret_refs: Vec<SecretRef>,
}

#[Object]
impl ConfigQuery {
    /// The tenant's secret references, from its home cell.
    async fn secret_refs(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<Vec<SecretRef>> {
        let (st, p) = caller(ctx).gql()?;
        let (t, cell) = home(st, p, &tenant_id, Level::Viewer, "secretRefs")
            .await
            .gql()?;
        let q = "query($t: ID!) { secretRefs(tenantId: $t) { name ref version updatedAt } }";
        let out: Secrets = st
            .cell_client
            .forward(&cell, q, json!({ "t": t }))
            .await
            .gql()?;
        Ok(out.secret_refs)
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
        let (t, cell) = home(st, p, &tenant_id, Level::Viewer, "effectiveConfig")
            .await
            .gql()?;
        record_tenant(ctx, &t);
        let q = "query($t: ID!, $p: String, $e: String) { effectiveConfig(tenantId: $t, projectId: $p, environment: $e) { key value source } }";
        let out: Effective = st
            .cell_client
            .forward(
                &cell,
                q,
                json!({ "t": t, "p": project_id, "e": environment }),
            )
            .await
            .gql()?;
        Ok(out.effective_config)
    }

    /// Who changed the tenant's configuration, when, and what; newest first.
    async fn config_history(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<ConfigChange>> {
        let (st, p) = caller(ctx).gql()?;
        let (t, cell) = home(st, p, &tenant_id, Level::Viewer, "configHistory")
            .await
            .gql()?;
        let q = "query($t: ID!, $n: Int!) { configHistory(tenantId: $t, first: $n) { version actor at diff } }";
        let out: History = st
            .cell_client
            .forward(&cell, q, json!({ "t": t, "n": first }))
            .await
            .gql()?;
        Ok(out.config_history)
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
        let detail =
            json!({ "name": input.name, "scheme": shared::secretref::scheme(&input.reference) });
        let check = shared::secretref::validate(&input.reference).field("input.ref");
        let q = "mutation($i: SetSecretRefInput!, $who: String) { setSecretRef(input: $i, onBehalfOf: $who) { name ref version updatedAt } }";
        routed_write(
            ctx,
            "setSecretRef",
            &input.tenant_id.clone(),
            detail,
            check,
            q,
            input,
        )
        .await
    }

    /// Sets and unsets values all or nothing, in the tenant's home cell.
    async fn update_tenant_config(
        &self,
        ctx: &Context<'_>,
        input: UpdateTenantConfigInput,
    ) -> Result<ConfigVersion> {
        // The keys, not their values: those stay in the cell (residency).
        let detail = json!({
            "tenantId": input.tenant_id,
            "projectId": input.project_id,
            "environment": input.environment,
            "set": input.set.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
            "unset": input.unset,
            "expectedVersion": input.expected_version,
        });
        let q = "mutation($i: UpdateTenantConfigInput!, $who: String) { updateTenantConfig(input: $i, onBehalfOf: $who) { version } }";
        routed_write(
            ctx,
            "updateTenantConfig",
            &input.tenant_id.clone(),
            detail,
            Ok(()),
            q,
            input,
        )
        .await
    }

    /// Restores an earlier version's values as a new version.
    async fn rollback_tenant_config(
        &self,
        ctx: &Context<'_>,
        input: RollbackTenantConfigInput,
    ) -> Result<ConfigVersion> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let q = "mutation($i: RollbackTenantConfigInput!, $who: String) { rollbackTenantConfig(input: $i, onBehalfOf: $who) { version } }";
        routed_write(
            ctx,
            "rollbackTenantConfig",
            &input.tenant_id.clone(),
            detail,
            Ok(()),
            q,
            input,
        )
        .await
    }
}

/// Forwards a write to the tenant's home cell on behalf of the caller and
/// audits its outcome here. `action` is both the audit action and the cell
/// mutation's name, whose answer is returned; `check` is a local validation
/// that must pass before anything is sent.
pub(super) async fn routed_write<T: serde::de::DeserializeOwned>(
    ctx: &Context<'_>,
    action: &str,
    tenant_id: &ID,
    detail: serde_json::Value,
    check: shared::Result<()>,
    mutation: &str,
    input: impl serde::Serialize,
) -> Result<T> {
    let (st, p) = caller(ctx).gql()?;
    let trail = audit::Trail::routed(p, action, detail.clone());
    let result = trail
        .scope(async {
            // Plans are the owners' to change; configuration and projects, any member's.
            let need = match action {
                "changePlan" | "setEntitlementOverride" => Level::Owner,
                _ => Level::Member,
            };
            let (t, cell) = home(st, p, tenant_id, need, action).await?;
            check?;
            let mut out: std::collections::HashMap<String, T> = st
                .cell_client
                .forward(&cell, mutation, json!({ "i": input, "who": p.subject }))
                .await?;
            let answer = out.remove(action).ok_or_else(|| {
                shared::Error::internal(anyhow::anyhow!("cell answered without {action}"))
            })?;
            Ok::<_, shared::Error>((t, answer))
        })
        .await;
    // A refusal names the tenant too, so its purge erases the entry's input.
    let tenant = match &result {
        Ok((t, _)) => Some(t.0),
        Err(_) => tenant_id.parse::<shared::ids::TenantId>().ok().map(|t| t.0),
    };
    trail.finish(&st.db, tenant, None, &result).await.gql()?;
    Ok(result.gql()?.1)
}
