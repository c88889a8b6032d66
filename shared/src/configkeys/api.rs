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
    /// The key's registry default: set at no scope.
    Default,
    /// Set for the whole tenant.
    Tenant,
    /// Set for the project, overriding the tenant's value.
    Project,
    /// Set for the project's environment, overriding project and tenant.
    Environment,
}

/// One key's effective value for a tenant, project and environment.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct ConfigValue {
    /// The registry key, e.g. `limits.max_users`.
    pub key: String,
    /// The value, of the key's type.
    pub value: Json<Value>,
    /// The most specific scope that sets it.
    pub source: Source,
}

/// The tenant's configuration version after a write.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// The tenant's configuration version (0 before the first write).
    pub version: i64,
}

/// One change of a tenant's configuration, as kept in its history.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChange {
    /// The configuration version the change created.
    pub version: i64,
    /// Who made it: the caller, or the end user the global tier acted for.
    pub actor: String,
    /// When it was committed.
    pub at: DateTime<Utc>,
    /// `[{scope, key, before, after}]`, or `[{rollbackTo, before}]`.
    pub diff: Json<Value>,
}

/// A value to set.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
pub struct ConfigSetInput {
    /// A registered key that may be set at the change's scope.
    pub key: String,
    /// A value valid for the key's type and bounds.
    pub value: Json<Value>,
}

/// Sets and unsets values at one scope of a tenant's configuration, all or
/// nothing. The scope is ENVIRONMENT when `environment` is given, else
/// PROJECT when `projectId` is, else TENANT.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTenantConfigInput {
    /// The tenant whose configuration changes.
    pub tenant_id: ID,
    /// Set at project scope in this project; with `environment`, leave out
    /// for the tenant's default project.
    pub project_id: Option<String>,
    /// Set at environment scope (`dev`, `stage`, `prod`, …).
    pub environment: Option<String>,
    /// Values to set; each key must allow the scope.
    #[graphql(default)]
    pub set: Vec<ConfigSetInput>,
    /// Keys whose value at this scope is removed, so a wider scope (or the
    /// default) applies again. `set` and `unset` must not both be empty.
    #[graphql(default)]
    pub unset: Vec<String>,
    /// The version the change was made against (0 for a tenant's first change).
    pub expected_version: i64,
    /// 1 to 128 printable ASCII characters: a retry with the same key and
    /// input returns the first result; other input is a CONFLICT.
    pub idempotency_key: String,
}

/// Restores the values of an earlier configuration version, as a new version.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackTenantConfigInput {
    /// The tenant whose configuration is rolled back.
    pub tenant_id: ID,
    /// The version whose values are restored (0: no values at all).
    pub to_version: i64,
    /// The tenant's current configuration version; a stale one is a CONFLICT.
    pub expected_version: i64,
    /// 1 to 128 printable ASCII characters: a retry with the same key and
    /// input returns the first result; other input is a CONFLICT.
    pub idempotency_key: String,
}

/// Where one of a tenant's secrets lives; never the secret itself.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The secret's name within the tenant.
    pub name: String,
    /// Where the secret lives, e.g. `vault://…` or `aws-sm://…`.
    #[graphql(name = "ref")]
    #[serde(rename = "ref")]
    pub reference: String,
    /// 1 when created; increases with every change of the reference.
    pub version: i64,
    /// When the reference was last changed.
    pub updated_at: DateTime<Utc>,
}

/// Creates or changes one of a tenant's secret references.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetSecretRefInput {
    /// The tenant the secret belongs to.
    pub tenant_id: ID,
    /// 1 to 128 lowercase letters, digits, '.', '_' or '-', starting with a letter.
    pub name: String,
    /// `vault://…`, `aws-sm://…`, `gcp-sm://…`, `azure-kv://…` or `k8s-secret://…`.
    #[graphql(name = "ref")]
    #[serde(rename = "ref")]
    pub reference: String,
    /// The reference's current version when changing it (absent or 0 to create).
    pub expected_version: Option<i64>,
}
