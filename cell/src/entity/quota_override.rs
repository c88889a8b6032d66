use sea_orm::entity::prelude::*;

/// One tenant's override of its plan's limit on one metric. `rule` is null
/// once cleared; the version keeps counting either way.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "quota_overrides")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub metric: String,
    /// The rule, JSON.
    #[sea_orm(column_type = "Text", nullable)]
    pub rule: Option<String>,
    pub version: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
