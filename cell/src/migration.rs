//! The cell database schema.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

mod plan_changes;
mod purged;
mod quota;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateTenants),
            Box::new(shared::audit::migration::CreateAuditLog),
            Box::new(shared::sync::migration::CreateSyncTables),
            Box::new(shared::configkeys::store::MIGRATION),
            Box::new(CreateTenantConfig),
            Box::new(CreateSecretRefs),
            Box::new(shared::flags::store::MIGRATION),
            Box::new(shared::quota::store::MIGRATION),
            Box::new(quota::CreateQuotaTables),
            Box::new(CreateProjects),
            Box::new(AddPurgeAt),
            Box::new(CreatePlans),
            Box::new(shared::sync::migration::PendingOutboxIndex),
            Box::new(quota::CreateLimiterTables),
            Box::new(purged::CreatePurgedTenants),
            Box::new(shared::audit::migration::ChainAuditLog),
            Box::new(plan_changes::CreatePlanChanges),
            Box::new(shared::audit::migration::SealAuditValues),
            // The change log of tenant config: the impact index follows it.
            Box::new(shared::changelog::Migration {
                name: "m0009_tenant_config_log",
                table: "tenant_config",
                key: "tenant_id",
            }),
        ]
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Slug,
    Name,
    Region,
    Plan,
    Status,
    Version,
    CreatedAt,
    UpdatedAt,
    PurgeAt,
    PlanVersion,
}

struct CreateTenants;

impl MigrationName for CreateTenants {
    fn name(&self) -> &str {
        "m0001_create_tenants"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTenants {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .if_not_exists()
                    .col(uuid(Tenants::Id).primary_key())
                    .col(string_uniq(Tenants::Slug))
                    .col(string(Tenants::Name))
                    .col(string(Tenants::Region))
                    .col(string(Tenants::Plan))
                    .col(string(Tenants::Status))
                    .col(big_integer(Tenants::Version))
                    .col(timestamp_with_time_zone(Tenants::CreatedAt))
                    .col(timestamp_with_time_zone(Tenants::UpdatedAt))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum TenantConfig {
    Table,
    TenantId,
    Version,
    Doc,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TenantConfigHistory {
    Table,
    TenantId,
    Version,
    Actor,
    At,
    Diff,
    Doc,
    IdempotencyKey,
    RequestHash,
}

struct CreateTenantConfig;

impl MigrationName for CreateTenantConfig {
    fn name(&self) -> &str {
        "m0002_create_tenant_config"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTenantConfig {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantConfig::Table)
                    .if_not_exists()
                    .col(uuid(TenantConfig::TenantId).primary_key())
                    .col(big_integer(TenantConfig::Version))
                    .col(text(TenantConfig::Doc))
                    .col(timestamp_with_time_zone(TenantConfig::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TenantConfigHistory::Table)
                    .if_not_exists()
                    .col(uuid(TenantConfigHistory::TenantId))
                    .col(big_integer(TenantConfigHistory::Version))
                    .col(string(TenantConfigHistory::Actor))
                    .col(timestamp_with_time_zone(TenantConfigHistory::At))
                    .col(text(TenantConfigHistory::Diff))
                    .col(text(TenantConfigHistory::Doc))
                    .col(string(TenantConfigHistory::IdempotencyKey))
                    .col(string(TenantConfigHistory::RequestHash))
                    .primary_key(
                        Index::create()
                            .col(TenantConfigHistory::TenantId)
                            .col(TenantConfigHistory::Version),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_config_history_key")
                    .table(TenantConfigHistory::Table)
                    .col(TenantConfigHistory::TenantId)
                    .col(TenantConfigHistory::IdempotencyKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SecretRefs {
    Table,
    TenantId,
    Name,
    Reference,
    Version,
    UpdatedAt,
}

struct CreateSecretRefs;

impl MigrationName for CreateSecretRefs {
    fn name(&self) -> &str {
        "m0003_create_secret_refs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSecretRefs {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SecretRefs::Table)
                    .if_not_exists()
                    .col(uuid(SecretRefs::TenantId))
                    .col(string(SecretRefs::Name))
                    .col(string(SecretRefs::Reference))
                    .col(big_integer(SecretRefs::Version))
                    .col(timestamp_with_time_zone(SecretRefs::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(SecretRefs::TenantId)
                            .col(SecretRefs::Name),
                    )
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    TenantId,
    Name,
    Version,
    IdempotencyKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Environments {
    Table,
    TenantId,
    Project,
    Name,
    IdempotencyKey,
    CreatedAt,
}

struct CreateProjects;

impl MigrationName for CreateProjects {
    fn name(&self) -> &str {
        "m0004_create_projects"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateProjects {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .if_not_exists()
                    .col(uuid(Projects::TenantId))
                    .col(string(Projects::Name))
                    .col(big_integer(Projects::Version))
                    .col(string_null(Projects::IdempotencyKey))
                    .col(timestamp_with_time_zone(Projects::CreatedAt))
                    .col(timestamp_with_time_zone(Projects::UpdatedAt))
                    .primary_key(Index::create().col(Projects::TenantId).col(Projects::Name))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Environments::Table)
                    .if_not_exists()
                    .col(uuid(Environments::TenantId))
                    .col(string(Environments::Project))
                    .col(string(Environments::Name))
                    .col(string_null(Environments::IdempotencyKey))
                    .col(timestamp_with_time_zone(Environments::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(Environments::TenantId)
                            .col(Environments::Project)
                            .col(Environments::Name),
                    )
                    .to_owned(),
            )
            .await
    }
}

struct AddPurgeAt;

impl MigrationName for AddPurgeAt {
    fn name(&self) -> &str {
        "m0005_tenants_purge_at"
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

#[derive(DeriveIden)]
enum EntitlementOverrides {
    Table,
    TenantId,
    Name,
    Enabled,
    UpdatedAt,
}

struct CreatePlans;

impl MigrationName for CreatePlans {
    fn name(&self) -> &str {
        "m0006_plan_version_and_entitlement_overrides"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePlans {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(big_integer(Tenants::PlanVersion).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EntitlementOverrides::Table)
                    .if_not_exists()
                    .col(uuid(EntitlementOverrides::TenantId))
                    .col(string(EntitlementOverrides::Name))
                    .col(boolean(EntitlementOverrides::Enabled))
                    .col(timestamp_with_time_zone(EntitlementOverrides::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(EntitlementOverrides::TenantId)
                            .col(EntitlementOverrides::Name),
                    )
                    .to_owned(),
            )
            .await
    }
}
