//! Rollouts: a flag variant exposed stage by stage, each stage acknowledged
//! by every cell, soaked, and judged on health signals before the next.
//! Every change is a versioned write of the rollout's document; changes the
//! cells must hear of (state, stage) also go out on `global.rollouts` in the
//! same transaction. The progress loop is in [`super::rollout_progress`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use shared::flags::bucket::{bucket, threshold};
use shared::flags::def::{check_environment, check_percentage};
use shared::flags::{
    self as f, Constraint, Operator, RolloutPlan, RolloutState, Rule, Stage, store,
};
use shared::ids::IdempotencyKey;
use shared::sync::{Event, applied, outbox};
use shared::{Error, Result};
use uuid::Uuid;

use super::idempotency;
use crate::State;
use crate::entity::{rollout, tenant};

/// A cell's acknowledgement of the stage it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellAck {
    pub stage: usize,
    /// The plan state the cell served when it acknowledged (None: an
    /// acknowledgement recorded before states were kept).
    #[serde(default)]
    pub state: Option<RolloutState>,
    /// The plan version it acknowledged.
    #[serde(default)]
    pub plan_version: i64,
    pub exposed_tenants: i64,
    pub excluded_tenants: i64,
    pub tenants: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub event: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub requests: i64,
    pub errors: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stuck {
    pub reason: String,
    pub cells: Vec<String>,
}

/// Everything the global tier keeps of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub plan: RolloutPlan,
    /// When a PENDING rollout starts its first stage by itself.
    #[serde(default)]
    pub start_at: Option<DateTime<Utc>>,
    pub ack_deadline_seconds: i64,
    pub stage_started_at: DateTime<Utc>,
    /// The cells that must acknowledge the current stage.
    pub target_cells: Vec<String>,
    pub cells: BTreeMap<String, CellAck>,
    /// The rollout variant's health during the current stage.
    pub health: Health,
    pub stuck: Option<Stuck>,
    pub history: Vec<HistoryEntry>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    pub doc: Rollout,
    pub version: i64,
    pub plan_version: i64,
}

/// One step of a rollout, pushed to `rolloutProgress` subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub rollout_id: Uuid,
    pub at: DateTime<Utc>,
    pub event: String,
    pub detail: String,
    pub state: RolloutState,
    pub stage: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewRollout {
    pub flag_key: String,
    pub environment: String,
    pub variant: String,
    pub stages: Vec<Stage>,
    pub requires_tenant_version: Option<String>,
    pub allow_empty_cohort: bool,
    pub ack_deadline_seconds: i64,
    /// Later than now: the rollout is PENDING until then.
    pub start_at: Option<DateTime<Utc>>,
}

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

