//! What the cell receives from the global tier: the config schema registry,
//! applied from the stream as it comes, and resynced from the global API at
//! start, whenever the stream lost entries, and periodically (anti-entropy).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use shared::client::GraphqlClient;
use shared::configkeys::{self, KeyDef};
use shared::sync::{Event, Transport, consumer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::config::SyncSettings;

/// What the consumer reports in `/metrics`.
#[derive(Clone)]
pub struct Meters {
    /// From a change's commit at its origin to its application here, by stream.
    pub propagation: prometheus::HistogramVec,
    /// Events received, by outcome: `applied` (changed something) or
    /// `duplicate` (not newer than what was applied); and `repaired`: rows
    /// a resync rewrote because they had changed behind the cell's back.
    pub events: prometheus::IntCounterVec,
}

pub fn spawn(
    st: State,
    transport: Arc<dyn Transport>,
    global: Option<(GraphqlClient, String)>,
    meters: Meters,
    settings: SyncSettings,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let resync = Arc::new(Notify::new());
    let events = meters.events.clone();
    let handler: consumer::Handler = {
        let db = st.db.clone();
        Arc::new(move |events: Vec<Event>| {
            let db = db.clone();
            let meters = meters.clone();
            Box::pin(async move {
                let mut defs = Vec::with_capacity(events.len());
                for e in &events {
                    let def: KeyDef = serde_json::from_value(e.payload.clone())
                        .map_err(shared::Error::internal)?;
                    defs.push((def, e.version));
                }
                let changed =
                    configkeys::apply_paced(&db, &defs, settings.test_apply_delay).await?;
                let counts = meters
                    .events
                    .with_label_values(&[configkeys::STREAM, "applied"]);
                counts.inc_by(changed as u64);
                meters
                    .events
                    .with_label_values(&[configkeys::STREAM, "duplicate"])
                    .inc_by((defs.len() - changed) as u64);
                let propagation = meters.propagation.with_label_values(&[configkeys::STREAM]);
                let now = chrono::Utc::now();
                for e in &events {
                    let lag = (now - e.created_at).num_microseconds().unwrap_or(0);
                    propagation.observe(lag.max(0) as f64 / 1e6);
                }
                Ok(())
            })
        })
    };
    let on_gap: consumer::OnGap = {
        let resync = resync.clone();
        Arc::new(move |lost| {
            tracing::warn!(
                lost = lost.len(),
                "config stream may have lost entries; resyncing"
            );
            resync.notify_one();
        })
    };
    let cfg = consumer::Config {
        stream: configkeys::STREAM.into(),
        group: format!("cell.{}", st.cell_id),
        consumer: format!("{}:{}", st.cell_id, uuid::Uuid::now_v7()),
        batch: 100,
        block: Duration::from_secs(1),
        claim_idle: settings.claim_idle,
    };
    let mut tasks = vec![tokio::spawn(consumer::run(
        transport,
        cfg,
        handler,
        Some(on_gap),
        shutdown.clone(),
    ))];
    if let Some((client, url)) = global {
        tasks.push(tokio::spawn(resync_loop(
            st, client, url, resync, events, shutdown,
        )));
    }
    tasks
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    config_keys: Vec<SnapshotKey>,
}

/// A key as the global API answers it: its definition and version.
#[derive(Deserialize)]
struct SnapshotKey {
    #[serde(flatten)]
    def: KeyDef,
    version: i64,
}

/// Aliases give each field `KeyDef`'s own name, so the answer decodes into it.
const SNAPSHOT: &str = "{ configKeys { key value_type: type default scopes description min max allowed: enum pattern json_schema: jsonSchema deprecated version } }";

/// Applies the global tier's whole registry, repairing rows changed behind
/// the cell's back; returns how many keys changed and how many were repaired.
pub async fn resync(
    st: &State,
    client: &GraphqlClient,
    global_url: &str,
) -> shared::Result<(usize, usize)> {
    let snap: Snapshot = client
        .call("global tier", global_url, SNAPSHOT, serde_json::json!({}))
        .await?;
    let defs: Vec<(KeyDef, i64)> = snap
        .config_keys
        .into_iter()
        .map(|k| (k.def, k.version))
        .collect();
    configkeys::repair(&st.db, &defs).await
}

async fn resync_loop(
    st: State,
    client: GraphqlClient,
    url: String,
    wake: Arc<Notify>,
    events: prometheus::IntCounterVec,
    shutdown: CancellationToken,
) {
    let repairs = events.with_label_values(&[configkeys::STREAM, "repaired"]);
    loop {
        match resync(&st, &client, &url).await {
            Ok((0, 0)) => {}
            Ok((n, 0)) => {
                tracing::info!(changed = n, "config registry repaired from the global tier")
            }
            Ok((n, repaired)) => {
                repairs.inc_by(repaired as u64);
                tracing::warn!(
                    changed = n,
                    repaired,
                    "config keys differed from their applied version (changed behind the cell's back); rewritten from the global tier"
                )
            }
            Err(e) => {
                tracing::debug!(error = %e, "config resync skipped; the global tier is unreachable")
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(st.resync_every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
