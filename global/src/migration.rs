//! The global database schema.

mod breakglass;
mod members;
mod ops;
mod sync;
mod versions;

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
            Box::new(shared::configkeys::store::MIGRATION),
            Box::new(shared::flags::store::MIGRATION),
            Box::new(CreateRollouts),
            Box::new(sync::CreateSyncRepairs),
            Box::new(shared::quota::store::MIGRATION),
            Box::new(quota::CreateUsageRollups),
            Box::new(CreateProvisioning),
            Box::new(AddPurgeAt),
            Box::new(AddCellPlacement),
            Box::new(CreateMembers),
            Box::new(shared::sync::migration::PendingOutboxIndex),
            Box::new(AddTenantPlan),
            Box::new(ops::CreateOpsRecords),
            Box::new(versions::AddCellVersionAndAnswers),
            Box::new(shared::audit::migration::ChainAuditLog),
            Box::new(breakglass::CreateBreakGlass),
            Box::new(shared::audit::migration::SealAuditValues),
            // The directory's change log: the impact cache follows it.
            Box::new(shared::changelog::Migration {
                name: "m0021_directory_log",
                table: "tenants",
                key: "id",
            }),
            Box::new(members::AddMemberSubjectKey),
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
    Weight,
    Labels,
    State,
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
    PurgeAt,
    Plan,
    PlanVersion,
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

#[derive(DeriveIden)]
enum ProvisioningSagas {
    Table,
    TenantId,
    IdempotencyKey,
    Actor,
    Input,
    Status,
    Reason,
    DeadlineAt,
    LeaseOwner,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProvisioningSteps {
    Table,
    TenantId,
    Name,
    Position,
    Status,
    Attempts,
    LastError,
    UpdatedAt,
}

struct CreateProvisioning;

impl MigrationName for CreateProvisioning {
    fn name(&self) -> &str {
        "m0002_provisioning_sagas"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateProvisioning {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProvisioningSagas::Table)
                    .if_not_exists()
                    .col(uuid(ProvisioningSagas::TenantId).primary_key())
                    .col(string(ProvisioningSagas::IdempotencyKey))
                    .col(string(ProvisioningSagas::Actor))
                    .col(text(ProvisioningSagas::Input))
                    .col(string(ProvisioningSagas::Status))
                    .col(text_null(ProvisioningSagas::Reason))
                    .col(timestamp_with_time_zone(ProvisioningSagas::DeadlineAt))
                    .col(string_null(ProvisioningSagas::LeaseOwner))
                    .col(timestamp_with_time_zone_null(ProvisioningSagas::LeaseUntil))
                    .col(timestamp_with_time_zone(ProvisioningSagas::CreatedAt))
                    .col(timestamp_with_time_zone(ProvisioningSagas::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sagas_status")
                    .table(ProvisioningSagas::Table)
                    .col(ProvisioningSagas::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProvisioningSteps::Table)
                    .if_not_exists()
                    .col(uuid(ProvisioningSteps::TenantId))
                    .col(string(ProvisioningSteps::Name))
                    .col(integer(ProvisioningSteps::Position))
                    .col(string(ProvisioningSteps::Status))
                    .col(integer(ProvisioningSteps::Attempts))
                    .col(text_null(ProvisioningSteps::LastError))
                    .col(timestamp_with_time_zone(ProvisioningSteps::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ProvisioningSteps::TenantId)
                            .col(ProvisioningSteps::Name),
                    )
                    .to_owned(),
            )
            .await
    }
}

struct AddPurgeAt;

impl MigrationName for AddPurgeAt {
    fn name(&self) -> &str {
        "m0003_tenants_purge_at"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddPurgeAt {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(timestamp_with_time_zone_null(Tenants::PurgeAt))
                    .to_owned(),
            )
            .await
    }
}

struct AddCellPlacement;

impl MigrationName for AddCellPlacement {
    fn name(&self) -> &str {
        "m0004_cells_weight_labels_state"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddCellPlacement {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for col in [
            big_integer(Cells::Weight).default(1).to_owned(),
            text(Cells::Labels).default("{}").to_owned(),
            string(Cells::State).default("ACCEPTING").to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Cells::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Members {
    Table,
    TenantId,
    Subject,
    Role,
    Version,
    IdempotencyKey,
    CreatedAt,
    UpdatedAt,
}

struct CreateMembers;

impl MigrationName for CreateMembers {
    fn name(&self) -> &str {
        "m0005_members"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateMembers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Members::Table)
                    .if_not_exists()
                    .col(uuid(Members::TenantId))
                    .col(string(Members::Subject))
                    .col(string(Members::Role))
                    .col(big_integer(Members::Version))
                    .col(string_null(Members::IdempotencyKey))
                    .col(timestamp_with_time_zone(Members::CreatedAt))
                    .col(timestamp_with_time_zone(Members::UpdatedAt))
                    .primary_key(Index::create().col(Members::TenantId).col(Members::Subject))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_members_subject")
                    .table(Members::Table)
                    .col(Members::Subject)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

/// The directory learns each tenant's plan (set at reservation, then from
/// the home cell's `tenant-plan` events), so impact queries and rollout
/// cohorts can select by plan without asking cells.
struct AddTenantPlan;

impl MigrationName for AddTenantPlan {
    fn name(&self) -> &str {
        "m0006_tenants_plan"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddTenantPlan {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            string(Tenants::Plan).default("free").to_owned(),
            big_integer(Tenants::PlanVersion).default(0).to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("tenants_cell_plan")
                    .table(Tenants::Table)
                    .col(Tenants::CellId)
                    .col(Tenants::Plan)
                    .to_owned(),
            )
            .await
    }
}
