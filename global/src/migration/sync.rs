//! The anti-entropy bookkeeping table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum SyncRepairs {
    Table,
    CellId,
    Kind,
    CheckedAt,
    RepairedAt,
    Divergent,
    Sample,
    Error,
}

pub struct CreateSyncRepairs;

impl MigrationName for CreateSyncRepairs {
    fn name(&self) -> &str {
        "m0200_create_sync_repairs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSyncRepairs {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SyncRepairs::Table)
                    .if_not_exists()
                    .col(string(SyncRepairs::CellId))
                    .col(string(SyncRepairs::Kind))
                    .col(timestamp_with_time_zone(SyncRepairs::CheckedAt))
                    .col(timestamp_with_time_zone_null(SyncRepairs::RepairedAt))
                    .col(big_integer(SyncRepairs::Divergent))
                    .col(text(SyncRepairs::Sample))
                    .col(text_null(SyncRepairs::Error))
                    .primary_key(
                        Index::create()
                            .col(SyncRepairs::CellId)
                            .col(SyncRepairs::Kind),
                    )
                    .to_owned(),
            )
            .await
    }
}
