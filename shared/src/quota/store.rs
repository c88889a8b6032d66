//! The metric catalog table, the same on both tiers: the global tier writes
//! it through mutations, cells through the sync stream.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, Set, TransactionTrait};

use super::MetricDef;
use crate::{Error, Result};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "metrics")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// The definition, JSON.
        #[sea_orm(column_type = "Text")]
        pub def: String,
        pub version: i64,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A stored definition with its version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stored {
    pub def: MetricDef,
    pub version: i64,
}

fn decode(m: entity::Model) -> Result<Stored> {
    Ok(Stored {
        def: serde_json::from_str(&m.def).map_err(Error::internal)?,
        version: m.version,
    })
}

pub async fn get<C: ConnectionTrait>(db: &C, name: &str) -> Result<Option<Stored>> {
    entity::Entity::find_by_id(name.to_owned())
        .one(db)
        .await?
        .map(decode)
        .transpose()
}

pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Stored>> {
    entity::Entity::find()
        .order_by_asc(entity::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// Writes `def` at `version`, replacing what is there.
pub async fn put<C: ConnectionTrait>(db: &C, def: &MetricDef, version: i64) -> Result<()> {
    entity::Entity::insert(entity::ActiveModel {
        name: Set(def.name.clone()),
        def: Set(serde_json::to_string(def).map_err(Error::internal)?),
        version: Set(version),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(entity::Column::Name)
            .update_columns([
                entity::Column::Def,
                entity::Column::Version,
                entity::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

/// Applies definitions received from the global tier, in one transaction,
/// each only if it is newer than what this database holds. Returns how
/// many changed anything.
/// [`apply`] of the global tier's whole catalog (a resync), which also
/// rewrites a metric whose row no longer matches the definition at the
/// version this database applied (changed or deleted behind the consumer's
/// back). Returns `(changed, repaired)`.
pub async fn repair(
    db: &sea_orm::DatabaseConnection,
    defs: &[(MetricDef, i64)],
) -> Result<(usize, usize)> {
    let txn = db.begin().await?;
    let (mut changed, mut repaired) = (0, 0);
    for (def, version) in defs {
        let id = super::entity(&def.name);
        if crate::sync::applied::advance(&txn, &id, *version).await? {
            put(&txn, def, *version).await?;
            changed += 1;
        } else if crate::sync::applied::current(&txn, &id).await? == Some(*version)
            && get(&txn, &def.name)
                .await?
                .is_none_or(|s| s.version != *version || &s.def != def)
        {
            put(&txn, def, *version).await?;
            repaired += 1;
        }
    }
    txn.commit().await?;
    Ok((changed, repaired))
}

pub async fn apply(db: &sea_orm::DatabaseConnection, defs: &[(MetricDef, i64)]) -> Result<usize> {
    let txn = db.begin().await?;
    crate::sync::applied::relaxed_commit(&txn).await?;
    let mut changed = 0;
    for (def, version) in defs {
        if crate::sync::applied::advance(&txn, &super::entity(&def.name), *version).await? {
            put(&txn, def, *version).await?;
            changed += 1;
        }
    }
    txn.commit().await?;
    Ok(changed)
}

pub mod migration {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    #[derive(DeriveIden)]
    enum Metrics {
        Table,
        Name,
        Def,
        Version,
        UpdatedAt,
    }

    pub struct CreateMetrics;

    impl MigrationName for CreateMetrics {
        fn name(&self) -> &str {
            "m0501_create_metrics"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateMetrics {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(Metrics::Table)
                        .if_not_exists()
                        .col(string(Metrics::Name).primary_key())
                        .col(text(Metrics::Def))
                        .col(big_integer(Metrics::Version))
                        .col(timestamp_with_time_zone(Metrics::UpdatedAt))
                        .to_owned(),
                )
                .await
        }
    }
}
