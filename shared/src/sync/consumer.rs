//! A consumer-group member: takes over entries dead members left pending,
//! reads new ones, applies each, and acks only what was applied.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{Delivery, Event, Transport};
use crate::Result;

/// Which stream a consumer reads, as whom, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The stream read, e.g. `global.directory`.
    pub stream: String,
    /// The consumer group: every group gets every entry.
    pub group: String,
    /// This member's name in the group, unique among its members.
    pub consumer: String,
    /// At most this many entries per read, applied as one batch.
    pub batch: usize,
    /// How long a read waits for new entries.
    pub block: Duration,
    /// Entries pending this long are taken over (their consumer is presumed dead).
    pub claim_idle: Duration,
}

/// Applies a batch of events, ideally in one transaction; an error leaves
/// the whole batch pending, to be delivered again (applying is idempotent).
pub type Handler = Arc<dyn Fn(Vec<Event>) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// Wraps `handler` so that every event it applied is observed in
/// `propagation` (labelled `stream`): the time from the change's commit at
/// its origin (`Event::created_at`) to its application here.
pub fn measured(handler: Handler, propagation: prometheus::HistogramVec) -> Handler {
    Arc::new(move |events: Vec<Event>| {
        let handler = handler.clone();
        let propagation = propagation.clone();
        Box::pin(async move {
            let stamps: Vec<_> = events
                .iter()
                .map(|e| (e.stream.clone(), e.created_at))
                .collect();
            handler(events).await?;
            let now = chrono::Utc::now();
            for (stream, at) in stamps {
                let lag = (now - at).num_microseconds().unwrap_or(0).max(0);
                propagation
                    .with_label_values(&[stream.as_str()])
                    .observe(lag as f64 / 1e6);
            }
            Ok(())
        })
    })
}

/// Told when entries were trimmed away before they were applied: the
/// consumer must resync from a snapshot.
pub type OnGap = Arc<dyn Fn(Vec<String>) + Send + Sync>;

/// One pass: reclaim stale entries, read new ones, apply and ack. Returns
/// how many events were applied.
pub async fn poll_once(
    t: &dyn Transport,
    cfg: &Config,
    handler: &Handler,
    on_gap: Option<&OnGap>,
) -> Result<usize> {
    poll(t, cfg, handler, on_gap, true).await
}

async fn poll(
    t: &dyn Transport,
    cfg: &Config,
    handler: &Handler,
    on_gap: Option<&OnGap>,
    claim: bool,
) -> Result<usize> {
    let claimed = if claim {
        t.claim_stale(
            &cfg.stream,
            &cfg.group,
            &cfg.consumer,
            cfg.claim_idle,
            cfg.batch,
        )
        .await?
    } else {
        super::Claimed::default()
    };
    if !claimed.trimmed.is_empty() {
        t.ack(&cfg.stream, &cfg.group, &claimed.trimmed).await?;
        if let Some(f) = on_gap {
            f(claimed.trimmed);
        }
    }
    let mut deliveries = claimed.deliveries;
    if deliveries.is_empty() {
        deliveries = t
            .read(&cfg.stream, &cfg.group, &cfg.consumer, cfg.batch, cfg.block)
            .await?;
    }
    apply(t, cfg, handler, deliveries).await
}

async fn apply(
    t: &dyn Transport,
    cfg: &Config,
    handler: &Handler,
    deliveries: Vec<Delivery>,
) -> Result<usize> {
    if deliveries.is_empty() {
        return Ok(0);
    }
    let (positions, events): (Vec<String>, Vec<Event>) = deliveries
        .into_iter()
        .map(|d| (d.position, d.event))
        .unzip();
    // The apply span continues the trace of the change (W3C context in the
    // event), so a trace runs from the write, through the stream, into
    // every consumer. Only built when someone listens at info.
    let span = tracing::info_span!(
        "sync.apply",
        stream = %cfg.stream,
        group = %cfg.group,
        batch = events.len(),
        entity = events.first().map(|e| e.entity.as_str()).unwrap_or(""),
    );
    if !span.is_disabled() {
        crate::telemetry::adopt_event_traces(&span, events.iter().map(|e| &e.trace));
    }
    if let Err(e) = tracing::Instrument::instrument(handler(events), span).await {
        tracing::warn!(stream = %cfg.stream, batch = positions.len(), error = %e, "events not applied; they stay pending");
        return Ok(0);
    }
    t.ack(&cfg.stream, &cfg.group, &positions).await?;
    Ok(positions.len())
}

/// Runs until `shutdown`, retrying through transport outages.
pub async fn run(
    t: Arc<dyn Transport>,
    cfg: Config,
    handler: Handler,
    on_gap: Option<OnGap>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut group_ready = false;
    // Taking over a dead member's entries is checked every half idle period,
    // not on every pass.
    let mut last_claim: Option<std::time::Instant> = None;
    loop {
        let claim = last_claim.is_none_or(|at| at.elapsed() >= cfg.claim_idle / 2);
        if claim {
            last_claim = Some(std::time::Instant::now());
        }
        let recovering = failures > 0;
        let step = async {
            if !group_ready {
                t.ensure_group(&cfg.stream, &cfg.group).await?;
                group_ready = true;
                // Back after an outage: the stream may have lost entries
                // (Redis restarted empty, trimmed): ask for a resync.
                if recovering && let Some(f) = on_gap.as_ref() {
                    f(Vec::new());
                }
            }
            poll(t.as_ref(), &cfg, &handler, on_gap.as_ref(), claim).await
        };
        let result = tokio::select! {
            r = step => r,
            _ = shutdown.cancelled() => return,
        };
        if let Err(e) = result {
            failures += 1;
            group_ready = false;
            if failures == 1 || failures.is_multiple_of(30) {
                tracing::warn!(stream = %cfg.stream, group = %cfg.group, failures, error = %e, "sync consumer cannot read; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.cancelled() => return,
            }
        } else {
            failures = 0;
        }
    }
}
