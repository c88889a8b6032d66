//! The change log of `tenant_config` (`tenant_config_log`, see
//! `shared::changelog`): the impact index (`impact::ConfigIndex`) follows it.

use sea_orm_migration::prelude::*;

pub struct CreateConfigLog;

impl MigrationName for CreateConfigLog {
    fn name(&self) -> &str {
        "m0009_tenant_config_log"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateConfigLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        shared::changelog::install(manager.get_connection(), "tenant_config", "tenant_id").await
    }
}
