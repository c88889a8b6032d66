//! How a cell follows what the global tier owns (config keys, metrics,
//! flags and rollout plans): one loop for every synced kind. Each kind's
//! streams are applied as they come (monotonic per entity version, see
//! `shared::synced`), and the whole kind is resynced from the global API at
//! start, whenever a stream lost entries, and every `resync_interval_secs`
//! (a minute by default); that resync also rewrites rows that no longer
//! match the version the cell applied (changed behind its back), counted as
//! `outcome="repaired"`. After anything changed, the kind rebuilds what it
//! keeps in memory.
//!
//! # Adding a synced kind
//!
//! With its definition made a `shared::synced::Definition` (see that
//! module), a cell follows it with one small file: a unit struct
//! implementing [`Kind`] (its name for logs, its streams, the resync query
//! and its answer, how events decode, the apply, usually
//! [`apply_defs`], and what to rebuild after a change), started from
//! `lib.rs` with `follow::spawn::<TheKind>(&state, &follow)`.
//! `configkeys.rs` is the smallest example; `flags/sync.rs` follows two
//! streams as one kind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{DatabaseTransaction, TransactionTrait};
use serde::de::DeserializeOwned;
use shared::client::GraphqlClient;
use shared::sync::{Event, applied, consumer};
use shared::synced::{self, Definition};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::config::SyncSettings;

/// What the consumers report in `/metrics`.
#[derive(Clone)]
pub struct Meters {
    /// From a change's commit at its origin to its application here, by stream.
    pub propagation: prometheus::HistogramVec,
    /// Events received, by stream and outcome: `applied` (changed
    /// something) or `duplicate` (not newer than what was applied); and
    /// `repaired`: rows a resync rewrote because they had changed behind
    /// the cell's back.
    pub events: prometheus::IntCounterVec,
}

/// What the loops of every kind share.
#[derive(Clone)]
pub struct Context {
    /// The global tier's API (client and URL), for resyncs; without it a
    /// kind only follows its streams.
    pub global: Option<(GraphqlClient, String)>,
    pub meters: Meters,
    pub settings: SyncSettings,
    pub shutdown: CancellationToken,
}

/// How many definitions an apply wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Newer than what the cell had.
    pub changed: usize,
    /// Rewritten by a resync: they differed from their applied version.
    pub repaired: usize,
}

/// A synced kind, as the cell follows it.
#[async_trait::async_trait]
pub trait Kind: Send + Sync + 'static {
    /// How logs name it.
    const NAME: &'static str;
    /// The streams it follows; the first labels its `repaired` count.
    const STREAMS: &'static [&'static str];
    /// The global API query answering all of it, with versions.
    const QUERY: &'static str;
    /// The `data` of [`Kind::QUERY`]'s answer.
    type Answer: DeserializeOwned + Send;
    /// Definitions to apply: one stream's events, or a whole answer.
    type Batch: Send + Sync;
    /// What [`Kind::rebuild`] needs to know of an apply.
    type Changed: Send + Default;

    /// Decodes events of one of [`Kind::STREAMS`].
    fn decode(events: &[Event]) -> shared::Result<Self::Batch>;
    fn from_answer(answer: Self::Answer) -> Self::Batch;
    /// Applies `batch` in `txn` (see `shared::synced::apply_in`), with
    /// `repair` for a resync.
    async fn apply(
        txn: &DatabaseTransaction,
        batch: &Self::Batch,
        repair: bool,
    ) -> shared::Result<(Count, Self::Changed)>;
    /// Brings what the cell keeps in memory up to date after a change
    /// (or after an earlier rebuild failed).
    async fn rebuild(st: &State, changed: Self::Changed) -> shared::Result<()>;
}

/// Decodes each event's payload as a `D`, with its version.
pub fn decode<D: DeserializeOwned>(events: &[Event]) -> shared::Result<Vec<(D, i64)>> {
    events
        .iter()
        .map(|e| {
            serde_json::from_value(e.payload.clone())
                .map(|d| (d, e.version))
                .map_err(shared::Error::internal)
        })
        .collect()
}

/// The apply of a kind of one definition type.
pub async fn apply_defs<D: Definition>(
    txn: &DatabaseTransaction,
    defs: &[(D, i64)],
    repair: bool,
) -> shared::Result<(Count, ())> {
    let a = synced::apply_in(txn, defs, repair).await?;
    Ok((
        Count {
            changed: a.changed.len(),
            repaired: a.repaired,
        },
        (),
    ))
}

/// One kind's state shared by its consumers and its resync loop.
struct Follower {
    st: State,
    /// A rebuild failed after its apply committed: the next apply rebuilds
    /// even if it changes nothing (a redelivery of the same events would not).
    dirty: AtomicBool,
    apply_delay: Duration,
}

