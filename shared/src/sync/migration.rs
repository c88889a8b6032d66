//! The sync tables, included in each tier's migrations.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum SyncOutbox {
    Table,
    Id,
    Stream,
    Event,
    CreatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum SyncApplied {
    Table,
    Entity,
    Version,
}

/// Creates `sync_outbox` and `sync_applied` (`m0101_create_sync_tables`).
pub struct CreateSyncTables;

impl MigrationName for CreateSyncTables {
    fn name(&self) -> &str {
        "m0101_create_sync_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSyncTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SyncOutbox::Table)
                    .if_not_exists()
                    .col(uuid(SyncOutbox::Id).primary_key())
                    .col(string(SyncOutbox::Stream))
                    .col(text(SyncOutbox::Event))
                    .col(timestamp_with_time_zone(SyncOutbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(SyncOutbox::PublishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sync_outbox_unpublished")
                    .table(SyncOutbox::Table)
                    .col(SyncOutbox::PublishedAt)
                    .col(SyncOutbox::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SyncApplied::Table)
                    .if_not_exists()
                    .col(string(SyncApplied::Entity).primary_key())
                    .col(big_integer(SyncApplied::Version))
                    .to_owned(),
            )
            .await
    }
}

/// Replaces the outbox index on (published_at, id) with a partial index of
/// the rows still to publish: the relay's scan then stays as small as the
/// backlog, however many published rows wait for pruning.
pub struct PendingOutboxIndex;

impl MigrationName for PendingOutboxIndex {
    fn name(&self) -> &str {
        "m0103_sync_outbox_pending_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PendingOutboxIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_sync_outbox_pending ON sync_outbox (id) \
             WHERE published_at IS NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_sync_outbox_unpublished")
            .await?;
        Ok(())
    }
}
