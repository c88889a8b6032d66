//! What operators and flag changes do to running rollouts: pause, resume,
//! advance, roll back (held by maintenance windows where they apply), and
//! abort when the flag is killed or archived.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use shared::flags::RolloutState;
use shared::{Error, Result};
use uuid::Uuid;

use super::stages::{apply_op, mark_aborted};
use super::store::{get, modify};
use super::{Op, Rollout, Stored};
use crate::State;
use crate::entity::rollout;
use crate::service::maintenance;

/// The maintenance window that holds a rollout's next stage (a PENDING
/// rollout's first), if any.
pub async fn frozen_by(st: &State, d: &Rollout) -> Result<Option<Uuid>> {
    let next = if d.plan.state == RolloutState::Pending {
        d.plan.stages.first()
    } else {
        d.plan.stages.get(d.plan.stage + 1)
    };
    match next {
        Some(next) => maintenance::freezing(st, &next.cohort).await,
        None => Ok(None),
    }
}

pub async fn operate(st: &State, id: Uuid, op: Op, actor: &str) -> Result<Stored> {
    let cells: Vec<String> = st.cells.all().into_iter().map(|c| c.id).collect();
    if op == Op::Advance
        && let Some(cur) = get(&st.db, id).await?
        && let Some(window) = frozen_by(st, &cur.doc).await?
    {
        return Err(Error::Conflict(format!(
            "rollout {id} cannot advance: maintenance window {window} freezes rollouts for \
             tenants its next stage would reach"
        )));
    }
    modify(st, id, None, |d| apply_op(d, op, actor, &cells)).await
}

/// Aborts the unfinished rollouts of `flag` in `env` (the kill switch), or
/// in every environment (archiving); `why` goes into their history.
pub async fn abort(st: &State, flag: &str, env: Option<&str>, why: &str) -> Result<()> {
    let mut q = rollout::Entity::find().filter(rollout::Column::FlagKey.eq(flag));
    if let Some(env) = env {
        q = q.filter(rollout::Column::Environment.eq(env));
    }
    let ids: Vec<Uuid> = q
        .all(&st.db)
        .await?
        .into_iter()
        .filter(|r| !matches!(r.state.as_str(), "COMPLETED" | "ROLLED_BACK" | "ABORTED"))
        .map(|r| r.id)
        .collect();
    for id in ids {
        modify(st, id, None, |d| Ok(mark_aborted(d, why))).await?;
    }
    Ok(())
}
