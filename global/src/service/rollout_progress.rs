//! Drives rollouts forward: a loop that judges each running stage (cell
//! acknowledgements, soak, health gates) and consumers of what cells report
//! (`cell.rollout-acks`, `cell.signals`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shared::Result;
use shared::flags::report::{Ack, Signals, ack_entity};
use shared::flags::{self as f, RolloutState};
use shared::sync::{Event, Transport, consumer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::rollouts::{self, CellAck, Change, Rollout, Stuck, entry, next_stage, roll_back};
use crate::State;

const TICK: Duration = Duration::from_millis(200);

/// How a stuck reason for missing acknowledgements starts.
const ACK_STUCK: &str = "stage";

/// One judgement of a running or stuck rollout.
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

async fn tick(st: &State) -> Result<()> {
    let cells: Vec<String> = st.cells.all().into_iter().map(|c| c.id).collect();
    for r in rollouts::active(st).await? {
        let frozen = rollouts::frozen_by(st, &r.doc).await?;
        rollouts::modify(st, r.doc.plan.id, None, |d| {
            if d.plan.state == RolloutState::Pending {
                return Ok(match frozen {
                    Some(window) if rollouts::due(d) => frozen_note(d, window),
                    Some(_) => Change::default(),
                    None => rollouts::begin_if_due(d, &cells),
                });
            }
            if !matches!(d.plan.state, RolloutState::Running | RolloutState::Stuck) {
                return Ok(Change::default());
            }
            let before = d.clone();
            let c = judge(d, &cells);
            match frozen {
                Some(window) if d.plan.stage != before.plan.stage => {
                    *d = before;
                    Ok(frozen_note(d, window))
                }
                _ => Ok(c),
            }
        })
        .await?;
    }
    Ok(())
}

/// A history entry saying a maintenance window holds the rollout, unless
/// the last entry already says so.
fn frozen_note(d: &Rollout, window: Uuid) -> Change {
    let mut c = Change::default();
    let note = rollouts::frozen_detail(window);
    if d.history
        .last()
        .is_none_or(|h| h.event != "FROZEN" || h.detail != note)
    {
        c.entries.push(entry("FROZEN", note));
    }
    c
}

pub async fn on_ack(st: &State, a: &Ack, version: i64) -> Result<()> {
    let entity = ack_entity(a.rollout_id, &a.cell);
    let res = rollouts::modify(st, a.rollout_id, Some((&entity, version)), |d| {
        let mut c = Change::default();
        let prev = d.cells.get(&a.cell).cloned();
        let now = CellAck {
            stage: a.stage,
            state: Some(a.state),
            plan_version: f::report::ack_plan_version(version),
            exposed_tenants: a.exposed_tenants,
            excluded_tenants: a.excluded_tenants,
            tenants: a.tenants,
            at: Utc::now(),
        };
        // Cells acknowledge again when their exposure changes and now and
        // then regardless: history records a new stage, and what changed
        // while the stage is served (not the end of a finished rollout).
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
        Ok(c)
    })
    .await;
    match res {
        Err(shared::Error::NotFound(_)) => Ok(()),
        other => other.map(|_| ()),
    }
}

pub async fn on_signals(st: &State, s: &Signals, version: i64) -> Result<()> {
    let active = rollouts::list(st, None).await?;
    for r in active
        .into_iter()
        .filter(|r| r.doc.plan.environment == s.environment && !r.doc.plan.state.finished())
    {
        let p = &r.doc.plan;
        let (req, err) = s
            .signals
            .iter()
            .filter(|x| x.flag_key == p.flag_key && x.variant == p.variant)
            .fold((0i64, 0i64), |(a, b), x| {
                (a.saturating_add(x.requests), b.saturating_add(x.errors))
            });
        if req == 0 && err == 0 {
            continue;
        }
        let entity = format!("signals:{}:{}", s.cell, p.id);
        rollouts::modify(st, p.id, Some((&entity, version)), |d| {
            d.health.requests = d.health.requests.saturating_add(req);
            d.health.errors = d.health.errors.saturating_add(err);
            Ok(Change::default())
        })
        .await?;
    }
    Ok(())
}

/// Starts the progress loop and the consumers of what cells report.
pub fn spawn(
    st: State,
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let handler: consumer::Handler = {
        let st = st.clone();
        Arc::new(move |events: Vec<Event>| {
            let st = st.clone();
            Box::pin(async move {
                for e in events {
                    let bad = shared::Error::internal;
                    if e.stream == f::ACK_STREAM {
                        let a: Ack = serde_json::from_value(e.payload).map_err(bad)?;
                        on_ack(&st, &a, e.version).await?;
                    } else {
                        let s: Signals = serde_json::from_value(e.payload).map_err(bad)?;
                        on_signals(&st, &s, e.version).await?;
                    }
                }
                Ok(())
            })
        })
    };
    let mut tasks = Vec::new();
    for stream in [f::ACK_STREAM, f::SIGNAL_STREAM] {
        let cfg = consumer::Config {
            stream: stream.into(),
            group: "global".into(),
            consumer: format!("global:{}", Uuid::now_v7()),
            batch: 100,
            block: Duration::from_secs(1),
            claim_idle: Duration::from_secs(30),
        };
        tasks.push(tokio::spawn(consumer::run(
            transport.clone(),
            cfg,
            handler.clone(),
            None,
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(async move {
        loop {
            if let Err(e) = tick(&st).await {
                tracing::warn!(error = %e, "rollout progress pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }));
    tasks
}
