//! The idempotency keys of plan changes and entitlement overrides.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum PlanChanges {
    Table,
    TenantId,
    IdempotencyKey,
    RequestHash,
    Version,
    CreatedAt,
}

pub struct CreatePlanChanges;

impl MigrationName for CreatePlanChanges {
    fn name(&self) -> &str {
        "m0008_plan_changes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePlanChanges {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PlanChanges::Table)
                    .if_not_exists()
                    .col(uuid(PlanChanges::TenantId))
                    .col(string(PlanChanges::IdempotencyKey))
                    .col(string(PlanChanges::RequestHash))
                    .col(big_integer(PlanChanges::Version))
                    .col(timestamp_with_time_zone(PlanChanges::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(PlanChanges::TenantId)
                            .col(PlanChanges::IdempotencyKey),
                    )
                    .to_owned(),
            )
            .await
    }
}
