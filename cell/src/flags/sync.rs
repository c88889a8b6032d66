//! What the cell receives of flags and rollouts, one synced kind
//! ([`crate::follow`]) of two streams: `global.flags` and `global.rollouts`,
//! applied as they come and resynced from the global API's `flagSnapshot`.
//! After each change the compiled snapshot is rebuilt (and after changes to
//! the cell's own tenants), and each rollout plan applied is acknowledged.

use std::time::Duration;

use sea_orm::{DatabaseTransaction, TransactionTrait};
use serde::Deserialize;
use shared::flags::report::{Ack, ack_entity};
use shared::flags::{self as f, FlagDef, RolloutPlan, store};
use shared::sync::{Event, outbox};
use shared::synced;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::follow::{self, Count, Kind};

/// Flags and rollout plans, as the cell follows them.
pub struct Flags;

/// Definitions to apply, from one stream's events or a resync.
#[derive(Default)]
pub struct Changes {
    flags: Vec<(FlagDef, i64)>,
    plans: Vec<(RolloutPlan, i64)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
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

#[async_trait::async_trait]
impl Kind for Flags {
    const NAME: &'static str = "flags";
    const STREAMS: &'static [&'static str] = &[f::STREAM, f::ROLLOUT_STREAM];
    const QUERY: &'static str = "{ flagSnapshot }";
    type Answer = Answer;
    type Batch = Changes;
    /// The rollout plans that were newer, to acknowledge.
    type Changed = Vec<(RolloutPlan, i64)>;

    fn decode(events: &[Event]) -> shared::Result<Changes> {
        let mut c = Changes::default();
        for e in events {
            let one = std::slice::from_ref(e);
            if e.stream == f::ROLLOUT_STREAM {
                c.plans.extend(follow::decode(one)?);
            } else {
                c.flags.extend(follow::decode(one)?);
            }
        }
        Ok(c)
    }

    fn from_answer(answer: Answer) -> Changes {
        let snap = answer.flag_snapshot;
        Changes {
            flags: snap.flags.into_iter().map(|s| (s.def, s.version)).collect(),
            plans: snap
                .rollouts
                .into_iter()
                .map(|r| (r.plan, r.version))
                .collect(),
        }
    }

    async fn apply(
        txn: &DatabaseTransaction,
        c: &Changes,
        repair: bool,
    ) -> shared::Result<(Count, Self::Changed)> {
        let flags = synced::apply_in(txn, &c.flags, repair).await?;
        let plans = synced::apply_in(txn, &c.plans, repair).await?;
        let count = Count {
            changed: flags.changed.len() + plans.changed.len(),
            repaired: flags.repaired + plans.repaired,
        };
        Ok((
            count,
            plans.changed.iter().map(|&i| c.plans[i].clone()).collect(),
        ))
    }

    /// Applied means in the database and in the compiled snapshot the hooks
    /// evaluate from.
    async fn rebuild(st: &State, plans: Self::Changed) -> shared::Result<()> {
        st.flags.rebuild(&st.db, st.cell_id.as_str()).await?;
        if !plans.is_empty() {
            let plans: Vec<(&RolloutPlan, i64)> = plans.iter().map(|(p, v)| (p, *v)).collect();
            acknowledge(st, &plans, true).await?;
        }
        Ok(())
    }
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

/// Follows flags and rollout plans, rebuilds the snapshot when the cell's
/// tenants change, and acknowledges rollouts again when their exposure does.
pub fn spawn(st: &State, cx: &follow::Context) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = follow::spawn::<Flags>(st, cx);
    tasks.push(tokio::spawn(follow_tenants(
        st.clone(),
        cx.shutdown.clone(),
    )));
    tasks.push(tokio::spawn(reacknowledge(st.clone(), cx.shutdown.clone())));
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
