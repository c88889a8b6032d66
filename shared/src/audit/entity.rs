//! The `audit_log` table as a sea-orm entity: one row per entry, in either tier.

use sea_orm::entity::prelude::*;

/// One row of `audit_log`: an entry of this tier's hash chain, or one shipped from a cell.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// UUIDv7: entries sort by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// When the change was made (or refused).
    pub at: DateTimeUtc,
    /// Who acted: the token's subject.
    pub actor: String,
    /// The actor's roles, comma-separated.
    pub roles: String,
    /// The operation, named after its mutation, such as `setQuota`.
    pub action: String,
    /// The tenant the change concerns; none for platform-wide changes.
    pub tenant_id: Option<Uuid>,
    /// What was changed, such as a tenant id or a flag key; erased with the tenant's purge.
    pub target: Option<String>,
    /// OK or REFUSED.
    pub outcome: String,
    /// The id of the request that made the change, to match logs.
    pub request_id: Option<String>,
    /// JSON: the input, and the error for a refusal.
    #[sea_orm(column_type = "Text")]
    pub detail: String,
    /// Which chain the entry belongs to: "" for this tier's own, a cell id
    /// for entries a cell shipped to the global tier.
    pub source: String,
    /// Position in its chain, from 1, without gaps.
    pub seq: i64,
    /// The hash of the entry before it (64 zeros for the first).
    pub prev_hash: String,
    /// sha256 over the entry's canonical content and `prev_hash`.
    pub hash: String,
    /// The break-glass request the actor acted under, if any.
    pub break_glass_id: Option<Uuid>,
    /// JSON `{"before": …, "after": …}`: the changed entity before and after
    /// (null for a refusal or a call that changed nothing here).
    #[sea_orm(column_type = "Text", nullable)]
    pub diff: Option<String>,
    /// JSON array: the paths of the fields the change touched (names, no
    /// values), e.g. `doc.tenant.limits.max_users`; null without a diff.
    #[sea_orm(column_type = "Text", nullable)]
    #[serde(default)]
    pub fields: Option<String>,
    /// sha256 over `salt`, `target`, `detail` and `diff`: the chain's hash
    /// covers this instead of those values, so a copy without them (an
    /// entry a cell shipped) or an entry whose values were erased with its
    /// tenant's purge still chains. Null for entries written before (their
    /// hash covers the values themselves).
    #[serde(default)]
    pub values_hash: Option<String>,
    /// The random salt of `values_hash`, kept only where the values are
    /// (the writing tier, until the tenant is purged): without it the hash
    /// cannot be tested against guessed values.
    #[serde(default)]
    pub salt: Option<String>,
}

/// The audit log relates to no other table.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
