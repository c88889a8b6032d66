use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// UUIDv7: entries sort by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub at: DateTimeUtc,
    pub actor: String,
    /// The actor's roles, comma-separated.
    pub roles: String,
    pub action: String,
    pub tenant_id: Option<Uuid>,
    pub target: Option<String>,
    /// OK or REFUSED.
    pub outcome: String,
    pub request_id: Option<String>,
    /// JSON: the input, and the error for a refusal.
    #[sea_orm(column_type = "Text")]
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
