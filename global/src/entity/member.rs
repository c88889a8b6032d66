use sea_orm::entity::prelude::*;

/// A subject (the JWT `sub`) with a role in one tenant.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub subject: String,
    /// `shared::names::subject_key(subject)`: what the member is looked up
    /// by, unique per tenant, so subjects compare case-insensitively.
    #[serde(skip)]
    pub subject_key: String,
    /// owner, admin, member or viewer.
    pub role: String,
    /// Increases with every change to the membership.
    pub version: i64,
    /// The key of the addMember that made it (none for the first owner).
    pub idempotency_key: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
