//! Judging a running stage: every target cell acknowledged (else STUCK past
//! the deadline), the health gates (a failed one rolls back), the soak, and
//! the minimum of requests to judge by; then the next stage.

use chrono::Utc;
use shared::flags::RolloutState;

use super::stages::{next_stage, roll_back};
use super::{Change, Rollout, Stuck, entry};

/// How a stuck reason for missing acknowledgements starts.
const ACK_STUCK: &str = "stage";

/// One judgement of a running or stuck rollout; `cells` are the cells the
/// next stage targets.
pub fn judge(d: &mut Rollout, cells: &[String]) -> Change {
    let mut c = Change::default();
    let now = Utc::now();
    let stage = d.plan.stage;
    let elapsed = (now - d.stage_started_at).num_milliseconds();
    let missing: Vec<String> = d
        .target_cells
        .iter()
        .filter(|id| {
            d.cells
                .get(*id)
                .is_none_or(|a| a.stage < stage || a.state == Some(RolloutState::Pending))
        })
        .cloned()
        .collect();
    let stuck = |d: &mut Rollout, c: &mut Change, reason: String, cells: Vec<String>| {
        let s = Stuck { reason, cells };
        if d.plan.state != RolloutState::Stuck || d.stuck.as_ref() != Some(&s) {
            c.entries.push(entry(
                "STUCK",
                format!("{} ({})", s.reason, s.cells.join(", ")),
            ));
            c.plan |= d.plan.state != RolloutState::Stuck;
            d.plan.state = RolloutState::Stuck;
            d.stuck = Some(s);
        }
    };
    if !missing.is_empty() {
        if elapsed > d.ack_deadline_seconds * 1000 {
            let reason = format!(
                "{ACK_STUCK} {stage} not acknowledged within {}s",
                d.ack_deadline_seconds
            );
            stuck(d, &mut c, reason, missing);
        }
        return c;
    }
    if d.plan.state == RolloutState::Stuck
        && d.stuck
            .as_ref()
            .is_some_and(|s| s.reason.starts_with(ACK_STUCK))
    {
        d.plan.state = RolloutState::Running;
        d.stuck = None;
        c.plan = true;
        c.entries
            .push(entry("RESUMED", "every cell acknowledged".into()));
    }
    let gates = d.plan.stages[stage].gates.clone();
    let h = d.health.clone();
    if let Some(max) = gates.max_error_rate
        && h.requests > 0
        && h.requests >= gates.min_requests.unwrap_or(1)
    {
        let rate = h.errors as f64 / h.requests as f64;
        if rate > max {
            c.entries.push(entry(
                "GATE_FAILED",
                format!("error rate {rate:.4} > {max} over {} requests", h.requests),
            ));
            roll_back(d, "a health gate failed".into(), &mut c);
            return c;
        }
    }
    let soaked = elapsed >= d.plan.stages[stage].soak_seconds * 1000;
    if !soaked {
        if d.plan.state == RolloutState::Stuck {
            d.plan.state = RolloutState::Running;
            d.stuck = None;
            c.plan = true;
            c.entries
                .push(entry("RESUMED", "every cell acknowledged".into()));
        }
        return c;
    }
    if let Some(min) = gates.min_requests
        && h.requests < min
    {
        let reason = format!(
            "gates cannot be judged: {} of {min} requests signalled",
            h.requests
        );
        stuck(d, &mut c, reason, d.target_cells.clone());
        return c;
    }
    c.entries.push(entry(
        "GATE_PASSED",
        format!(
            "stage {stage}: {} requests, {} errors",
            h.requests, h.errors
        ),
    ));
    c.entries
        .push(entry("ADVANCED", format!("after {}s soak", elapsed / 1000)));
    next_stage(d, cells, &mut c);
    c
}
