//! What the cell receives of flags and rollouts: applied from the
//! `global.flags` and `global.rollouts` streams as they come (monotonic per
//! entity version), resynced from the global API at start, after a gap and
//! every `resync_interval_secs` (a minute by default), and the compiled snapshot rebuilt after each change,
//! including changes to the cell's own tenants.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::TransactionTrait;
use serde::Deserialize;
use shared::client::GraphqlClient;
use shared::flags::report::{Ack, ack_entity};
use shared::flags::{self as f, FlagDef, RolloutPlan, store};
use shared::sync::{Event, Transport, applied, consumer, outbox};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::State;

/// One definition to apply, from the stream or a resync.
pub enum Change {
    Flag(FlagDef, i64),
    Rollout(RolloutPlan, i64),
}

impl Change {
    fn decode(e: &Event) -> shared::Result<Self> {
        let bad = shared::Error::internal;
        Ok(if e.stream == f::ROLLOUT_STREAM {
            Change::Rollout(
                serde_json::from_value(e.payload.clone()).map_err(bad)?,
                e.version,
            )
        } else {
            Change::Flag(
                serde_json::from_value(e.payload.clone()).map_err(bad)?,
                e.version,
            )
        })
    }
}

/// Applies what is newer than what the cell has, in one transaction, then
/// rebuilds the snapshot. With `repair` (a resync of the global tier's
/// whole state) it also rewrites a flag or rollout plan whose row differs
/// from the version the cell applied: changed or deleted behind the cell's
/// back. Returns how many changes were newer and how many rows were
/// repaired.
pub async fn apply(st: &State, changes: &[Change], repair: bool) -> shared::Result<(usize, usize)> {
    let txn = st.db.begin().await?;
    let (mut n, mut repaired) = (0, 0);
    let mut plans = Vec::new();
    let held: std::collections::HashMap<uuid::Uuid, (RolloutPlan, i64)> = if repair {
        store::plans(&txn)
            .await?
            .into_iter()
            .map(|(p, v)| (p.id, (p, v)))
            .collect()
    } else {
        Default::default()
    };
    for c in changes {
        match c {
            Change::Flag(def, v) => {
                let entity = f::flag_entity(&def.key);
                if applied::advance(&txn, &entity, *v).await? {
                    store::put(&txn, def, *v).await?;
                    n += 1;
                } else if repair
                    && applied::current(&txn, &entity).await? == Some(*v)
                    && store::get(&txn, &def.key)
                        .await?
                        .is_none_or(|r| r.flag.version != *v || &r.flag.def != def)
                {
                    store::put(&txn, def, *v).await?;
                    repaired += 1;
                }
            }
            Change::Rollout(p, v) => {
                let entity = f::rollout_entity(p.id);
                if applied::advance(&txn, &entity, *v).await? {
                    store::put_plan(&txn, p, *v).await?;
                    plans.push((p, *v));
                    n += 1;
                } else if repair
                    && applied::current(&txn, &entity).await? == Some(*v)
                    && held.get(&p.id).is_none_or(|(h, hv)| hv != v || h != p)
                {
                    store::put_plan(&txn, p, *v).await?;
                    repaired += 1;
                }
            }
        }
    }
    txn.commit().await?;
    if n + repaired > 0 {
        st.flags.rebuild(&st.db, st.cell_id.as_str()).await?;
    }
    if !plans.is_empty() {
        acknowledge(st, &plans, true).await?;
    }
    Ok((n, repaired))
}

/// What the cell last told the global tier of one rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    pub plan_version: i64,
    pub stage: usize,
    pub state: f::RolloutState,
    pub exposed: i64,
    pub excluded: i64,
    pub tenants: i64,
    /// The event version it went out with.
    pub version: i64,
    pub at: std::time::Instant,
}

/// How often an unfinished rollout is acknowledged again even when nothing
/// changed, so the global tier's figures converge after a lost report.
const REACK_EVERY: Duration = Duration::from_secs(30);

/// Tells the global tier which stage of each rollout this cell now serves
/// and how many of its tenants that exposes: every plan it just applied
/// (`force`), and otherwise only what changed since the last report or is
/// older than [`REACK_EVERY`].
async fn acknowledge(st: &State, plans: &[(&RolloutPlan, i64)], force: bool) -> shared::Result<()> {
    let engine = st.flags.engine();
    let tenants = engine.tenant_ids().count() as i64;
    let mut events = Vec::new();
    let mut sent = Vec::new();
    {
        let acked = st.flags.acked.lock().unwrap_or_else(|p| p.into_inner());
        for (p, v) in plans {
            let (exposed, excluded) = engine.rollout_exposure(&p.flag_key, &p.environment);
            let last = acked.get(&p.id);
            let now = Acked {
                plan_version: *v,
                stage: p.stage,
                state: p.state,
                exposed: exposed as i64,
                excluded: excluded as i64,
                tenants,
                version: shared::flags::report::ack_version(*v, last.map(|a| a.version)),
                at: std::time::Instant::now(),
            };
            let changed = last.is_none_or(|a| {
                (
                    a.plan_version,
                    a.stage,
                    a.state,
                    a.exposed,
                    a.excluded,
                    a.tenants,
                ) != (
                    now.plan_version,
                    now.stage,
                    now.state,
                    now.exposed,
                    now.excluded,
                    now.tenants,
                )
            });
            let due = last.is_none_or(|a| a.at.elapsed() >= REACK_EVERY);
            if !(force || changed || due) {
                continue;
            }
            let ack = Ack {
                rollout_id: p.id,
                cell: st.cell_id.to_string(),
                stage: p.stage,
                state: p.state,
                exposed_tenants: now.exposed,
                excluded_tenants: now.excluded,
                tenants,
            };
            let payload = serde_json::to_value(&ack).map_err(shared::Error::internal)?;
            events.push(Event::new(
                f::ACK_STREAM,
                &ack_entity(p.id, st.cell_id.as_str()),
                now.version,
                st.cell_id.as_str(),
                payload,
            ));
            sent.push((p.id, now));
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let txn = st.db.begin().await?;
    for e in &events {
        outbox::enqueue(&txn, e).await?;
    }
    txn.commit().await?;
    st.relay.nudge();
    let mut acked = st.flags.acked.lock().unwrap_or_else(|p| p.into_inner());
    for (id, a) in sent {
        acked.insert(id, a);
    }
    Ok(())
}

/// Level-triggered acknowledgements: after every snapshot rebuild (a plan,
/// flag or tenant of this cell changed) and every few seconds, each
/// unfinished rollout whose exposure here differs from the last report is
/// acknowledged again, so the global tier's exposure figures converge.
async fn reacknowledge(st: State, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = st.flags.rebuilt.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.cancelled() => return,
        }
        let plans = match store::plans(&st.db).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "rollout plans unreadable; acknowledgements wait");
                continue;
            }
        };
        let open: Vec<(&RolloutPlan, i64)> = plans
            .iter()
            .filter(|(p, _)| !p.state.finished())
            .map(|(p, v)| (p, *v))
            .collect();
        if let Err(e) = acknowledge(&st, &open, false).await {
            tracing::warn!(error = %e, "rollout acknowledgement failed; retried at the next pass");
        }
    }
}

