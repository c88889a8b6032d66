//! Reading and writing rollout documents: every change is a versioned write
//! under optimistic concurrency; a change the cells must hear of also goes
//! out as the plan on `global.rollouts` in the same transaction.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use shared::flags::{self as f, RolloutPlan, RolloutState, store};
use shared::sync::{Event, applied, outbox};
use shared::{Error, Result};
use uuid::Uuid;

use super::stages::permanent_rules;
use super::{Change, HistoryEntry, PlanVersion, Progress, Rollout, Stored};
use crate::State;
use crate::entity::rollout;

fn decode(m: rollout::Model) -> Result<Stored> {
    Ok(Stored {
        doc: serde_json::from_str(&m.doc).map_err(Error::internal)?,
        version: m.version,
        plan_version: m.plan_version,
    })
}

pub async fn get<C: sea_orm::ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<Stored>> {
    rollout::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(decode)
        .transpose()
}

pub async fn list(st: &State, state: Option<RolloutState>) -> Result<Vec<Stored>> {
    let mut q = rollout::Entity::find().order_by_desc(rollout::Column::Id);
    if let Some(s) = state {
        q = q.filter(rollout::Column::State.eq(s.as_str()));
    }
    q.all(&st.db).await?.into_iter().map(decode).collect()
}

/// Rollouts whose progress the loop drives.
pub async fn active(st: &State) -> Result<Vec<Stored>> {
    rollout::Entity::find()
        .filter(rollout::Column::State.is_in([
            RolloutState::Pending.as_str(),
            RolloutState::Running.as_str(),
            RolloutState::Stuck.as_str(),
        ]))
        .all(&st.db)
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// Every rollout's plan with the version cells apply.
pub async fn plans(st: &State) -> Result<Vec<PlanVersion>> {
    Ok(list(st, None)
        .await?
        .into_iter()
        .map(|s| PlanVersion {
            plan: s.doc.plan,
            version: s.plan_version,
        })
        .collect())
}

/// The event that carries plan `p` at `version` to the cells.
pub(super) fn plan_event(p: &RolloutPlan, version: i64) -> Result<Event> {
    Ok(Event::new(
        f::ROLLOUT_STREAM,
        &f::rollout_entity(p.id),
        version,
        "global",
        serde_json::to_value(p).map_err(Error::internal)?,
    ))
}

/// Pushes each entry to `rolloutProgress` subscribers of every replica.
pub(super) async fn publish_all(st: &State, s: &Stored, entries: &[HistoryEntry]) {
    for e in entries {
        st.rollout_events
            .publish(Progress {
                rollout_id: s.doc.plan.id,
                at: e.at,
                event: e.event.clone(),
                detail: e.detail.clone(),
                state: s.doc.plan.state,
                stage: s.doc.plan.stage,
            })
            .await;
    }
}

/// Applies `f` to the rollout and writes it if it changed anything, under
/// optimistic concurrency (retried when another writer got there first).
/// `applied` is a stream entity version to advance in the same transaction:
/// when it is not newer, nothing is done.
pub async fn modify(
    st: &State,
    id: Uuid,
    applied: Option<(&str, i64)>,
    mut f: impl FnMut(&mut Rollout) -> Result<Change>,
) -> Result<Stored> {
    for _ in 0..20 {
        if let Some(s) = try_modify(st, id, applied, &mut f).await? {
            return Ok(s);
        }
    }
    Err(Error::Unavailable(format!(
        "rollout {id} is changing too often; retry"
    )))
}

/// One attempt; `None` when another writer changed the rollout first.
async fn try_modify(
    st: &State,
    id: Uuid,
    applied: Option<(&str, i64)>,
    f: &mut impl FnMut(&mut Rollout) -> Result<Change>,
) -> Result<Option<Stored>> {
    // Reads, then writes: IMMEDIATE on SQLite, so the write cannot fail
    // because another connection wrote after the read.
    let txn = shared::db::begin_write(&st.db).await?;
    let cur = get(&txn, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("rollout {id} not found")))?;
    if let Some((entity, v)) = applied
        && !applied::advance(&txn, entity, v).await?
    {
        return Ok(Some(cur));
    }
    let mut doc = cur.doc.clone();
    let change = f(&mut doc)?;
    if change.entries.is_empty() && !change.plan && doc == cur.doc {
        txn.commit().await?;
        return Ok(Some(cur));
    }
    doc.history.extend(change.entries.iter().cloned());
    let plan_version = cur.plan_version + i64::from(change.plan);
    if !update(&txn, &cur, &doc, plan_version).await? {
        return Ok(None);
    }
    if change.plan {
        outbox::enqueue(&txn, &plan_event(&doc.plan, plan_version)?).await?;
        if doc.plan.state == RolloutState::Completed {
            make_permanent(&txn, &doc.plan).await?;
        }
    }
    let s = Stored {
        doc,
        version: cur.version + 1,
        plan_version,
    };
    shared::audit::change(&txn, None, Some(id.to_string()), &cur, &s).await?;
    txn.commit().await?;
    if change.plan {
        st.relay.nudge();
    }
    publish_all(st, &s, &change.entries).await;
    Ok(Some(s))
}

async fn update(
    txn: &DatabaseTransaction,
    cur: &Stored,
    doc: &Rollout,
    plan_version: i64,
) -> Result<bool> {
    let res = rollout::Entity::update_many()
        .col_expr(
            rollout::Column::Doc,
            Expr::value(serde_json::to_string(doc).map_err(Error::internal)?),
        )
        .col_expr(rollout::Column::State, Expr::value(doc.plan.state.as_str()))
        .col_expr(rollout::Column::Version, Expr::value(cur.version + 1))
        .col_expr(rollout::Column::PlanVersion, Expr::value(plan_version))
        .col_expr(rollout::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(rollout::Column::Id.eq(doc.plan.id))
        .filter(rollout::Column::Version.eq(cur.version))
        .exec(txn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// A completed rollout's exposure becomes the flag's targeting: one rule per
/// stage cohort, ahead of the rules it had, and the environment enabled.
async fn make_permanent(txn: &DatabaseTransaction, p: &RolloutPlan) -> Result<()> {
    let Some(row) = store::get(txn, &p.flag_key).await? else {
        return Ok(());
    };
    let mut def = row.flag.def;
    let mut rules = permanent_rules(p);
    let t = def.environments.entry(p.environment.clone()).or_default();
    rules.append(&mut t.rules);
    t.rules = rules;
    t.enabled = true;
    crate::service::flags::put(txn, &def, row.flag.version + 1).await
}

/// The authoritative `(entity, version)` of every rollout plan.
pub async fn entity_versions(st: &State) -> Result<Vec<(String, i64)>> {
    Ok(rollout::Entity::find()
        .all(&st.db)
        .await?
        .into_iter()
        .map(|r| (f::rollout_entity(r.id), r.plan_version))
        .collect())
}

/// Sends the current plan event of `rollout:{id}` again; false when unknown.
pub async fn republish(st: &State, entity: &str) -> Result<bool> {
    let Some(id) = entity
        .strip_prefix("rollout:")
        .and_then(|i| Uuid::parse_str(i).ok())
    else {
        return Ok(false);
    };
    let txn = st.db.begin().await?;
    let Some(s) = get(&txn, id).await? else {
        return Ok(false);
    };
    outbox::enqueue(&txn, &plan_event(&s.doc.plan, s.plan_version)?).await?;
    txn.commit().await?;
    st.relay.nudge();
    Ok(true)
}
