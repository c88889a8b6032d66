use sea_orm::entity::prelude::*;

/// Every version of a tenant's configuration: who, when, what changed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_config_history")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i64,
    pub actor: String,
    pub at: DateTimeUtc,
    /// JSON list of {scope, key, before, after}.
    #[sea_orm(column_type = "Text")]
    pub diff: String,
    /// The whole document at this version, for rollback.
    #[sea_orm(column_type = "Text")]
    pub doc: String,
    pub idempotency_key: String,
    pub request_hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
