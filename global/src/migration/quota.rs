//! Tables of quotas and metering at the global tier: usage rollups from cells.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum UsageRollups {
    Table,
    TenantId,
    Metric,
    HourStart,
    CellId,
    Amount,
    Version,
}

pub struct CreateUsageRollups;

impl MigrationName for CreateUsageRollups {
    fn name(&self) -> &str {
        "m0502_create_usage_rollups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsageRollups {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageRollups::Table)
                    .if_not_exists()
                    .col(uuid(UsageRollups::TenantId))
                    .col(string(UsageRollups::Metric))
                    .col(timestamp_with_time_zone(UsageRollups::HourStart))
                    .col(string(UsageRollups::CellId))
                    .col(big_integer(UsageRollups::Amount))
                    .col(big_integer(UsageRollups::Version))
                    .primary_key(
                        Index::create()
                            .col(UsageRollups::TenantId)
                            .col(UsageRollups::Metric)
                            .col(UsageRollups::HourStart),
                    )
                    .to_owned(),
            )
            .await
    }
}