pub fn spawn(
    st: State,
    transport: Arc<dyn Transport>,
    global: Option<(GraphqlClient, String)>,
    propagation: prometheus::HistogramVec,
    events: prometheus::IntCounterVec,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let resync = Arc::new(Notify::new());
    // Applied means in the database and in the compiled snapshot the hooks
    // evaluate from.
    let handler: consumer::Handler = consumer::measured(
        {
            let st = st.clone();
            Arc::new(move |events: Vec<Event>| {
                let st = st.clone();
                Box::pin(async move {
                    let changes = events
                        .iter()
                        .map(Change::decode)
                        .collect::<shared::Result<Vec<_>>>()?;
                    apply(&st, &changes, false).await.map(|_| ())
                })
            })
        },
        propagation,
    );
    let on_gap: consumer::OnGap = {
        let resync = resync.clone();
        Arc::new(move |_| resync.notify_one())
    };
    let mut tasks = Vec::new();
    for stream in [f::STREAM, f::ROLLOUT_STREAM] {
        let cfg = consumer::Config {
            stream: stream.into(),
            group: format!("cell.{}", st.cell_id),
            consumer: format!("{}:{}", st.cell_id, uuid::Uuid::now_v7()),
            batch: 100,
            block: Duration::from_secs(1),
            claim_idle: Duration::from_secs(30),
        };
        tasks.push(tokio::spawn(consumer::run(
            transport.clone(),
            cfg,
            handler.clone(),
            Some(on_gap.clone()),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(follow_tenants(st.clone(), shutdown.clone())));
    tasks.push(tokio::spawn(reacknowledge(st.clone(), shutdown.clone())));
    if let Some((client, url)) = global {
        let repairs = events.with_label_values(&[f::STREAM, "repaired"]);
        tasks.push(tokio::spawn(resync_loop(
            st, client, url, resync, repairs, shutdown,
        )));
    }
    tasks
}

/// Rebuilds the snapshot when the cell's tenants change.
async fn follow_tenants(st: State, shutdown: CancellationToken) {
    let mut rx = st.events.subscribe();
    loop {
        tokio::select! {
            r = rx.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
                // Coalesce a burst of changes into one rebuild.
                while rx.try_recv().is_ok() {}
                if let Err(e) = st.flags.rebuild(&st.db, st.cell_id.as_str()).await {
                    tracing::warn!(error = %e, "flag snapshot rebuild failed");
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    flag_snapshot: Remote,
}

#[derive(Deserialize)]
struct Remote {
    flags: Vec<f::StoredFlag>,
    rollouts: Vec<RemotePlan>,
}

#[derive(Deserialize)]
struct RemotePlan {
    plan: RolloutPlan,
    version: i64,
}

/// Applies the global tier's flags and rollout plans, repairing flags
/// changed behind the cell's back; returns how many changed and how many
/// were repaired.
pub async fn resync(
    st: &State,
    client: &GraphqlClient,
    url: &str,
) -> shared::Result<(usize, usize)> {
    let a: Answer = client
        .call(
            "global tier",
            url,
            "{ flagSnapshot }",
            serde_json::json!({}),
        )
        .await?;
    let mut changes: Vec<Change> = a
        .flag_snapshot
        .flags
        .into_iter()
        .map(|s| Change::Flag(s.def, s.version))
        .collect();
    changes.extend(
        a.flag_snapshot
            .rollouts
            .into_iter()
            .map(|r| Change::Rollout(r.plan, r.version)),
    );
    apply(st, &changes, true).await
}

async fn resync_loop(
    st: State,
    client: GraphqlClient,
    url: String,
    wake: Arc<Notify>,
    repairs: prometheus::IntCounter,
    shutdown: CancellationToken,
) {
    loop {
        match resync(&st, &client, &url).await {
            Ok((0, 0)) => {}
            Ok((n, 0)) => tracing::info!(changed = n, "flags repaired from the global tier"),
            Ok((n, repaired)) => {
                repairs.inc_by(repaired as u64);
                tracing::warn!(
                    changed = n,
                    repaired,
                    "flags differed from their applied version (changed behind the cell's back); rewritten from the global tier"
                )
            }
            Err(e) => {
                tracing::debug!(error = %e, "flag resync skipped; the global tier is unreachable")
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(st.resync_every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
