//! The GraphQL shapes of tenant configuration, the same on both APIs: the
//! global tier forwards them to the tenant's home cell.

use async_graphql::{Enum, ID, InputObject, Json, SimpleObject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where an effective value came from.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "ConfigSource")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Source {
    Default,
    Tenant,
    Project,
    Environment,
}

#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct ConfigValue {
    pub key: String,
    pub value: Json<Value>,
    pub source: Source,
}

#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// The tenant's configuration version (0 before the first write).
    pub version: i64,
}

#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChange {
    pub version: i64,
    pub actor: String,
    pub at: DateTime<Utc>,
    /// `[{scope, key, before, after}]`, or `[{rollbackTo, before}]`.
    pub diff: Json<Value>,
}

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
pub struct ConfigSetInput {
    pub key: String,
    pub value: Json<Value>,
}

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTenantConfigInput {
    pub tenant_id: ID,
    /// Leave out for the tenant's default project.
    pub project_id: Option<String>,
    /// Set at environment scope (`dev`, `stage`, `prod`, …).
    pub environment: Option<String>,
    #[graphql(default)]
    pub set: Vec<ConfigSetInput>,
    #[graphql(default)]
    pub unset: Vec<String>,
    /// The version the change was made against (0 for a tenant's first change).
    pub expected_version: i64,
    pub idempotency_key: String,
}

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackTenantConfigInput {
    pub tenant_id: ID,
    /// The version whose values are restored (0: no values at all).
    pub to_version: i64,
    pub expected_version: i64,
    pub idempotency_key: String,
}

/// Where one of a tenant's secrets lives; never the secret itself.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub name: String,
    #[graphql(name = "ref")]
    #[serde(rename = "ref")]
    pub reference: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetSecretRefInput {
    pub tenant_id: ID,
    /// Lowercase letters, digits, '.', '_' or '-'.
    pub name: String,
    /// `vault://…`, `aws-sm://…`, `gcp-sm://…`, `azure-kv://…` or `k8s-secret://…`.
    #[graphql(name = "ref")]
    #[serde(rename = "ref")]
    pub reference: String,
    /// The reference's current version when changing it (absent or 0 to create).
    pub expected_version: Option<i64>,
}
