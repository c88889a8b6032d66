//! The directory's change log (`tenants_log`, see `shared::changelog`):
//! the impact cache (`service::directory_cache`) follows it.

use sea_orm_migration::prelude::*;

pub struct CreateDirectoryLog;

impl MigrationName for CreateDirectoryLog {
    fn name(&self) -> &str {
        "m0021_directory_log"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDirectoryLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        shared::changelog::install(manager.get_connection(), "tenants", "id").await
    }
}
