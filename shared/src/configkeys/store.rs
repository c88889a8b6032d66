//! The registry table, the same on both tiers: the global tier writes it
//! through mutations, cells through the sync stream.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, Set};

use super::KeyDef;
use crate::{Error, Result};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "config_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
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
    pub def: KeyDef,
    pub version: i64,
}

fn decode(m: entity::Model) -> Result<Stored> {
    Ok(Stored {
        def: serde_json::from_str(&m.def).map_err(Error::internal)?,
        version: m.version,
    })
}

pub async fn get<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<Stored>> {
    entity::Entity::find_by_id(key.to_owned())
        .one(db)
        .await?
        .map(decode)
        .transpose()
}

pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Stored>> {
    entity::Entity::find()
        .order_by_asc(entity::Column::Key)
        .all(db)
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// Writes `def` at `version`, replacing what is there.
pub async fn put<C: ConnectionTrait>(db: &C, def: &KeyDef, version: i64) -> Result<()> {
    entity::Entity::insert(entity::ActiveModel {
        key: Set(def.key.clone()),
        def: Set(serde_json::to_string(def).map_err(Error::internal)?),
        version: Set(version),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(entity::Column::Key)
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

pub mod migration {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    #[derive(DeriveIden)]
    enum ConfigKeys {
        Table,
        Key,
        Def,
        Version,
        UpdatedAt,
    }

    pub struct CreateConfigKeys;

    impl MigrationName for CreateConfigKeys {
        fn name(&self) -> &str {
            "m0102_create_config_keys"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateConfigKeys {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(ConfigKeys::Table)
                        .if_not_exists()
                        .col(string(ConfigKeys::Key).primary_key())
                        .col(text(ConfigKeys::Def))
                        .col(big_integer(ConfigKeys::Version))
                        .col(timestamp_with_time_zone(ConfigKeys::UpdatedAt))
                        .to_owned(),
                )
                .await
        }
    }
}
