//! Per-tenant request series, bounded: only the `n` busiest tenants of the
//! last window get a series of their own; every other tenant's requests are
//! counted under `tenant="other"`. A scrape therefore holds at most
//! `(n + 1) × outcomes` series however many tenants there are.
//!
//! Each request increments exactly one series, and every series only grows,
//! so `sum(rate(tcp_tenant_requests_total[5m]))` is the whole traffic. The
//! busiest tenants are elected again every window from the window's counts
//! (at most `max_candidates` distinct tenants are counted per window); a
//! tenant that drops out of the top loses its series (Prometheus marks it
//! stale) and is counted under `other` from then on. Until `n` tenants are
//! tracked, a new tenant gets a series at once.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;

/// The label value every untracked tenant's requests are counted under.
pub const OTHER: &str = "other";
/// The outcomes a tenant series is split by.
pub const OUTCOMES: [&str; 2] = ["ok", "error"];

/// The bounded per-tenant request counter described above; shared by every
/// request of a server.
pub struct TenantTop {
    n: usize,
    window: Duration,
    max_candidates: usize,
    requests: IntCounterVec,
    inner: Mutex<Inner>,
}

struct Inner {
    tracked: HashSet<String>,
    counts: HashMap<String, u64>,
    started: Instant,
}

impl TenantTop {
    /// `requests` must have the labels `tenant` and `outcome`.
    pub fn new(n: usize, window: Duration, requests: IntCounterVec) -> Self {
        Self {
            n,
            window,
            max_candidates: (n * 50).max(5_000),
            requests,
            inner: Mutex::new(Inner {
                tracked: HashSet::new(),
                counts: HashMap::new(),
                started: Instant::now(),
            }),
        }
    }

    /// How many tenants may have a series of their own.
    pub fn limit(&self) -> usize {
        self.n
    }

    /// Counts one request of `tenant`; `ok` is false for a server-side failure.
    pub fn record(&self, tenant: &str, ok: bool) {
        let outcome = if ok { OUTCOMES[0] } else { OUTCOMES[1] };
        let own = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if g.started.elapsed() >= self.window {
                self.elect(&mut g);
            }
            if let Some(c) = g.counts.get_mut(tenant) {
                *c += 1;
            } else if g.counts.len() < self.max_candidates {
                g.counts.insert(tenant.to_owned(), 1);
            }
            if g.tracked.contains(tenant) {
                true
            } else if g.tracked.len() < self.n {
                g.tracked.insert(tenant.to_owned());
                true
            } else {
                false
            }
        };
        let label = if own { tenant } else { OTHER };
        self.requests.with_label_values(&[label, outcome]).inc();
    }

    /// Elects the busiest tenants of the window now (the periodic election
    /// calls this itself).
    pub fn rotate(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.elect(&mut g);
    }

    /// The tenants that have a series of their own now.
    pub fn tracked(&self) -> Vec<String> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = g.tracked.iter().cloned().collect();
        v.sort();
        v
    }

    fn elect(&self, g: &mut Inner) {
        let mut ranked: Vec<(&String, &u64)> = g.counts.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let next: HashSet<String> = ranked
            .into_iter()
            .take(self.n)
            .map(|(t, _)| t.clone())
            .collect();
        for gone in g.tracked.difference(&next) {
            for outcome in OUTCOMES {
                // Absent when it never had this outcome.
                let _ = self.requests.remove_label_values(&[gone.as_str(), outcome]);
            }
        }
        g.tracked = next;
        g.counts.clear();
        g.started = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Opts, Registry};

    fn top(n: usize) -> (TenantTop, Registry) {
        let reg = Registry::new();
        let c = IntCounterVec::new(
            Opts::new("tenant_requests_total", "t"),
            &["tenant", "outcome"],
        )
        .unwrap();
        reg.register(Box::new(c.clone())).unwrap();
        (TenantTop::new(n, Duration::from_secs(3600), c), reg)
    }

    fn series(reg: &Registry) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for mf in reg.gather() {
            for m in mf.get_metric() {
                let l = m.get_label();
                let get = |n: &str| {
                    l.iter()
                        .find(|p| p.name() == n)
                        .map(|p| p.value().to_owned())
                        .unwrap()
                };
                out.push((
                    get("tenant"),
                    get("outcome"),
                    m.get_counter().get_value() as u64,
                ));
            }
        }
        out
    }

    #[test]
    fn a_hundred_thousand_tenants_make_at_most_n_plus_one_series_per_outcome() {
        let (t, reg) = top(20);
        for i in 0..100_000u64 {
            t.record(&format!("tenant-{i:06}"), i % 7 != 0);
        }
        t.rotate();
        for i in 0..100_000u64 {
            t.record(&format!("tenant-{i:06}"), true);
        }
        let s = series(&reg);
        assert!(s.len() <= (20 + 1) * OUTCOMES.len(), "{} series", s.len());
        let total: u64 = s.iter().map(|x| x.2).sum();
        // Tenants demoted at the election took their counts with them; what
        // remains is every request of the second pass plus the first pass's
        // requests of the tenants still tracked and of `other`.
        assert!(total >= 100_000, "{total}");
        assert!(s.iter().any(|x| x.0 == OTHER));
    }

    #[test]
    fn the_busiest_tenants_of_the_window_win_the_series() {
        let (t, reg) = top(2);
        // Early tenants fill the free slots at once.
        t.record("quiet-1", true);
        t.record("quiet-2", true);
        for _ in 0..50 {
            t.record("busy-a", true);
        }
        for _ in 0..30 {
            t.record("busy-b", false);
        }
        assert_eq!(t.tracked(), vec!["quiet-1", "quiet-2"]);
        let other: u64 = series(&reg)
            .iter()
            .filter(|x| x.0 == OTHER)
            .map(|x| x.2)
            .sum();
        assert_eq!(other, 80, "untracked requests fold into other");
        t.rotate();
        assert_eq!(t.tracked(), vec!["busy-a", "busy-b"]);
        let s = series(&reg);
        assert!(
            s.iter().all(|x| !x.0.starts_with("quiet")),
            "demoted tenants lose their series: {s:?}"
        );
        t.record("busy-b", false);
        t.record("quiet-1", true);
        let s = series(&reg);
        assert!(s.contains(&("busy-b".into(), "error".into(), 1)), "{s:?}");
        assert!(s.contains(&(OTHER.into(), "ok".into(), 51)), "{s:?}");
    }

    #[test]
    fn every_request_is_counted_exactly_once() {
        let (t, reg) = top(3);
        let mut n = 0u64;
        for round in 0..5u64 {
            for i in 0..40u64 {
                for _ in 0..=(i % 5) {
                    t.record(&format!("t{}", (i + round) % 13), true);
                    n += 1;
                }
            }
        }
        let total: u64 = series(&reg).iter().map(|x| x.2).sum();
        assert_eq!(total, n, "no election happened, so nothing was dropped");
    }
}
