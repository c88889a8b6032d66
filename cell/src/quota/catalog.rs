//! The metric catalog in the cell: applied from `global.metrics` as it
//! comes, and resynced from the global API at start, whenever the stream
//! lost entries, and every `resync_interval_secs` (a minute by default).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use shared::client::GraphqlClient;
use shared::quota::api::MetricView;
use shared::quota::{self, MetricDef, store};
use shared::sync::{Event, consumer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::State;

/// Starts the catalog consumer (and the resync loop when a global tier is set).
pub fn spawn(
    st: State,
    global: Option<(GraphqlClient, String)>,
    claim_idle: Duration,
    events: prometheus::IntCounterVec,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let resync = Arc::new(Notify::new());
    let handler: consumer::Handler = {
        let st = st.clone();
        Arc::new(move |events: Vec<Event>| {
            let st = st.clone();
            Box::pin(async move {
                let mut defs = Vec::with_capacity(events.len());
                for e in &events {
                    let def: MetricDef = serde_json::from_value(e.payload.clone())
                        .map_err(shared::Error::internal)?;
                    defs.push((def, e.version));
                }
                if store::apply(&st.db, &defs).await? > 0 {
                    st.quota.reload_catalog().await?;
                }
                Ok(())
            })
        })
    };
    let on_gap: consumer::OnGap = {
        let resync = resync.clone();
        Arc::new(move |_| resync.notify_one())
    };
    let cfg = consumer::Config {
        stream: quota::STREAM.into(),
        group: format!("cell.{}", st.cell_id),
        consumer: format!("{}:{}", st.cell_id, uuid::Uuid::now_v7()),
        batch: 100,
        block: Duration::from_secs(1),
        claim_idle,
    };
    let mut tasks = vec![tokio::spawn(consumer::run(
        st.transport.clone(),
        cfg,
        handler,
        Some(on_gap),
        shutdown.clone(),
    ))];
    if let Some((client, url)) = global {
        let repairs = events.with_label_values(&[quota::STREAM, "repaired"]);
        tasks.push(tokio::spawn(resync_loop(
            st, client, url, resync, repairs, shutdown,
        )));
    }
    tasks
}

#[derive(Deserialize)]
struct Snapshot {
    metrics: Vec<MetricView>,
}

const SNAPSHOT: &str = "{ metrics { name kind unit description failMode version } }";

/// Applies the global tier's whole catalog, repairing metrics changed
/// behind the cell's back; returns how many changed and how many were
/// repaired.
pub async fn resync(
    st: &State,
    client: &GraphqlClient,
    global_url: &str,
) -> shared::Result<(usize, usize)> {
    let snap: Snapshot = client
        .call("global tier", global_url, SNAPSHOT, serde_json::json!({}))
        .await?;
    let defs: Vec<(MetricDef, i64)> = snap
        .metrics
        .into_iter()
        .map(|m| {
            (
                MetricDef {
                    name: m.name,
                    kind: m.kind,
                    unit: m.unit,
                    description: m.description,
                    fail_mode: m.fail_mode,
                },
                m.version,
            )
        })
        .collect();
    let n = store::repair(&st.db, &defs).await?;
    st.quota.reload_catalog().await?;
    Ok(n)
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
            Ok((_, 0)) => {}
            Ok((changed, repaired)) => {
                repairs.inc_by(repaired as u64);
                tracing::warn!(
                    changed,
                    repaired,
                    "metrics differed from their applied version (changed behind the cell's back); rewritten from the global tier"
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "metric catalog resync skipped; the global tier is unreachable")
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(st.resync_every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
