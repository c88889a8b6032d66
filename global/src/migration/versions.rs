//! A version on each cell (operators change its state under
//! `expectedVersion`), and the first answer of a keyed mutation, so a
//! retry with its idempotency key gets that answer again.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum Cells {
    Table,
    Version,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Answer,
}

pub struct AddCellVersionAndAnswers;

impl MigrationName for AddCellVersionAndAnswers {
    fn name(&self) -> &str {
        "m0020_cells_version_and_idempotency_answers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddCellVersionAndAnswers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Cells::Table)
                    .add_column(big_integer(Cells::Version).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(IdempotencyKeys::Table)
                    .add_column(text_null(IdempotencyKeys::Answer))
                    .to_owned(),
            )
            .await
    }
}
