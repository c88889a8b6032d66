//! Projects and environments on the cell's API, and the two calls the
//! global tier's provisioning saga makes: allocate the default resources,
//! and purge everything of a tenant.

use async_graphql::{Context, ID, Object, Result};
use shared::IntoGql;
use shared::audit;
use shared::auth::{Principal, Role};
use shared::error::Field;
use shared::ids::{IdempotencyKey, TenantId};
use shared::projects::{CreateEnvironmentInput, CreateProjectInput, Environment, Project};

use super::config::{audited, readable};
use super::query::reader;
use crate::service::{projects, purge};

#[derive(Default)]
pub struct ProjectsQuery;

#[derive(Default)]
pub struct ProjectsMutation;

pub fn view(p: projects::Project) -> Project {
    Project {
        id: ID(p.name.clone()),
        name: p.name,
        version: p.version,
        environments: p
            .environments
            .into_iter()
            .map(|name| Environment { name })
            .collect(),
    }
}

fn control_plane(p: &Principal, action: &str) -> shared::Result<()> {
    if p.is_control_plane() || p.has(Role::PlatformAdmin) {
        Ok(())
    } else {
        Err(shared::Error::Forbidden(format!(
            "{action} on a cell is for the global tier or a platform-admin"
        )))
    }
}

/// Parses a batch of tenant ids (at most 500) and keeps those `p` may read.
pub(super) fn visible(p: &Principal, ids: &[ID]) -> shared::Result<Vec<TenantId>> {
    if ids.len() > 500 {
        return Err(shared::Error::bad_input(
            "tenantIds",
            "at most 500 ids per call",
        ));
    }
    Ok(ids
        .iter()
        .map(|i| i.parse::<TenantId>().field("tenantIds"))
        .collect::<shared::Result<Vec<_>>>()?
        .into_iter()
        .filter(|t| p.can_read_tenant(*t))
        .collect())
}

#[Object]
impl ProjectsQuery {
    /// The projects of each of `tenantIds` (at most 500) the caller may
    /// read: one call for a page of tenants.
    async fn projects_of(
        &self,
        ctx: &Context<'_>,
        tenant_ids: Vec<ID>,
    ) -> Result<Vec<shared::projects::TenantProjects>> {
        let (st, p) = reader(ctx).gql()?;
        let ids = visible(p, &tenant_ids).gql()?;
        Ok(projects::list_many(&st.db, &ids)
            .await
            .gql()?
            .into_iter()
            .map(|(t, ps)| shared::projects::TenantProjects {
                tenant_id: ID(t.to_string()),
                projects: ps.into_iter().map(view).collect(),
            })
            .collect())
    }

    /// The tenant's projects and their environments.
    async fn projects(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<Vec<Project>> {
        let (st, p) = reader(ctx).gql()?;
        let t = readable(p, &tenant_id).gql()?;
        Ok(projects::list(&st.db, t)
            .await
            .gql()?
            .into_iter()
            .map(view)
            .collect())
    }
}

#[Object]
impl ProjectsMutation {
    /// Makes the tenant's default project with dev, stage and prod, and its
    /// flag state: the compiled snapshot holds the tenant before this
    /// answers, so it evaluates flags as soon as it is ACTIVE (provisioning).
    /// A no-op when they exist.
    async fn allocate_tenant_resources(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
    ) -> Result<Vec<Project>> {
        let (st, p) = reader(ctx).gql()?;
        let t: TenantId = tenant_id.parse().field("tenantId").gql()?;
        let trail = audit::Trail::new(p, "allocateTenantResources", serde_json::json!({}).clone());
        let result = trail
            .scope(async {
                control_plane(p, "allocateTenantResources")?;
                projects::allocate_defaults(&st.db, t).await?;
                crate::flags::allocate(st, t).await?;
                projects::list(&st.db, t).await
            })
            .await;
        trail.finish(&st.db, Some(t.0), None, &result).await.gql()?;
        Ok(result.gql()?.into_iter().map(view).collect())
    }

    /// Deletes every row this cell holds of the tenant, in every table;
    /// returns how many. Running it again is a no-op.
    async fn purge_tenant(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<u64> {
        let (st, p) = reader(ctx).gql()?;
        let t: TenantId = tenant_id.parse().field("tenantId").gql()?;
        let trail = audit::Trail::new(
            p,
            "purgeTenant",
            serde_json::json!({ "tenantId": t }).clone(),
        );
        let result = trail
            .scope(async {
                control_plane(p, "purgeTenant")?;
                purge::purge(&st.db, t).await
            })
            .await;
        // Recorded without the tenant id: nothing tenant-scoped may remain.
        trail
            .finish(&st.db, None, Some(t.to_string()), &result)
            .await
            .gql()?;
        result.gql()
    }

    /// Creates a project with dev, stage and prod; retry-safe by key.
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        input: CreateProjectInput,
        on_behalf_of: Option<String>,
    ) -> Result<Project> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant_id = input.tenant_id.clone();
        let p = audited(
            ctx,
            "createProject",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, _| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                projects::create_project(&st.db, t, &input.name, key.as_str()).await
            },
        )
        .await?;
        Ok(view(p))
    }

    /// Adds an environment to a project; retry-safe by key.
    async fn create_environment(
        &self,
        ctx: &Context<'_>,
        input: CreateEnvironmentInput,
        on_behalf_of: Option<String>,
    ) -> Result<Project> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant_id = input.tenant_id.clone();
        let p = audited(
            ctx,
            "createEnvironment",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, _| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                projects::create_environment(
                    &st.db,
                    t,
                    &input.project_id,
                    &input.name,
                    key.as_str(),
                    input.expected_version,
                )
                .await
            },
        )
        .await?;
        Ok(view(p))
    }
}
