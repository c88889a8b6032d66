//! Disaster recovery through the API: rebuild the directory from the cells.

use async_graphql::{Context, Object, Result, SimpleObject};
use serde_json::json;
use shared::IntoGql;
use shared::audit;
use shared::auth::Role;

use super::auth::caller;
use crate::service::rebuild;

#[derive(Default)]
pub struct RecoveryMutation;

/// What one cell's pass did.
#[derive(SimpleObject)]
#[graphql(name = "DirectoryRebuildCell")]
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

impl From<rebuild::CellPass> for CellPass {
    fn from(c: rebuild::CellPass) -> Self {
        Self {
            cell_id: c.cell_id,
            seen: c.seen,
            restored: c.restored,
            updated: c.updated,
            error: c.error,
        }
    }
}

/// What `rebuildDirectory` did, cell by cell.
#[derive(SimpleObject)]
pub struct DirectoryRebuild {
    pub cells: Vec<CellPass>,
    pub restored: i64,
    pub updated: i64,
    /// False when some cell could not be read (see `cells.error`).
    pub complete: bool,
}

#[Object]
impl RecoveryMutation {
    /// Restores every tenant's directory row (cell, status, version, plan)
    /// from the records of every registered cell; rows already up to date
    /// are left alone, so it is safe to run again (platform-admin only).
    async fn rebuild_directory(&self, ctx: &Context<'_>) -> Result<DirectoryRebuild> {
        let (st, p) = caller(ctx).gql()?;
        // Each directory row it restores or updates is audited with its
        // diff in the row's transaction; the summary is recorded after.
        let trail = audit::Trail::new(p, "rebuildDirectory", json!({}));
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin], "rebuildDirectory")?;
                let cells = rebuild::all(st).await;
                Ok(DirectoryRebuild {
                    restored: cells.iter().map(|c| c.restored).sum(),
                    updated: cells.iter().map(|c| c.updated).sum(),
                    complete: cells.iter().all(|c| c.error.is_none()),
                    cells: cells.into_iter().map(Into::into).collect(),
                })
            })
            .await;
        let detail = match &result {
            Ok(r) => {
                json!({ "restored": r.restored, "updated": r.updated, "complete": r.complete })
            }
            Err(_) => json!({}),
        };
        audit::outcome(&st.db, p, "rebuildDirectory", None, None, detail, &result)
            .await
            .gql()?;
        result.gql()
    }
}
