use sea_orm::entity::prelude::*;

/// A maintenance window. Its status follows from the clock (SCHEDULED
/// before `starts_at`, IN_PROGRESS until `ends_at`, then COMPLETED) unless
/// it was cancelled.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "maintenance_windows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `service::maintenance::Scope`, JSON.
    #[sea_orm(column_type = "Text")]
    pub scope: String,
    pub starts_at: DateTimeUtc,
    pub ends_at: DateTimeUtc,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    pub freeze_rollouts: bool,
    pub cancelled_at: Option<DateTimeUtc>,
    pub version: i64,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
