use sea_orm::entity::prelude::*;

/// A rollout: its plan, progress, cell acknowledgements and history (`doc`,
/// JSON). `version` counts every change; `plan_version` only the changes
/// the cells must hear of (state, stage), and is the version they apply.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "rollouts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub flag_key: String,
    pub environment: String,
    pub state: String,
    #[sea_orm(column_type = "Text")]
    pub doc: String,
    pub version: i64,
    pub plan_version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