#[derive(Serialize)]
pub struct PlanVersion {
    pub plan: RolloutPlan,
    pub version: i64,
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

fn plan_event(p: &RolloutPlan, version: i64) -> Result<Event> {
    Ok(Event::new(
        f::ROLLOUT_STREAM,
        &f::rollout_entity(p.id),
        version,
        "global",
        serde_json::to_value(p).map_err(Error::internal)?,
    ))
}

fn cohort_matches(
    c: &shared::flags::Cohort,
    t: &tenant::Model,
    salt: &str,
    req: Option<&semver::VersionReq>,
) -> bool {
    (c.tenant_ids.is_empty() || c.tenant_ids.contains(&t.id))
        && (c.cell_ids.is_empty() || c.cell_ids.contains(&t.cell_id))
        && (c.regions.is_empty() || c.regions.contains(&t.region))
        && (c.plans.is_empty() || c.plans.contains(&t.plan))
        && c.percentage
            .is_none_or(|p| bucket(salt, t.id) < threshold(p))
        && req.is_none_or(|r| r.matches(&semver::Version::new(t.version.max(0) as u64, 0, 0)))
}

fn check_stages(n: &NewRollout) -> Result<Option<semver::VersionReq>> {
    check_environment(&n.environment).map_err(|m| Error::bad_input("input.environment", m))?;
    if n.stages.is_empty() || n.stages.len() > 20 {
        return Err(Error::bad_input(
            "input.stages",
            "a rollout needs 1 to 20 stages",
        ));
    }
    if n.ack_deadline_seconds < 1 {
        return Err(Error::bad_input(
            "input.ackDeadlineSeconds",
            "ackDeadlineSeconds must be at least 1",
        ));
    }
    let mut last = 0.0;
    for (i, s) in n.stages.iter().enumerate() {
        let field = format!("input.stages[{i}]");
        if s.name.trim().is_empty() || s.name.len() > 64 {
            return Err(Error::bad_input(
                format!("{field}.name"),
                "stage names must be 1 to 64 characters",
            ));
        }
        if s.soak_seconds < 0 {
            return Err(Error::bad_input(
                format!("{field}.soakSeconds"),
                "soakSeconds must not be negative",
            ));
        }
        if let Some(p) = s.cohort.percentage {
            check_percentage(p)
                .map_err(|m| Error::bad_input(format!("{field}.cohort.percentage"), m))?;
            if p < last {
                return Err(Error::bad_input(
                    format!("{field}.cohort.percentage"),
                    format!("stage percentages must not go down: {p} after {last}"),
                ));
            }
            last = p;
        }
        if let Some(r) = s.gates.max_error_rate
            && !(r.is_finite() && (0.0..=1.0).contains(&r))
        {
            return Err(Error::bad_input(
                format!("{field}.gates.maxErrorRate"),
                "maxErrorRate must be between 0 and 1",
            ));
        }
        if s.gates.min_requests.is_some_and(|m| m < 0) {
            return Err(Error::bad_input(
                format!("{field}.gates.minRequests"),
                "minRequests must not be negative",
            ));
        }
    }
    n.requires_tenant_version
        .as_deref()
        .map(|r| {
            semver::VersionReq::parse(r).map_err(|e| {
                Error::bad_input(
                    "input.requiresTenantVersion",
                    format!("`{r}` is not a semver range: {e}"),
                )
            })
        })
        .transpose()
}

/// Starts a rollout in RUNNING at its first stage (the canary).
pub async fn start(st: &State, actor: &str, key: &IdempotencyKey, n: NewRollout) -> Result<Stored> {
    let req = check_stages(&n)?;
    let hash = idempotency::fingerprint(&("startRollout", &n));
    let id = Uuid::now_v7();
    let claim =
        idempotency::claim(&st.db, "startRollout", key, actor, &hash, &id.to_string()).await?;
    let id: Uuid = claim.resource_id.parse().map_err(Error::internal)?;
    if claim.done {
        return get(&st.db, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("rollout {id} not found")));
    }
    // An earlier attempt with this key committed but did not finish the claim.
    if let Some(s) = get(&st.db, id).await? {
        idempotency::complete(&st.db, "startRollout", key).await?;
        return Ok(s);
    }
    let result = create(st, actor, id, n, req).await;
    match &result {
        Ok(_) => idempotency::complete(&st.db, "startRollout", key).await?,
        Err(_) => idempotency::release(&st.db, "startRollout", key).await?,
    }
    let s = result?;
    publish_all(st, &s, &s.doc.history).await;
    Ok(s)
}

