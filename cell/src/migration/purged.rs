//! The ids of tenants this cell purged, so a late `createTenant` (a request
//! of a saga that already gave up and compensated) cannot bring one back.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum PurgedTenants {
    Table,
    Id,
    PurgedAt,
}

pub struct CreatePurgedTenants;

impl MigrationName for CreatePurgedTenants {
    fn name(&self) -> &str {
        "m0007_purged_tenants"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePurgedTenants {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PurgedTenants::Table)
                    .if_not_exists()
                    .col(uuid(PurgedTenants::Id).primary_key())
                    .col(timestamp_with_time_zone(PurgedTenants::PurgedAt))
                    .to_owned(),
            )
            .await
    }
}
