//! Tenant configuration on the cell's API: what the global tier forwards.

use async_graphql::{Context, ID, Json, Object, Result};
use shared::IntoGql;
use shared::audit;
use shared::auth::Principal;
use shared::configkeys::api::{
    ConfigChange, ConfigValue, ConfigVersion, RollbackTenantConfigInput, SecretRef,
    SetSecretRefInput, UpdateTenantConfigInput,
};
use shared::error::Field;
use shared::ids::{CellId, IdempotencyKey, TenantId};

use super::query::reader;
use crate::entity::secret_ref;
use crate::service::config::{self, Target, Update};
use crate::service::secrets;

#[derive(Default)]
pub struct ConfigQuery;

#[derive(Default)]
pub struct ConfigMutation;

fn label(v: Option<String>, field: &str) -> shared::Result<Option<String>> {
    // Project and environment names are DNS labels, like cell ids.
    v.map(|s| CellId::parse(&s).map(|_| s).field(field))
        .transpose()
}

/// Who the change is recorded against: the end user the global tier names,
/// or the caller itself.
fn actor(p: &Principal, on_behalf_of: Option<String>) -> String {
    match on_behalf_of {
        Some(a) if p.is_control_plane() => a,
        _ => p.subject.clone(),
    }
}

pub(super) fn readable(p: &Principal, id: &ID) -> shared::Result<TenantId> {
    let t: TenantId = id.parse().field("tenantId")?;
    if !p.can_read_tenant(t) {
        return Err(shared::Error::NotFound(format!("tenant {t} not found")));
    }
    Ok(t)
}

fn writable(p: &Principal, id: &ID) -> shared::Result<TenantId> {
    let t = readable(p, id)?;
    if !p.can_write_tenant(t) {
        return Err(shared::Error::Forbidden(
            "changing configuration needs tenant-admin or platform-admin".into(),
        ));
    }
    Ok(t)
}

fn secret_view(m: secret_ref::Model) -> SecretRef {
    SecretRef {
        name: m.name,
        reference: m.reference,
        version: m.version,
        updated_at: m.updated_at,
    }
}

#[Object]
impl ConfigQuery {
    /// The tenant's secret references (never secret values).
    async fn secret_refs(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<Vec<SecretRef>> {
        let (st, p) = reader(ctx).gql()?;
        let t = readable(p, &tenant_id).gql()?;
        Ok(secrets::list(&st.db, t)
            .await
            .gql()?
            .into_iter()
            .map(secret_view)
            .collect())
    }

    /// Every registered key's value for the tenant, with the layer it came from.
    async fn effective_config(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        project_id: Option<String>,
        environment: Option<String>,
    ) -> Result<Vec<ConfigValue>> {
        let (st, p) = reader(ctx).gql()?;
        let t = readable(p, &tenant_id).gql()?;
        let project = label(project_id, "projectId").gql()?;
        let env = label(environment, "environment").gql()?;
        let (_, values) = config::effective(&st.db, t, project.as_deref(), env.as_deref())
            .await
            .gql()?;
        Ok(values
            .into_iter()
            .map(|v| ConfigValue {
                key: v.key,
                value: Json(v.value),
                source: v.source,
            })
            .collect())
    }

    /// The tenant's configuration changes, newest first.
    async fn config_history(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<ConfigChange>> {
        let (st, p) = reader(ctx).gql()?;
        let t = readable(p, &tenant_id).gql()?;
        if !(1..=500).contains(&first) {
            return Err(
                shared::Error::bad_input("first", "first must be between 1 and 500").into_gql(),
            );
        }
        let rows = config::history(&st.db, t, first as u64).await.gql()?;
        Ok(rows
            .into_iter()
            .map(|r| ConfigChange {
                version: r.version,
                actor: r.actor,
                at: r.at,
                diff: Json(serde_json::from_str(&r.diff).unwrap_or_default()),
            })
            .collect())
    }
}

#[Object]
impl ConfigMutation {
    /// Stores where one of the tenant's secrets lives. Only references are
    /// accepted; the value is never logged nor audited.
    async fn set_secret_ref(
        &self,
        ctx: &Context<'_>,
        input: SetSecretRefInput,
        on_behalf_of: Option<String>,
    ) -> Result<SecretRef> {
        let detail = serde_json::json!({ "name": input.name, "scheme": shared::secretref::scheme(&input.reference) });
        let tenant_id = input.tenant_id.clone();
        let row = audited(
            ctx,
            "setSecretRef",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, _| async move {
                secrets::set(
                    &st.db,
                    t,
                    &input.name,
                    &input.reference,
                    input.expected_version,
                )
                .await
            },
        )
        .await?;
        Ok(secret_view(row))
    }

    /// Sets and unsets values all or nothing; a stale `expectedVersion` is a CONFLICT.
    async fn update_tenant_config(
        &self,
        ctx: &Context<'_>,
        input: UpdateTenantConfigInput,
        on_behalf_of: Option<String>,
    ) -> Result<ConfigVersion> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant_id = input.tenant_id.clone();
        let version = audited(
            ctx,
            "updateTenantConfig",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, who| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                let u = Update {
                    tenant: t,
                    target: Target {
                        project: label(input.project_id, "input.projectId")?,
                        environment: label(input.environment, "input.environment")?,
                    },
                    set: input.set.into_iter().map(|s| (s.key, s.value.0)).collect(),
                    unset: input.unset,
                    expected_version: input.expected_version,
                    idempotency_key: key.to_string(),
                    actor: who,
                };
                config::update(&st.db, u).await
            },
        )
        .await?;
        Ok(ConfigVersion { version })
    }

    /// Restores an earlier version's values as a new version.
    async fn rollback_tenant_config(
        &self,
        ctx: &Context<'_>,
        input: RollbackTenantConfigInput,
        on_behalf_of: Option<String>,
    ) -> Result<ConfigVersion> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant_id = input.tenant_id.clone();
        let version = audited(
            ctx,
            "rollbackTenantConfig",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, who| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                if input.to_version < 0 {
                    return Err(shared::Error::bad_input(
                        "input.toVersion",
                        "toVersion must be 0 or more",
                    ));
                }
                config::rollback(
                    &st.db,
                    t,
                    input.to_version,
                    input.expected_version,
                    key.as_str(),
                    &who,
                )
                .await
            },
        )
        .await?;
        Ok(ConfigVersion { version })
    }
}

/// Runs a write to `tenant_id` once the caller may change it, recorded
/// against the caller (or the end user the global tier names), and audits
/// its outcome, refused or not.
pub(super) async fn audited<'a, T, Fut>(
    ctx: &'a Context<'_>,
    action: &str,
    tenant_id: &ID,
    on_behalf_of: Option<String>,
    detail: serde_json::Value,
    write: impl FnOnce(&'a crate::State, TenantId, String) -> Fut,
) -> Result<T>
where
    Fut: Future<Output = shared::Result<T>>,
{
    let (st, p) = reader(ctx).gql()?;
    let tenant = tenant_id.parse::<TenantId>().ok().map(|t| t.0);
    let who = actor(p, on_behalf_of);
    let trail = audit::Trail::with_target(p, action, detail, who.clone());
    let result = match writable(p, tenant_id) {
        Ok(t) => trail.scope(write(st, t, who.clone())).await,
        Err(e) => Err(e),
    };
    trail
        .finish(&st.db, tenant, Some(who), &result)
        .await
        .gql()?;
    result.gql()
}