async fn create(
    st: &State,
    actor: &str,
    id: Uuid,
    n: NewRollout,
    req: Option<semver::VersionReq>,
) -> Result<Stored> {
    let txn = shared::db::begin_write(&st.db).await?;
    // Lock the flag row: two rollouts of one flag cannot start at once.
    let def = store::lock(&txn, &n.flag_key)
        .await?
        .ok_or_else(|| Error::NotFound(format!("flag `{}` does not exist", n.flag_key)))?
        .flag
        .def;
    if def.archived {
        return Err(Error::Conflict(format!("flag `{}` is archived", def.key)));
    }
    if def.variant(&n.variant).is_none() {
        return Err(Error::bad_input(
            "input.variant",
            format!("flag `{}` has no variant `{}`", def.key, n.variant),
        ));
    }
    if let Some(other) = rollout::Entity::find()
        .filter(rollout::Column::FlagKey.eq(&n.flag_key))
        .filter(rollout::Column::Environment.eq(&n.environment))
        .filter(rollout::Column::State.is_in([
            RolloutState::Pending.as_str(),
            RolloutState::Running.as_str(),
            RolloutState::Paused.as_str(),
            RolloutState::Stuck.as_str(),
        ]))
        .one(&txn)
        .await?
    {
        return Err(Error::Conflict(format!(
            "rollout {} of `{}` in {} is still {}; one rollout per flag and environment at a time",
            other.id, n.flag_key, n.environment, other.state
        )));
    }
    if !n.allow_empty_cohort {
        // Tenants cells serve: the directory's plan column makes the plan
        // dimension exact without asking cells.
        let tenants = tenant::Entity::find()
            .filter(tenant::Column::CellId.ne(""))
            .filter(tenant::Column::Status.is_not_in([
                shared::model::TenantStatus::Failed.as_str(),
                shared::model::TenantStatus::Deleted.as_str(),
            ]))
            .all(&txn)
            .await?;
        for (i, s) in n.stages.iter().enumerate() {
            if !tenants
                .iter()
                .any(|t| cohort_matches(&s.cohort, t, def.salt(), req.as_ref()))
            {
                return Err(Error::bad_input(
                    format!("input.stages[{i}].cohort"),
                    format!(
                        "stage `{}` matches no tenant; set allowEmptyCohort to start anyway",
                        s.name
                    ),
                ));
            }
        }
    }
    let now = Utc::now();
    let first = n.stages[0].name.clone();
    let pending = n.start_at.filter(|at| *at > now);
    let frozen = match pending {
        Some(_) => None,
        None => super::maintenance::freezing(st, &n.stages[0].cohort).await?,
    };
    let (state, history) = match (pending, frozen) {
        (Some(at), _) => (
            RolloutState::Pending,
            vec![entry(
                "PENDING",
                format!("by {actor}; starts at {}", at.to_rfc3339()),
            )],
        ),
        // Due, but its first stage reaches a frozen tenant: it starts by
        // itself once the window is over.
        (None, Some(window)) => (
            RolloutState::Pending,
            vec![
                entry("PENDING", format!("by {actor}")),
                entry("FROZEN", frozen_detail(window)),
            ],
        ),
        (None, None) => (
            RolloutState::Running,
            vec![
                entry("STARTED", format!("by {actor}")),
                entry("STAGE_STARTED", format!("stage 0 `{first}`")),
            ],
        ),
    };
    let doc = Rollout {
        start_at: pending,
        plan: RolloutPlan {
            id,
            flag_key: n.flag_key,
            environment: n.environment,
            variant: n.variant,
            stages: n.stages,
            requires_tenant_version: n.requires_tenant_version,
            state,
            stage: 0,
        },
        ack_deadline_seconds: n.ack_deadline_seconds,
        stage_started_at: pending.unwrap_or(now),
        target_cells: st.cells.all().into_iter().map(|c| c.id).collect(),
        cells: BTreeMap::new(),
        health: Health::default(),
        stuck: None,
        history,
        created_by: actor.to_owned(),
        created_at: now,
    };
    rollout::Entity::insert(rollout::ActiveModel {
        id: Set(id),
        flag_key: Set(doc.plan.flag_key.clone()),
        environment: Set(doc.plan.environment.clone()),
        state: Set(doc.plan.state.as_str().to_owned()),
        doc: Set(serde_json::to_string(&doc).map_err(Error::internal)?),
        version: Set(1),
        plan_version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(&txn)
    .await?;
    outbox::enqueue(&txn, &plan_event(&doc.plan, 1)?).await?;
    let s = Stored {
        doc,
        version: 1,
        plan_version: 1,
    };
    shared::audit::change(&txn, None, Some(id.to_string()), shared::audit::NONE, &s).await?;
    txn.commit().await?;
    st.relay.nudge();
    Ok(s)
}

pub fn entry(event: &str, detail: String) -> HistoryEntry {
    HistoryEntry {
        at: Utc::now(),
        event: event.to_owned(),
        detail,
    }
}

/// Pushes each entry to `rolloutProgress` subscribers of every replica.
async fn publish_all(st: &State, s: &Stored, entries: &[HistoryEntry]) {
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

/// What a change did: history entries to add (and push), whether the cells
/// must hear of it.
#[derive(Default)]
pub struct Change {
    pub entries: Vec<HistoryEntry>,
    pub plan: bool,
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
    let mut rules: Vec<Rule> = p
        .stages
        .iter()
        .map(|s| {
            let mut constraints = Vec::new();
            let mut add = |attribute: &str, operator: Operator, values: Vec<String>| {
                constraints.push(Constraint {
                    attribute: attribute.into(),
                    operator,
                    values,
                })
            };
            if !s.cohort.cell_ids.is_empty() {
                add("cell", Operator::In, s.cohort.cell_ids.clone());
            }
            if !s.cohort.regions.is_empty() {
                add("region", Operator::In, s.cohort.regions.clone());
            }
            if !s.cohort.plans.is_empty() {
                add("plan", Operator::In, s.cohort.plans.clone());
            }
            if let Some(r) = &p.requires_tenant_version {
                add("version", Operator::Semver, vec![r.clone()]);
            }
            Rule {
                variant: p.variant.clone(),
                tenant_ids: s.cohort.tenant_ids.clone(),
                constraints,
                prerequisites: vec![],
                percentage: s.cohort.percentage,
            }
        })
        .collect();
    let t = def.environments.entry(p.environment.clone()).or_default();
    rules.append(&mut t.rules);
    t.rules = rules;
    t.enabled = true;
    super::flags::put(txn, &def, row.flag.version + 1).await
}

/// Operator actions on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pause,
    Resume,
    Advance,
    Rollback,
}

/// Why a maintenance window holds a rollout, as its history says.
pub fn frozen_detail(window: Uuid) -> String {
    format!("maintenance window {window} is in progress: the next stage waits")
}

/// The maintenance window that holds a rollout's next stage (a PENDING
/// rollout's first), if any.
pub async fn frozen_by(st: &State, d: &Rollout) -> Result<Option<Uuid>> {
    let next = if d.plan.state == RolloutState::Pending {
        d.plan.stages.first()
    } else {
        d.plan.stages.get(d.plan.stage + 1)
    };
    match next {
        Some(next) => super::maintenance::freezing(st, &next.cohort).await,
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
    modify(st, id, None, |d| {
        let state = d.plan.state;
        let refuse = |what: &str| {
            Err(Error::Conflict(format!(
                "cannot {what} rollout {id}: it is {}",
                state.as_str()
            )))
        };
        let mut c = Change::default();
        match op {
            Op::Pause if state == RolloutState::Pending => {
                return refuse("pause (it has not started; roll it back to cancel)");
            }
            Op::Resume if state == RolloutState::Pending => {
                return refuse("resume (it has not started; advance it to start now)");
            }
            Op::Advance if state == RolloutState::Pending => {
                c.entries
                    .push(entry("ADVANCED", format!("start time skipped by {actor}")));
                begin(d, &cells, &mut c);
            }
            Op::Pause => match state {
                RolloutState::Paused => {}
                RolloutState::Running | RolloutState::Stuck => {
                    d.plan.state = RolloutState::Paused;
                    c.plan = true;
                    c.entries.push(entry("PAUSED", format!("by {actor}")));
                }
                _ => return refuse("pause"),
            },
            Op::Resume => match state {
                RolloutState::Running => {}
                RolloutState::Paused | RolloutState::Stuck => {
                    d.plan.state = RolloutState::Running;
                    d.stuck = None;
                    c.plan = true;
                    c.entries.push(entry("RESUMED", format!("by {actor}")));
                }
                _ => return refuse("resume"),
            },
            Op::Advance => {
                if state.finished() {
                    return refuse("advance");
                }
                c.entries
                    .push(entry("ADVANCED", format!("soak skipped by {actor}")));
                next_stage(d, &cells, &mut c);
            }
            Op::Rollback => {
                if state.finished() {
                    return refuse("roll back");
                }
                roll_back(d, format!("by {actor}"), &mut c);
            }
        }
        Ok(c)
    })
    .await
}

/// A PENDING rollout starts its first stage (the canary). Acknowledgements
/// of the pending plan do not count for it: every cell acknowledges again.
pub fn begin(d: &mut Rollout, cells: &[String], c: &mut Change) {
    c.plan = true;
    d.plan.state = RolloutState::Running;
    d.plan.stage = 0;
    d.stage_started_at = Utc::now();
    d.health = Health::default();
    d.target_cells = cells.to_vec();
    d.cells.clear();
    c.entries
        .push(entry("STARTED", "start time reached".into()));
    c.entries.push(entry(
        "STAGE_STARTED",
        format!("stage 0 `{}`", d.plan.stages[0].name),
    ));
}

/// Whether a PENDING rollout's start time came.
pub fn due(d: &Rollout) -> bool {
    d.plan.state == RolloutState::Pending && d.start_at.is_none_or(|at| at <= Utc::now())
}

/// Starts a PENDING rollout whose start time came.
pub fn begin_if_due(d: &mut Rollout, cells: &[String]) -> Change {
    let mut c = Change::default();
    if due(d) {
        begin(d, cells, &mut c);
    }
    c
}

/// Moves to the next stage, or completes after the last.
pub fn next_stage(d: &mut Rollout, cells: &[String], c: &mut Change) {
    c.plan = true;
    d.stuck = None;
    if d.plan.stage + 1 >= d.plan.stages.len() {
        d.plan.state = RolloutState::Completed;
        c.entries.push(entry(
            "COMPLETED",
            format!("variant `{}` is now the flag's targeting", d.plan.variant),
        ));
        return;
    }
    d.plan.stage += 1;
    d.plan.state = RolloutState::Running;
    d.stage_started_at = Utc::now();
    d.health = Health::default();
    d.target_cells = cells.to_vec();
    c.entries.push(entry(
        "STAGE_STARTED",
        format!(
            "stage {} `{}`",
            d.plan.stage, d.plan.stages[d.plan.stage].name
        ),
    ));
}

pub fn roll_back(d: &mut Rollout, why: String, c: &mut Change) {
    d.plan.state = RolloutState::RolledBack;
    d.stuck = None;
    c.plan = true;
    c.entries.push(entry("ROLLED_BACK", why));
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
        modify(st, id, None, |d| {
            let mut c = Change::default();
            if !d.plan.state.finished() {
                d.plan.state = RolloutState::Aborted;
                d.stuck = None;
                c.plan = true;
                c.entries.push(entry("ABORTED", why.to_owned()));
            }
            Ok(c)
        })
        .await?;
    }
    Ok(())
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
