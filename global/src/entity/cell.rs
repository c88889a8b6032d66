use sea_orm::entity::prelude::*;

/// A registered cell.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
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
    /// Relative share of new tenants (load is divided by it); at least 1.
    pub weight: i64,
    /// `{"pool": "dedicated", …}`, JSON.
    #[sea_orm(column_type = "Text")]
    pub labels: String,
    /// ACCEPTING or DRAINING (no new tenants), set by an operator.
    pub state: String,
    /// Increases with every operator change (`setCellState`).
    pub version: i64,
}

impl Model {
    pub fn label(&self, key: &str) -> Option<String> {
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(&self.labels)
            .ok()?
            .remove(key)
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
