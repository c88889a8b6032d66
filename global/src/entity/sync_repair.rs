use sea_orm::entity::prelude::*;

/// The last anti-entropy check of one kind of entity in one cell.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_repairs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub cell_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    pub checked_at: DateTimeUtc,
    /// When a check last found divergent entities and republished them.
    pub repaired_at: Option<DateTimeUtc>,
    /// Entities that differed at the last check (settled changes only).
    pub divergent: i64,
    /// Up to 20 of them, JSON.
    #[sea_orm(column_type = "Text")]
    pub sample: String,
    /// Why the last check could not compare (cell unreachable), if so.
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
