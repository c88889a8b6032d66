//! Projects and environments through the global API, routed to the
//! tenant's home cell like its configuration.

use async_graphql::{Context, Object, Result};
use shared::projects::{CreateEnvironmentInput, CreateProjectInput, Project};

use super::config::routed_write;

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
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let q = "mutation($i: CreateProjectInput!, $who: String) { createProject(input: $i, onBehalfOf: $who) { id name version environments { name } } }";
        routed_write(
            ctx,
            "createProject",
            &input.tenant_id.clone(),
            detail,
            Ok(()),
            q,
            input,
        )
        .await
    }

    /// Adds an environment to a project (with `expectedVersion` of the project).
    async fn create_environment(
        &self,
        ctx: &Context<'_>,
        input: CreateEnvironmentInput,
    ) -> Result<Project> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let q = "mutation($i: CreateEnvironmentInput!, $who: String) { createEnvironment(input: $i, onBehalfOf: $who) { id name version environments { name } } }";
        routed_write(
            ctx,
            "createEnvironment",
            &input.tenant_id.clone(),
            detail,
            Ok(()),
            q,
            input,
        )
        .await
    }
}
