//! The chaos scenarios' mixed load on the [`Chaos`] stack, and the check
//! that every write it saw acknowledged is present exactly once.

use std::time::Duration;

use serde_json::json;

use crate::chaos::{Chaos, METRIC, Tenant, meter};

/// The mixed load on a set of tenants: per tenant a config writer (through
/// the global API), a consumer and a usage meter (on the home cell's hooks);
/// per cell a flag evaluator. Every loop retries a failed write with the
/// same idempotency key, so what it records as acknowledged is exact.
pub struct Workload {
    pub stop: crate::load::Stop,
    tasks: Vec<(String, tokio::task::JoinHandle<crate::load::Tally>)>,
}

/// The loops' tallies by name: `config:<tenant>`, `consume:<tenant>`,
/// `usage:<tenant>`, `eval:<cell index>`.
pub type Tallies = std::collections::HashMap<String, crate::load::Tally>;

impl Workload {
    pub fn start(c: &std::sync::Arc<Chaos>, tenants: &[Tenant], cells: &[usize]) -> Workload {
        use crate::load::{Stop, repeating, retrying};
        let stop = Stop::default();
        let drain = Duration::from_secs(30);
        let mut tasks = Vec::new();
        for t in tenants {
            let (c1, id) = (c.clone(), t.id.clone());
            tasks.push((
                format!("config:{}", t.id),
                tokio::spawn(retrying(
                    stop.clone(),
                    Duration::from_millis(150),
                    drain,
                    move |i| {
                        let (c, id) = (c1.clone(), id.clone());
                        async move { c.write_config(&id, i - 1, i, &format!("w-{id}-{i}")).await }
                    },
                )),
            ));
            let (h, id) = (c.hooks(t.cell), t.id.clone());
            tasks.push((
                format!("consume:{}", t.id),
                tokio::spawn(retrying(
                    stop.clone(),
                    Duration::from_millis(60),
                    drain,
                    move |i| {
                        let (h, id) = (h.clone(), id.clone());
                        async move {
                            h.consume(&id, METRIC, 1, &format!("c-{i}"))
                                .await
                                .map(|_| 1)
                                .map_err(|e| format!("{:?}", e.code()))
                        }
                    },
                )),
            ));
            let (h, id) = (c.hooks(t.cell), t.id.clone());
            tasks.push((
                format!("usage:{}", t.id),
                tokio::spawn(retrying(
                    stop.clone(),
                    Duration::from_millis(100),
                    drain,
                    move |i| {
                        let (h, id) = (h.clone(), id.clone());
                        async move { meter(&h, &id, 1, &format!("u-{i}")).await.map(|_| 1) }
                    },
                )),
            ));
        }
        for &i in cells {
            let Some(t) = tenants.iter().find(|t| t.cell == i) else {
                continue;
            };
            let (c1, id) = (c.clone(), t.id.clone());
            tasks.push((
                format!("eval:{i}"),
                tokio::spawn(repeating(
                    stop.clone(),
                    Duration::from_millis(50),
                    move || {
                        let (c, id) = (c1.clone(), id.clone());
                        async move { c.evaluate(i, &id).await.map(|_| 1) }
                    },
                )),
            ));
        }
        Workload { stop, tasks }
    }

    /// Adds a loop of the caller's.
    pub fn add(&mut self, name: &str, task: tokio::task::JoinHandle<crate::load::Tally>) {
        self.tasks.push((name.to_owned(), task));
    }

    /// Stops every loop (pending writes are retried until acknowledged) and
    /// returns their tallies.
    pub async fn finish(self) -> Tallies {
        self.stop.stop();
        let mut out = Tallies::new();
        for (name, t) in self.tasks {
            out.insert(name, t.await.expect("load loop panicked"));
        }
        out
    }
}

/// Checks, per tenant, that every acknowledged write is present exactly
/// once: the config history is versions 1..=n with the last value `n`,
/// the global tier's metered usage is the acknowledged usage. Returns how
/// many consumes of the tenant the limiter no longer counts (a SIGKILL
/// loses at most the consumes of the last persist interval) and how many
/// were acknowledged.
pub async fn check_acknowledged(c: &Chaos, tallies: &Tallies, t: &Tenant) -> (i64, i64) {
    let config = &tallies[&format!("config:{}", t.id)];
    let n = config.acked.len() as i64;
    assert!(n > 0, "tenant {} had no config write acknowledged", t.id);
    for (i, (v, _)) in config.acked.iter().enumerate() {
        assert_eq!(*v, i as i64 + 1, "acknowledged versions in order");
    }
    let (value, versions) = c.config(&t.id).await;
    assert_eq!(value, json!(n), "the last acknowledged value of {}", t.id);
    assert_eq!(
        versions,
        (1..=n).collect::<Vec<_>>(),
        "every acknowledged config write of {} is in its history, once",
        t.id
    );
    let usage = tallies[&format!("usage:{}", t.id)].acked.len() as i64;
    c.wait_usage(&t.id, usage, Duration::from_secs(20)).await;
    let consumed = tallies[&format!("consume:{}", t.id)].acked.len() as i64;
    // A retried consume whose first attempt counted is answered from its
    // key: the limiter counts each acknowledged consume once at most, and
    // metered usage adds to the same counter.
    let used = c.used(&t.id).await - usage;
    assert!(
        used <= consumed,
        "tenant {}: {used} counted, {consumed} consumes acknowledged",
        t.id
    );
    (consumed - used, consumed)
}
