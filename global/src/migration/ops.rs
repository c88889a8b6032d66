//! Ops records: incidents with their timelines, and maintenance windows.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum Incidents {
    Table,
    Id,
    Title,
    Severity,
    Status,
    Scope,
    Version,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum IncidentEvents {
    Table,
    Id,
    IncidentId,
    At,
    Actor,
    Status,
    Note,
}

#[derive(DeriveIden)]
enum MaintenanceWindows {
    Table,
    Id,
    Scope,
    StartsAt,
    EndsAt,
    Description,
    FreezeRollouts,
    CancelledAt,
    Version,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

pub struct CreateOpsRecords;

impl MigrationName for CreateOpsRecords {
    fn name(&self) -> &str {
        "m0300_create_ops_records"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOpsRecords {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Incidents::Table)
                    .if_not_exists()
                    .col(uuid(Incidents::Id).primary_key())
                    .col(string(Incidents::Title))
                    .col(string(Incidents::Severity))
                    .col(string(Incidents::Status))
                    .col(text(Incidents::Scope))
                    .col(big_integer(Incidents::Version))
                    .col(string(Incidents::CreatedBy))
                    .col(timestamp_with_time_zone(Incidents::CreatedAt))
                    .col(timestamp_with_time_zone(Incidents::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Incidents::ResolvedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IncidentEvents::Table)
                    .if_not_exists()
                    .col(uuid(IncidentEvents::Id).primary_key())
                    .col(uuid(IncidentEvents::IncidentId))
                    .col(timestamp_with_time_zone(IncidentEvents::At))
                    .col(string(IncidentEvents::Actor))
                    .col(string(IncidentEvents::Status))
                    .col(text(IncidentEvents::Note))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("incident_events_incident")
                    .table(IncidentEvents::Table)
                    .col(IncidentEvents::IncidentId)
                    .col(IncidentEvents::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MaintenanceWindows::Table)
                    .if_not_exists()
                    .col(uuid(MaintenanceWindows::Id).primary_key())
                    .col(text(MaintenanceWindows::Scope))
                    .col(timestamp_with_time_zone(MaintenanceWindows::StartsAt))
                    .col(timestamp_with_time_zone(MaintenanceWindows::EndsAt))
                    .col(text(MaintenanceWindows::Description))
                    .col(boolean(MaintenanceWindows::FreezeRollouts))
                    .col(timestamp_with_time_zone_null(
                        MaintenanceWindows::CancelledAt,
                    ))
                    .col(big_integer(MaintenanceWindows::Version))
                    .col(string(MaintenanceWindows::CreatedBy))
                    .col(timestamp_with_time_zone(MaintenanceWindows::CreatedAt))
                    .col(timestamp_with_time_zone(MaintenanceWindows::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("maintenance_windows_time")
                    .table(MaintenanceWindows::Table)
                    .col(MaintenanceWindows::StartsAt)
                    .col(MaintenanceWindows::EndsAt)
                    .to_owned(),
            )
            .await
    }
}
