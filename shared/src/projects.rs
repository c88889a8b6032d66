//! The GraphQL shapes of projects and environments, the same on both APIs:
//! the global tier forwards them to the tenant's home cell.

use async_graphql::{ID, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};

/// One environment of a project, such as `prod`.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    /// A DNS label, unique in the project.
    pub name: String,
}

/// A tenant's project; its id is its name (a DNS label, never renamed).
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    /// The project's name (the same as `name`).
    pub id: ID,
    /// A DNS label, unique in the tenant.
    pub name: String,
    /// Increases when an environment is added.
    pub version: i64,
    /// Its environments, in the order they were added.
    pub environments: Vec<Environment>,
}

/// Creates a project in a tenant.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateProjectInput {
    /// The tenant that owns the project.
    pub tenant_id: ID,
    /// A DNS label, unique in the tenant; it becomes the project's id.
    pub name: String,
    /// A retry with the same key gets the same project.
    pub idempotency_key: String,
}

/// Adds an environment to a project.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEnvironmentInput {
    /// The tenant that owns the project.
    pub tenant_id: ID,
    /// The project's id (its name).
    pub project_id: String,
    /// A DNS label, unique in the project.
    pub name: String,
    /// Makes retries safe: a retry with the same key gets the same answer.
    pub idempotency_key: String,
    /// The project's version; a stale one is a CONFLICT.
    pub expected_version: Option<i64>,
}

/// One tenant's projects, in a batch read of several tenants.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantProjects {
    /// The tenant the projects belong to.
    pub tenant_id: ID,
    /// The tenant's projects.
    pub projects: Vec<Project>,
}

/// The selection of `TenantProjects` in GraphQL syntax.
pub const TENANT_PROJECTS_FIELDS: &str =
    "tenantId projects { id name version environments { name } }";
