//! Projects and environments through the global API, routed to the
//! tenant's home cell like its configuration.

use async_graphql::{Context, Object, Result};
use shared::IntoGql;
use shared::projects::{CreateEnvironmentInput, CreateProjectInput, Project};

use super::auth::caller;
use super::config::audited;
use crate::service::members::Level;
use crate::service::tenant_cell;

#[derive(Default)]
pub struct ProjectsMutation;

#[Object]
impl ProjectsMutation {
    /// Creates a project (with dev, stage and prod) in the tenant's home
    /// cell. Its name is a DNS label and its id; a taken name is a CONFLICT.
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        input: CreateProjectInput,
    ) -> Result<Project> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let action = "createProject";
        audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Member, action).await?;
            Ok((home.tenant, home.create_project(&input).await?))
        })
        .await
    }

    /// Adds an environment to a project (with `expectedVersion` of the project).
    async fn create_environment(
        &self,
        ctx: &Context<'_>,
        input: CreateEnvironmentInput,
    ) -> Result<Project> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let action = "createEnvironment";
        audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Member, action).await?;
            Ok((home.tenant, home.create_environment(&input).await?))
        })
        .await
    }
}
