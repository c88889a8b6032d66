//! The audit table, included in each tier's migrations.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Roles,
    Action,
    TenantId,
    Target,
    Outcome,
    RequestId,
    Detail,
}

/// Creates the `audit_log` table.
pub struct CreateAuditLog;

impl MigrationName for CreateAuditLog {
    fn name(&self) -> &str {
        "m0100_create_audit_log"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(uuid(AuditLog::Id).primary_key())
                    .col(timestamp_with_time_zone(AuditLog::At))
                    .col(string(AuditLog::Actor))
                    .col(string(AuditLog::Roles))
                    .col(string(AuditLog::Action))
                    .col(uuid_null(AuditLog::TenantId))
                    .col(string_null(AuditLog::Target))
                    .col(string(AuditLog::Outcome))
                    .col(string_null(AuditLog::RequestId))
                    .col(text(AuditLog::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_tenant")
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AuditChain {
    Source,
    Seq,
    PrevHash,
    Hash,
    BreakGlassId,
    Diff,
}

#[derive(DeriveIden)]
enum AuditChainHead {
    Table,
    Source,
    Seq,
    Hash,
    ShipOrigin,
}

/// Hash-chains the audit log: every entry gets its chain (`source`), `seq`,
/// `prev_hash` and `hash`, plus the break-glass id and a before/after diff.
/// Entries written before are chained in id order, so the chain starts at
/// the first entry ever written.
pub struct ChainAuditLog;

impl MigrationName for ChainAuditLog {
    fn name(&self) -> &str {
        "m0101_chain_audit_log"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ChainAuditLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        let columns = [
            ColumnDef::new(AuditChain::Source)
                .string()
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(AuditChain::Seq)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(AuditChain::PrevHash)
                .string()
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(AuditChain::Hash)
                .string()
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(AuditChain::BreakGlassId)
                .uuid()
                .null()
                .to_owned(),
            ColumnDef::new(AuditChain::Diff).text().null().to_owned(),
        ];
        for mut c in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditLog::Table)
                        .add_column(&mut c)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(AuditChainHead::Table)
                    .if_not_exists()
                    .col(string(AuditChainHead::Source).primary_key())
                    .col(big_integer(AuditChainHead::Seq))
                    .col(string(AuditChainHead::Hash))
                    .col(string_null(AuditChainHead::ShipOrigin))
                    .to_owned(),
            )
            .await?;
        super::chain::backfill(manager.get_connection()).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_chain")
                    .table(AuditLog::Table)
                    .col(AuditChain::Source)
                    .col(AuditChain::Seq)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_break_glass")
                    .table(AuditLog::Table)
                    .col(AuditChain::BreakGlassId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AuditValues {
    Fields,
    ValuesHash,
    Salt,
}

/// Entries hash their values through `values_hash` (with a `salt` kept
/// where the values are) and name the fields they changed, so a copy
/// without the values still chains: what a cell ships to the global tier,
/// and what remains of an entry after its tenant's purge. Entries written
/// before keep hashing their values directly.
pub struct SealAuditValues;

impl MigrationName for SealAuditValues {
    fn name(&self) -> &str {
        "m0102_audit_values_hash"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SealAuditValues {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        let columns = [
            ColumnDef::new(AuditValues::Fields).text().null().to_owned(),
            ColumnDef::new(AuditValues::ValuesHash)
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(AuditValues::Salt).string().null().to_owned(),
        ];
        for mut c in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditLog::Table)
                        .add_column(&mut c)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
