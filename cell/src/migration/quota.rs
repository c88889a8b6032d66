//! The cell's quota and metering tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum QuotaOverrides {
    Table,
    TenantId,
    Metric,
    Rule,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum QuotaChanges {
    Table,
    TenantId,
    IdempotencyKey,
    Metric,
    Version,
    RequestHash,
    Actor,
    At,
}

#[derive(DeriveIden)]
enum UsageDedup {
    Table,
    TenantId,
    IdempotencyKey,
    Metric,
    Amount,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum UsageTotals {
    Table,
    TenantId,
    Metric,
    Hour,
    Amount,
    Version,
}

pub struct CreateQuotaTables;

impl MigrationName for CreateQuotaTables {
    fn name(&self) -> &str {
        "m0503_create_quota_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateQuotaTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QuotaOverrides::Table)
                    .if_not_exists()
                    .col(string(QuotaOverrides::TenantId))
                    .col(string(QuotaOverrides::Metric))
                    .col(text_null(QuotaOverrides::Rule))
                    .col(big_integer(QuotaOverrides::Version))
                    .col(timestamp_with_time_zone(QuotaOverrides::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(QuotaOverrides::TenantId)
                            .col(QuotaOverrides::Metric),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(QuotaChanges::Table)
                    .if_not_exists()
                    .col(string(QuotaChanges::TenantId))
                    .col(string(QuotaChanges::IdempotencyKey))
                    .col(string(QuotaChanges::Metric))
                    .col(big_integer(QuotaChanges::Version))
                    .col(string(QuotaChanges::RequestHash))
                    .col(string(QuotaChanges::Actor))
                    .col(timestamp_with_time_zone(QuotaChanges::At))
                    .primary_key(
                        Index::create()
                            .col(QuotaChanges::TenantId)
                            .col(QuotaChanges::IdempotencyKey),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageDedup::Table)
                    .if_not_exists()
                    .col(string(UsageDedup::TenantId))
                    .col(string(UsageDedup::IdempotencyKey))
                    .col(string(UsageDedup::Metric))
                    .col(big_integer(UsageDedup::Amount))
                    .col(big_integer(UsageDedup::ReceivedAt))
                    .primary_key(
                        Index::create()
                            .col(UsageDedup::TenantId)
                            .col(UsageDedup::IdempotencyKey),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_dedup_received")
                    .table(UsageDedup::Table)
                    .col(UsageDedup::ReceivedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageTotals::Table)
                    .if_not_exists()
                    .col(string(UsageTotals::TenantId))
                    .col(string(UsageTotals::Metric))
                    .col(big_integer(UsageTotals::Hour))
                    .col(big_integer(UsageTotals::Amount))
                    .col(big_integer(UsageTotals::Version))
                    .primary_key(
                        Index::create()
                            .col(UsageTotals::TenantId)
                            .col(UsageTotals::Metric)
                            .col(UsageTotals::Hour),
                    )
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum QuotaCounters {
    Table,
    TenantId,
    Metric,
    WindowStart,
    Used,
}

#[derive(DeriveIden)]
enum QuotaConsumeKeys {
    Table,
    TenantId,
    KeyHash,
    Answer,
    ExpiresAt,
}

/// What the in-memory limiter keeps across a restart: PERIODIC counters
/// (per window start, µs) and GAUGE levels (window 0), and consume keys
/// with their answer.
pub struct CreateLimiterTables;

impl MigrationName for CreateLimiterTables {
    fn name(&self) -> &str {
        "m0504_create_quota_limiter_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateLimiterTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QuotaCounters::Table)
                    .if_not_exists()
                    .col(string(QuotaCounters::TenantId))
                    .col(string(QuotaCounters::Metric))
                    .col(big_integer(QuotaCounters::WindowStart))
                    .col(big_integer(QuotaCounters::Used))
                    .primary_key(
                        Index::create()
                            .col(QuotaCounters::TenantId)
                            .col(QuotaCounters::Metric)
                            .col(QuotaCounters::WindowStart),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(QuotaConsumeKeys::Table)
                    .if_not_exists()
                    .col(string(QuotaConsumeKeys::TenantId))
                    .col(string(QuotaConsumeKeys::KeyHash))
                    .col(string(QuotaConsumeKeys::Answer))
                    .col(big_integer(QuotaConsumeKeys::ExpiresAt))
                    .primary_key(
                        Index::create()
                            .col(QuotaConsumeKeys::TenantId)
                            .col(QuotaConsumeKeys::KeyHash),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_quota_consume_keys_expires")
                    .table(QuotaConsumeKeys::Table)
                    .col(QuotaConsumeKeys::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
