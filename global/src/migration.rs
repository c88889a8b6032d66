//! The global database schema.

mod sync;

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

mod quota;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(Initial),
            Box::new(shared::audit::migration::CreateAuditLog),
            Box::new(shared::sync::migration::CreateSyncTables),
            Box::new(shared::configkeys::store::migration::CreateConfigKeys),
            Box::new(shared::flags::store::migration::CreateFlagTables),
            Box::new(CreateRollouts),
            Box::new(sync::CreateSyncRepairs),
            Box::new(shared::quota::store::migration::CreateMetrics),
            Box::new(quota::CreateUsageRollups),
        ]
    }
}

#[derive(DeriveIden)]
enum Cells {
    Table,
    Id,
    Region,
    Endpoint,
    Capacity,
    Status,
    LastHeartbeatAt,
    RegisteredAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Slug,
    Region,
    CellId,
    Status,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Key,
    Operation,
    Actor,
    RequestHash,
    ResourceId,
    Status,
    CreatedAt,
}

struct Initial;

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m0001_directory"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Cells::Table)
                    .if_not_exists()
                    .col(string(Cells::Id).primary_key())
                    .col(string(Cells::Region))
                    .col(string(Cells::Endpoint))
                    .col(big_integer(Cells::Capacity))
                    .col(string(Cells::Status))
                    .col(timestamp_with_time_zone(Cells::LastHeartbeatAt))
                    .col(timestamp_with_time_zone(Cells::RegisteredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .if_not_exists()
                    .col(uuid(Tenants::Id).primary_key())
                    .col(string_uniq(Tenants::Slug))
                    .col(string(Tenants::Region))
                    .col(string(Tenants::CellId))
                    .col(string(Tenants::Status))
                    .col(big_integer(Tenants::Version))
                    .col(timestamp_with_time_zone(Tenants::CreatedAt))
                    .col(timestamp_with_time_zone(Tenants::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_tenants_region", Tenants::Region),
            ("idx_tenants_cell", Tenants::CellId),
            ("idx_tenants_status", Tenants::Status),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Tenants::Table)
                        .col(col)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(string(IdempotencyKeys::Key).primary_key())
                    .col(string(IdempotencyKeys::Operation))
                    .col(string(IdempotencyKeys::Actor))
                    .col(string(IdempotencyKeys::RequestHash))
                    .col(string(IdempotencyKeys::ResourceId))
                    .col(string(IdempotencyKeys::Status))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Rollouts {
    Table,
    Id,
    FlagKey,
    Environment,
    State,
    Doc,
    Version,
    PlanVersion,
    CreatedAt,
    UpdatedAt,
}

struct CreateRollouts;

impl MigrationName for CreateRollouts {
    fn name(&self) -> &str {
        "m0602_create_rollouts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateRollouts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Rollouts::Table)
                    .if_not_exists()
                    .col(uuid(Rollouts::Id).primary_key())
                    .col(string(Rollouts::FlagKey))
                    .col(string(Rollouts::Environment))
                    .col(string(Rollouts::State))
                    .col(text(Rollouts::Doc))
                    .col(big_integer(Rollouts::Version))
                    .col(big_integer(Rollouts::PlanVersion))
                    .col(timestamp_with_time_zone(Rollouts::CreatedAt))
                    .col(timestamp_with_time_zone(Rollouts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rollouts_flag_env")
                    .table(Rollouts::Table)
                    .col(Rollouts::FlagKey)
                    .col(Rollouts::Environment)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
