//! The GraphQL shapes of projects and environments, the same on both APIs:
//! the global tier forwards them to the tenant's home cell.

use async_graphql::{ID, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};

#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub name: String,
}

/// A tenant's project; its id is its name (a DNS label, never renamed).
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub id: ID,
    pub name: String,
    /// Increases when an environment is added.
    pub version: i64,
    pub environments: Vec<Environment>,
}

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateProjectInput {
    pub tenant_id: ID,
    /// A DNS label, unique in the tenant; it becomes the project's id.
    pub name: String,
    /// A retry with the same key gets the same project.
    pub idempotency_key: String,
}

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEnvironmentInput {
    pub tenant_id: ID,
    pub project_id: String,
    /// A DNS label, unique in the project.
    pub name: String,
    pub idempotency_key: String,
    /// The project's version; a stale one is a CONFLICT.
    pub expected_version: Option<i64>,
}

/// One tenant's projects, in a batch read of several tenants.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantProjects {
    pub tenant_id: ID,
    pub projects: Vec<Project>,
}

/// The selection of `TenantProjects` in GraphQL syntax.
pub const TENANT_PROJECTS_FIELDS: &str =
    "tenantId projects { id name version environments { name } }";
