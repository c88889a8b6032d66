use sea_orm::entity::prelude::*;

/// A mutation's idempotency key, the hash of the input it came with and
/// the resource it made, so a retry gets the same answer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub operation: String,
    pub actor: String,
    pub request_hash: String,
    pub resource_id: String,
    /// PENDING or DONE.
    pub status: String,
    pub created_at: DateTimeUtc,
    /// The first answer (JSON), for mutations that replay it.
    #[sea_orm(column_type = "Text", nullable)]
    pub answer: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
