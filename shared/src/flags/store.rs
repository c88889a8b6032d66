//! The flag table, the same on both tiers (the global tier writes it through
//! mutations, cells through the stream), and the cells' table of rollout
//! plans. A cell compiles its evaluation snapshot from these.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, Set};

use super::{FlagDef, RolloutPlan, StoredFlag};
use crate::{Error, Result};

pub mod flag {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flags")]
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

pub mod plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "rollout_plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The plan, JSON.
        #[sea_orm(column_type = "Text")]
        pub plan: String,
        pub version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A stored flag with when it last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub flag: StoredFlag,
    pub updated_at: DateTime<Utc>,
}

fn decode(m: flag::Model) -> Result<Row> {
    Ok(Row {
        flag: StoredFlag {
            def: serde_json::from_str(&m.def).map_err(Error::internal)?,
            version: m.version,
        },
        updated_at: m.updated_at,
    })
}

pub async fn get<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<Row>> {
    flag::Entity::find_by_id(key.to_owned())
        .one(db)
        .await?
        .map(decode)
        .transpose()
}

pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Row>> {
    flag::Entity::find()
        .order_by_asc(flag::Column::Key)
        .all(db)
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// Writes `def` at `version`, replacing what is there.
pub async fn put<C: ConnectionTrait>(db: &C, def: &FlagDef, version: i64) -> Result<()> {
    flag::Entity::insert(flag::ActiveModel {
        key: Set(def.key.clone()),
        def: Set(serde_json::to_string(def).map_err(Error::internal)?),
        version: Set(version),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(flag::Column::Key)
            .update_columns([
                flag::Column::Def,
                flag::Column::Version,
                flag::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

pub async fn plans<C: ConnectionTrait>(db: &C) -> Result<Vec<(RolloutPlan, i64)>> {
    plan::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            Ok((
                serde_json::from_str(&m.plan).map_err(Error::internal)?,
                m.version,
            ))
        })
        .collect()
}

pub async fn put_plan<C: ConnectionTrait>(db: &C, p: &RolloutPlan, version: i64) -> Result<()> {
    plan::Entity::insert(plan::ActiveModel {
        id: Set(p.id),
        plan: Set(serde_json::to_string(p).map_err(Error::internal)?),
        version: Set(version),
    })
    .on_conflict(
        OnConflict::column(plan::Column::Id)
            .update_columns([plan::Column::Plan, plan::Column::Version])
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
    enum Flags {
        Table,
        Key,
        Def,
        Version,
        UpdatedAt,
    }

    #[derive(DeriveIden)]
    enum RolloutPlans {
        Table,
        Id,
        Plan,
        Version,
    }

    pub struct CreateFlagTables;

    impl MigrationName for CreateFlagTables {
        fn name(&self) -> &str {
            "m0601_create_flag_tables"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateFlagTables {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(Flags::Table)
                        .if_not_exists()
                        .col(string(Flags::Key).primary_key())
                        .col(text(Flags::Def))
                        .col(big_integer(Flags::Version))
                        .col(timestamp_with_time_zone(Flags::UpdatedAt))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table(RolloutPlans::Table)
                        .if_not_exists()
                        .col(uuid(RolloutPlans::Id).primary_key())
                        .col(text(RolloutPlans::Plan))
                        .col(big_integer(RolloutPlans::Version))
                        .to_owned(),
                )
                .await
        }
    }
}
