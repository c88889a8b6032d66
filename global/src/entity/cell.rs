use sea_orm::entity::prelude::*;

/// A registered cell.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cells")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub region: String,
    pub endpoint: String,
    pub capacity: i64,
    /// UP or DOWN.
    pub status: String,
    pub last_heartbeat_at: DateTimeUtc,
    pub registered_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
