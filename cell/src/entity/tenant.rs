use sea_orm::entity::prelude::*;

/// A tenant's own record: the cell is its authority.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub slug: String,
    pub name: String,
    pub region: String,
    pub plan: String,
    pub status: String,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// While DEPROVISIONING: when the grace period ends and the tenant is purged.
    pub purge_at: Option<DateTimeUtc>,
    /// Increases with every plan change or entitlement override.
    pub plan_version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
