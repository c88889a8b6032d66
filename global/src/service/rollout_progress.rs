//! Drives rollouts forward: a loop that judges each running stage (cell
//! acknowledgements, soak, health gates) and consumers of what cells report
//! (`cell.rollout-acks`, `cell.signals`).

use std::sync::Arc;
use std::time::Duration;

use shared::Result;
use shared::flags::report::{Ack, Signals, ack_entity};
use shared::flags::{self as f, RolloutState};
use shared::sync::{Event, Transport, consumer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::rollouts::{self, Change, frozen_note, judge};
use crate::State;

const TICK: Duration = Duration::from_millis(200);

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

pub async fn on_ack(st: &State, a: &Ack, version: i64) -> Result<()> {
    let entity = ack_entity(a.rollout_id, &a.cell);
    let res = rollouts::modify(st, a.rollout_id, Some((&entity, version)), |d| {
        Ok(rollouts::record_ack(d, a, version))
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
            .fold((0, 0), |(a, b), x| (a + x.requests, b + x.errors));
        if req == 0 && err == 0 {
            continue;
        }
        let entity = format!("signals:{}:{}", s.cell, p.id);
        rollouts::modify(st, p.id, Some((&entity, version)), |d| {
            d.health.requests += req;
            d.health.errors += err;
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
