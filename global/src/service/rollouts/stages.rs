//! How a rollout's document moves from state to state and stage to stage:
//! pure functions of the document, written by the callers of
//! [`super::modify`]. What judges a running stage is in [`super::gates`].

use chrono::Utc;
use shared::flags::report::{Ack, ack_plan_version};
use shared::flags::{Constraint, Operator, RolloutPlan, RolloutState, Rule};
use shared::{Error, Result};
use uuid::Uuid;

use super::{CellAck, Change, Health, Op, Rollout, entry};

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

/// Aborts an unfinished rollout (its flag was killed or archived); a
/// finished one is left as it is.
pub fn mark_aborted(d: &mut Rollout, why: &str) -> Change {
    let mut c = Change::default();
    if !d.plan.state.finished() {
        d.plan.state = RolloutState::Aborted;
        d.stuck = None;
        c.plan = true;
        c.entries.push(entry("ABORTED", why.to_owned()));
    }
    c
}

/// An operator's action on the rollout, by `actor`; CONFLICT when the
/// rollout's state does not allow it. Pausing what is paused or resuming
/// what runs changes nothing.
pub fn apply_op(d: &mut Rollout, op: Op, actor: &str, cells: &[String]) -> Result<Change> {
    let id = d.plan.id;
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
            begin(d, cells, &mut c);
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
            next_stage(d, cells, &mut c);
        }
        Op::Rollback => {
            if state.finished() {
                return refuse("roll back");
            }
            roll_back(d, format!("by {actor}"), &mut c);
        }
    }
    Ok(c)
}

/// Why a maintenance window holds a rollout, as its history says.
pub fn frozen_detail(window: Uuid) -> String {
    format!("maintenance window {window} is in progress: the next stage waits")
}

/// A history entry saying a maintenance window holds the rollout, unless
/// the last entry already says so.
pub fn frozen_note(d: &Rollout, window: Uuid) -> Change {
    let mut c = Change::default();
    let note = frozen_detail(window);
    if d.history
        .last()
        .is_none_or(|h| h.event != "FROZEN" || h.detail != note)
    {
        c.entries.push(entry("FROZEN", note));
    }
    c
}

/// Records a cell's acknowledgement `a` (stream version `version`). History
/// records a new stage, and what changed while the stage is served (not the
/// end of a finished rollout): cells acknowledge again when their exposure
/// changes and now and then regardless.
pub fn record_ack(d: &mut Rollout, a: &Ack, version: i64) -> Change {
    let mut c = Change::default();
    let prev = d.cells.get(&a.cell).cloned();
    let now = CellAck {
        stage: a.stage,
        state: Some(a.state),
        plan_version: ack_plan_version(version),
        exposed_tenants: a.exposed_tenants,
        excluded_tenants: a.excluded_tenants,
        tenants: a.tenants,
        at: Utc::now(),
    };
    let new_stage = prev.as_ref().is_none_or(|p| p.stage != a.stage);
    let changed = prev.as_ref().is_none_or(|p| {
        (p.state, p.exposed_tenants, p.excluded_tenants, p.tenants)
            != (
                now.state,
                now.exposed_tenants,
                now.excluded_tenants,
                now.tenants,
            )
    });
    d.cells.insert(a.cell.clone(), now);
    if new_stage || (changed && a.state.exposes()) {
        c.entries.push(entry(
            "CELL_ACKNOWLEDGED",
            format!(
                "{} serves stage {} ({}): {} of {} tenants exposed, {} excluded by version",
                a.cell,
                a.stage,
                a.state.as_str(),
                a.exposed_tenants,
                a.tenants,
                a.excluded_tenants
            ),
        ));
    }
    c
}

/// The targeting rules a completed rollout leaves: one per stage cohort,
/// serving the rollout's variant (they go ahead of the flag's own rules).
pub fn permanent_rules(p: &RolloutPlan) -> Vec<Rule> {
    p.stages
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
        .collect()
}
