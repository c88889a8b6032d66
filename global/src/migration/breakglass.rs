//! Break-glass requests.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum BreakGlassRequests {
    Table,
    Id,
    TenantId,
    Requester,
    Reason,
    Scope,
    DurationSecs,
    Status,
    RequestExpiresAt,
    DecidedBy,
    DecidedAt,
    DenialReason,
    ExpiresAt,
    ActivatedAt,
    RevokedBy,
    RevokedAt,
    Version,
    CreatedAt,
    UpdatedAt,
}

pub struct CreateBreakGlass;

impl MigrationName for CreateBreakGlass {
    fn name(&self) -> &str {
        "m0400_create_break_glass"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateBreakGlass {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use BreakGlassRequests as B;
        manager
            .create_table(
                Table::create()
                    .table(B::Table)
                    .if_not_exists()
                    .col(uuid(B::Id).primary_key())
                    .col(uuid(B::TenantId))
                    .col(string(B::Requester))
                    .col(text(B::Reason))
                    .col(string(B::Scope))
                    .col(big_integer(B::DurationSecs))
                    .col(string(B::Status))
                    .col(timestamp_with_time_zone(B::RequestExpiresAt))
                    .col(string_null(B::DecidedBy))
                    .col(timestamp_with_time_zone_null(B::DecidedAt))
                    .col(text_null(B::DenialReason))
                    .col(timestamp_with_time_zone_null(B::ExpiresAt))
                    .col(timestamp_with_time_zone_null(B::ActivatedAt))
                    .col(string_null(B::RevokedBy))
                    .col(timestamp_with_time_zone_null(B::RevokedAt))
                    .col(big_integer(B::Version))
                    .col(timestamp_with_time_zone(B::CreatedAt))
                    .col(timestamp_with_time_zone(B::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_break_glass_status")
                    .table(B::Table)
                    .col(B::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
