//! Disaster recovery of the directory: the cells are the authority of
//! their tenants, so the directory can be rebuilt from their records. A
//! missing row is restored with the cell's status, version and plan; an
//! older row is brought up to the cell's version; a newer or equal one is
//! left alone. Run for every cell by `rebuildDirectory`, and for a cell by
//! itself when it registers with a global tier that did not know it (a
//! global database restored empty fills itself as cells come back).

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use shared::{Error, Result};

use crate::State;
use crate::cell_client::Record;
use crate::entity::{cell, tenant};

const PAGE: i32 = 500;

/// What one cell's pass did.
#[derive(Debug, Clone, Default)]
pub struct CellPass {
    pub cell_id: String,
    /// Records the cell holds.
    pub seen: i64,
    /// Directory rows that were missing and were written.
    pub restored: i64,
    /// Rows that were older than the cell's record and were brought up to it.
    pub updated: i64,
    /// Why the cell could not be read, if so.
    pub error: Option<String>,
}

/// Applies one record to the directory: (restored, updated).
async fn apply(st: &State, cell_id: &str, r: &Record) -> Result<(bool, bool)> {
    let current = |row: &tenant::Model| row.version >= r.version && row.cell_id == cell_id;
    // Most records are up to date: only a change takes a write transaction.
    if let Some(row) = tenant::Entity::find_by_id(r.id).one(&st.db).await?
        && current(&row)
    {
        return Ok((false, false));
    }
    let txn = shared::db::begin_write(&st.db).await?;
    let existing = tenant::Entity::find_by_id(r.id).one(&txn).await?;
    let changed = match &existing {
        Some(row) if current(row) => Ok((false, false)),
        Some(_) => {
            tenant::Entity::update_many()
                .col_expr(tenant::Column::CellId, cell_id.into())
                .col_expr(tenant::Column::Status, r.status.clone().into())
                .col_expr(tenant::Column::Version, r.version.into())
                .col_expr(tenant::Column::Plan, r.plan.clone().into())
                .col_expr(tenant::Column::PlanVersion, r.plan_version.into())
                .col_expr(tenant::Column::PurgeAt, r.purge_at.into())
                .col_expr(tenant::Column::UpdatedAt, r.updated_at.into())
                .filter(tenant::Column::Id.eq(r.id))
                .filter(tenant::Column::Version.lt(r.version))
                .exec(&txn)
                .await?;
            Ok((false, true))
        }
        None => {
            let row = tenant::ActiveModel {
                id: Set(r.id),
                slug: Set(r.slug.clone()),
                region: Set(r.region.clone()),
                cell_id: Set(cell_id.to_owned()),
                status: Set(r.status.clone()),
                version: Set(r.version),
                created_at: Set(r.created_at),
                updated_at: Set(r.updated_at),
                purge_at: Set(r.purge_at),
                plan: Set(r.plan.clone()),
                plan_version: Set(r.plan_version),
            };
            let res = tenant::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(tenant::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .try_insert()
                .exec(&txn)
                .await;
            match res {
                Ok(sea_orm::TryInsertResult::Inserted(_)) => Ok((true, false)),
                Ok(_) => Ok((false, false)),
                Err(e) if shared::db::is_unique_violation(&e) => Err(Error::Conflict(format!(
                    "tenant {} of cell {cell_id}: slug `{}` belongs to another directory row",
                    r.id, r.slug
                ))),
                Err(e) => Err(e.into()),
            }
        }
    }?;
    if changed != (false, false) {
        let after = tenant::Entity::find_by_id(r.id).one(&txn).await?;
        let target = Some(cell_id.to_owned());
        shared::audit::change(&txn, Some(r.id), target, &existing, &after).await?;
    }
    txn.commit().await?;
    Ok(changed)
}

/// Rebuilds the directory rows of one cell's tenants.
pub async fn cell(st: &State, c: &cell::Model) -> CellPass {
    let mut pass = CellPass {
        cell_id: c.id.clone(),
        ..CellPass::default()
    };
    let mut after = None;
    loop {
        let page = match st.cell_client.records(c, after, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                pass.error = Some(e.to_string());
                return pass;
            }
        };
        for r in &page {
            pass.seen += 1;
            match apply(st, &c.id, r).await {
                Ok((restored, updated)) => {
                    pass.restored += i64::from(restored);
                    pass.updated += i64::from(updated);
                }
                Err(e) => {
                    tracing::warn!(tenant = %r.id, cell = %c.id, error = %e, "directory rebuild skipped a record");
                    pass.error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
        after = page.last().map(|r| r.id);
    }
    if pass.restored + pass.updated > 0 {
        tracing::info!(cell = %c.id, restored = pass.restored, updated = pass.updated, "directory rebuilt from the cell");
    }
    pass
}

/// Rebuilds from every registered cell, in parallel.
pub async fn all(st: &State) -> Vec<CellPass> {
    let cells = st.cells.all();
    futures_util::future::join_all(cells.iter().map(|c| cell(st, c))).await
}
