//! The quota engine's Prometheus series. Decisions are counted where they
//! are made (in the limiter shard, under the lock the decision holds
//! anyway; an atomic for Redis decisions) and summed when `/metrics` is
//! scraped, so the hot path touches no counter shared between cores.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, Opts};
use shared::metrics::Metrics;

use super::memory::{Counts, Memory};

pub struct Meters {
    unavailable: IntCounterVec,
    usage_unapplied: IntCounterVec,
    remote: Arc<[AtomicU64; 2]>,
}

impl Meters {
    pub fn new(metrics: &Metrics, memory: Arc<Memory>) -> Self {
        let remote = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let decisions = IntCounterVec::new(
            Opts::new(
                "quota_decisions_total",
                "Quota consume decisions, by outcome (allowed, denied)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let unpersisted = IntCounter::new(
            "quota_consume_keys_unpersisted_total",
            "Consume keys not written to the database because the write queue was full (a restart forgets them)",
        )
        .expect("valid metric");
        metrics.register(Decisions {
            memory,
            remote: remote.clone(),
            allowed: decisions.with_label_values(&["allowed"]),
            denied: decisions.with_label_values(&["denied"]),
            decisions,
            unpersisted,
            seen: Mutex::new(Counts::default()),
        });
        Self {
            unavailable: metrics.counter_vec(
                "quota_store_unavailable_total",
                "Decisions taken by the metric's fail mode because the shared limiter store (Redis) or the tenant's rules (the cell's database) could not be read, by metric and decision (allowed: fail-open, denied: fail-closed)",
                &["metric", "decision"],
            ),
            usage_unapplied: metrics.counter_vec(
                "quota_usage_unapplied_total",
                "Accepted usage events (summed per tenant and metric) not added to the shared limiter because Redis did not answer: metered, not counted against the limit",
                &["metric"],
            ),
            remote,
        }
    }

    /// Metered usage the shared limiter did not get.
    pub fn usage_unapplied(&self, metric: &str) {
        self.usage_unapplied.with_label_values(&[metric]).inc();
    }

    /// A decision taken in Redis.
    pub fn decided(&self, allowed: bool) {
        self.remote[usize::from(!allowed)].fetch_add(1, Ordering::Relaxed);
    }

    /// A decision the metric's fail mode took, Redis being unreachable.
    pub fn unavailable(&self, metric: &str, allowed: bool) {
        self.unavailable
            .with_label_values(&[metric, if allowed { "allowed" } else { "denied" }])
            .inc();
    }
}

struct Decisions {
    memory: Arc<Memory>,
    remote: Arc<[AtomicU64; 2]>,
    decisions: IntCounterVec,
    allowed: IntCounter,
    denied: IntCounter,
    unpersisted: IntCounter,
    /// What the exported counters hold.
    seen: Mutex<Counts>,
}

impl Collector for Decisions {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.decisions.desc();
        d.extend(self.unpersisted.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut now = self.memory.counts();
        now.allowed += self.remote[0].load(Ordering::Relaxed);
        now.denied += self.remote[1].load(Ordering::Relaxed);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            self.allowed
                .inc_by(now.allowed.saturating_sub(seen.allowed));
            self.denied.inc_by(now.denied.saturating_sub(seen.denied));
            self.unpersisted
                .inc_by(now.unpersisted.saturating_sub(seen.unpersisted));
            *seen = now;
        }
        let mut f = self.decisions.collect();
        f.extend(self.unpersisted.collect());
        f
    }
}
