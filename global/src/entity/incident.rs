use sea_orm::entity::prelude::*;

/// An incident: what is wrong, how bad, where, and how far along.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "incidents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub title: String,
    /// SEV1 … SEV4.
    pub severity: String,
    /// INVESTIGATING, IDENTIFIED, MONITORING or RESOLVED.
    pub status: String,
    /// `service::incidents::Scope`, JSON.
    #[sea_orm(column_type = "Text")]
    pub scope: String,
    pub version: i64,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
