//! Where each cell stands on each stream the global tier feeds it, and what
//! the last anti-entropy check found there.

use chrono::Utc;
use sea_orm::EntityTrait;
use shared::Result;
use shared::sync::GroupStatus;

use crate::State;
use crate::entity::sync_repair;
use crate::service::antientropy;

/// One cell × one replicated kind.
#[derive(Debug, Clone)]
pub struct Status {
    pub cell_id: String,
    pub kind: &'static str,
    pub stream: &'static str,
    /// `None` when the stream could not be read (Redis unreachable).
    pub group: Option<GroupStatus>,
    pub lag_seconds: Option<f64>,
    pub repair: Option<sync_repair::Model>,
    pub stream_error: Option<String>,
}

/// The consumer group a cell reads global streams with.
pub fn group(cell: &str) -> String {
    format!("cell.{cell}")
}

/// Every registered cell (or only `only`) × every replicated kind.
pub async fn statuses(st: &State, only: Option<&str>) -> Result<Vec<Status>> {
    let repairs: Vec<sync_repair::Model> = sync_repair::Entity::find().all(&st.db).await?;
    let mut out = Vec::new();
    for cell in st.cells.all() {
        if only.is_some_and(|o| o != cell.id) {
            continue;
        }
        for kind in antientropy::kinds() {
            let (group, stream_error) = match st
                .transport
                .group_status(kind.stream(), &group(&cell.id))
                .await
            {
                Ok(g) => (Some(g), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let lag_seconds = group.as_ref().map(|g| {
                g.oldest_unapplied
                    .map(|at| ((Utc::now() - at).num_milliseconds().max(0) as f64) / 1000.0)
                    .unwrap_or(0.0)
            });
            out.push(Status {
                cell_id: cell.id.clone(),
                kind: kind.name(),
                stream: kind.stream(),
                group,
                lag_seconds,
                repair: repairs
                    .iter()
                    .find(|r| r.cell_id == cell.id && r.kind == kind.name())
                    .cloned(),
                stream_error,
            });
        }
    }
    Ok(out)
}
