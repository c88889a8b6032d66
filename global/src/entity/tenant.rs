use sea_orm::entity::prelude::*;

/// A tenant's directory row: where it lives. Its record lives in that cell.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub slug: String,
    pub region: String,
    pub cell_id: String,
    pub status: String,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// When a DEPROVISIONING tenant's grace period ends and its cell purges it.
    pub purge_at: Option<DateTimeUtc>,
    /// The plan as the home cell last reported it (at `plan_version`).
    pub plan: String,
    pub plan_version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
