//! `syncStatus` and `repairSync`: where each cell stands on the streams the
//! global tier feeds it, and the anti-entropy pass on demand.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::IntoGql;
use shared::auth::Role;

use super::audited::{Target, audited};
use super::auth::caller;
use super::types::Cell;
use crate::service::{antientropy, sync_status};

#[derive(Default)]
pub struct SyncQuery;

#[derive(Default)]
pub struct SyncMutation;

/// One cell's position on one stream, and the last digest comparison.
#[derive(SimpleObject)]
pub struct SyncStatus {
    pub cell: Cell,
    /// The kind of entity, e.g. `config-key`.
    pub kind: String,
    pub stream: String,
    /// Everything up to this stream position is applied and acknowledged.
    pub last_applied_position: Option<String>,
    /// Age of the oldest event the cell has not applied; 0 when caught up.
    pub lag_seconds: Option<f64>,
    /// Events published and not yet applied (delivered or not).
    pub pending_count: Option<i64>,
    /// When anti-entropy last compared this kind in this cell.
    pub last_check_at: Option<DateTime<Utc>>,
    /// When a check last found the cell behind and republished.
    pub last_repair_at: Option<DateTime<Utc>>,
    /// Entities that differed at the last check (changes in flight excluded).
    pub divergent_entities: Option<i64>,
    /// Up to 20 of them.
    pub divergent_sample: Vec<String>,
    /// What could not be read: the stream (Redis) or the cell.
    pub errors: Vec<String>,
}

fn view(st: &crate::State, s: sync_status::Status) -> Option<SyncStatus> {
    let model = st.cells.get(&s.cell_id)?;
    let mut errors = Vec::new();
    if let Some(e) = s.stream_error {
        errors.push(format!("stream: {e}"));
    }
    if let Some(e) = s.repair.as_ref().and_then(|r| r.error.clone()) {
        errors.push(format!("last check: {e}"));
    }
    Some(SyncStatus {
        cell: Cell {
            model,
            tenant_count: None,
        },
        kind: s.kind.to_owned(),
        stream: s.stream.to_owned(),
        last_applied_position: s.group.as_ref().and_then(|g| g.last_applied.clone()),
        lag_seconds: s.lag_seconds,
        pending_count: s.group.as_ref().map(|g| (g.pending + g.undelivered) as i64),
        last_check_at: s.repair.as_ref().map(|r| r.checked_at),
        last_repair_at: s.repair.as_ref().and_then(|r| r.repaired_at),
        divergent_entities: s.repair.as_ref().map(|r| r.divergent),
        divergent_sample: s
            .repair
            .as_ref()
            .and_then(|r| serde_json::from_str(&r.sample).ok())
            .unwrap_or_default(),
        errors,
    })
}

const OPERATORS: [Role; 2] = [Role::PlatformAdmin, Role::Sre];

fn operator(p: &shared::auth::Principal, action: &str) -> shared::Result<()> {
    p.require_any(&OPERATORS, action)
}

#[Object]
impl SyncQuery {
    /// Every cell (or one) × every replicated kind.
    async fn sync_status(&self, ctx: &Context<'_>, cell_id: Option<ID>) -> Result<Vec<SyncStatus>> {
        let (st, p) = caller(ctx).gql()?;
        operator(p, "syncStatus").gql()?;
        if let Some(id) = &cell_id
            && st.cells.get(id).is_none()
        {
            return Err(
                shared::Error::NotFound(format!("cell {} is not registered", id.as_str()))
                    .into_gql(),
            );
        }
        let all = sync_status::statuses(st, cell_id.as_ref().map(|c| c.as_str()))
            .await
            .gql()?;
        Ok(all.into_iter().filter_map(|s| view(st, s)).collect())
    }
}

#[Object]
impl SyncMutation {
    /// Runs the anti-entropy check now on one cell (or every UP cell) and
    /// republishes what a cell is behind on. Safe to repeat.
    async fn repair_sync(&self, ctx: &Context<'_>, cell_id: Option<ID>) -> Result<Vec<SyncStatus>> {
        let detail = json!({ "cellId": cell_id.as_ref().map(|c| c.as_str()) });
        let target = Target::Input(cell_id.as_ref().map(|c| c.to_string()));
        let statuses = audited(
            ctx,
            "repairSync",
            &OPERATORS,
            detail,
            target,
            async |st, _| {
                let cells: Vec<_> = match &cell_id {
                    Some(id) => vec![st.cells.get(id).ok_or_else(|| {
                        shared::Error::NotFound(format!("cell {} is not registered", id.as_str()))
                    })?],
                    None => st
                        .cells
                        .all()
                        .into_iter()
                        .filter(|c| c.status == crate::service::cells::UP)
                        .collect(),
                };
                for c in &cells {
                    antientropy::check_cell(st, c).await;
                }
                sync_status::statuses(st, cell_id.as_ref().map(|c| c.as_str())).await
            },
        )
        .await?;
        let st = ctx.data_unchecked::<crate::State>();
        Ok(statuses.into_iter().filter_map(|s| view(st, s)).collect())
    }
}