impl Follower {
    /// Applies `batch` in one transaction and rebuilds if anything changed.
    /// A stream's apply commits without waiting for the WAL flush (a
    /// replica's copy: resync and anti-entropy apply again what a crash
    /// takes back) and pauses `apply_delay` before its commit (fault
    /// injection for tests that kill a consumer mid-batch).
    async fn apply<K: Kind>(&self, batch: &K::Batch, repair: bool) -> shared::Result<Count> {
        let txn = self.st.db.begin().await?;
        if !repair {
            applied::relaxed_commit(&txn).await?;
        }
        let (count, changed) = K::apply(&txn, batch, repair).await?;
        if !repair && !self.apply_delay.is_zero() {
            tokio::time::sleep(self.apply_delay).await;
        }
        txn.commit().await?;
        if count.changed + count.repaired > 0 || self.dirty.load(Ordering::Acquire) {
            self.dirty.store(true, Ordering::Release);
            K::rebuild(&self.st, changed).await?;
            self.dirty.store(false, Ordering::Release);
        }
        Ok(count)
    }
}

/// Starts a consumer of each of the kind's streams and, when the global
/// tier is known, its resync loop.
pub fn spawn<K: Kind>(st: &State, cx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let follower = Arc::new(Follower {
        st: st.clone(),
        dirty: AtomicBool::new(false),
        apply_delay: cx.settings.test_apply_delay,
    });
    let resync = Arc::new(Notify::new());
    let handler: consumer::Handler = consumer::measured(
        {
            let (follower, events) = (follower.clone(), cx.meters.events.clone());
            Arc::new(move |batch: Vec<Event>| {
                let (follower, events) = (follower.clone(), events.clone());
                Box::pin(async move {
                    let Some(stream) = batch.first().map(|e| e.stream.clone()) else {
                        return Ok(());
                    };
                    let count = follower.apply::<K>(&K::decode(&batch)?, false).await?;
                    events
                        .with_label_values(&[stream.as_str(), "applied"])
                        .inc_by(count.changed as u64);
                    events
                        .with_label_values(&[stream.as_str(), "duplicate"])
                        .inc_by(batch.len().saturating_sub(count.changed) as u64);
                    Ok(())
                })
            })
        },
        cx.meters.propagation.clone(),
    );
    let on_gap: consumer::OnGap = {
        let resync = resync.clone();
        Arc::new(move |lost| {
            tracing::warn!(
                kind = K::NAME,
                lost = lost.len(),
                "a stream may have lost entries; resyncing"
            );
            resync.notify_one();
        })
    };
    let mut tasks = Vec::new();
    for stream in K::STREAMS {
        let cfg = consumer::Config {
            stream: (*stream).into(),
            group: format!("cell.{}", st.cell_id),
            consumer: format!("{}:{}", st.cell_id, uuid::Uuid::now_v7()),
            batch: 100,
            block: Duration::from_secs(1),
            claim_idle: cx.settings.claim_idle,
        };
        tasks.push(tokio::spawn(consumer::run(
            st.transport.clone(),
            cfg,
            handler.clone(),
            Some(on_gap.clone()),
            cx.shutdown.clone(),
        )));
    }
    if let Some((client, url)) = cx.global.clone() {
        let repairs = cx
            .meters
            .events
            .with_label_values(&[K::STREAMS[0], "repaired"]);
        tasks.push(tokio::spawn(resync_loop::<K>(
            follower,
            client,
            url,
            resync,
            repairs,
            cx.shutdown.clone(),
        )));
    }
    tasks
}

/// Applies the global tier's whole kind, repairing rows changed behind
/// the cell's back.
async fn resync<K: Kind>(f: &Follower, client: &GraphqlClient, url: &str) -> shared::Result<Count> {
    let answer: K::Answer = client
        .call("global tier", url, K::QUERY, serde_json::json!({}))
        .await?;
    f.apply::<K>(&K::from_answer(answer), true).await
}

async fn resync_loop<K: Kind>(
    f: Arc<Follower>,
    client: GraphqlClient,
    url: String,
    wake: Arc<Notify>,
    repairs: prometheus::IntCounter,
    shutdown: CancellationToken,
) {
    loop {
        match resync::<K>(&f, &client, &url).await {
            Ok(Count {
                changed: 0,
                repaired: 0,
            }) => {}
            Ok(Count {
                changed,
                repaired: 0,
            }) => {
                tracing::info!(kind = K::NAME, changed, "repaired from the global tier")
            }
            Ok(Count { changed, repaired }) => {
                repairs.inc_by(repaired as u64);
                tracing::warn!(
                    kind = K::NAME,
                    changed,
                    repaired,
                    "rows differed from their applied version (changed behind the cell's back); rewritten from the global tier"
                )
            }
            Err(e) => {
                tracing::debug!(kind = K::NAME, error = %e, "resync skipped; the global tier is unreachable")
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(f.st.resync_every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
