//! Bounded request loops for the chaos scenarios: each runs one kind of
//! operation until told to stop, retrying a failed operation with the same
//! idempotency key, and records what was acknowledged and every error.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a loop saw: the acknowledged operations (the answer's number and
/// when it came) and every error, in order.
#[derive(Debug, Default)]
pub struct Tally {
    pub acked: Vec<(i64, Instant)>,
    pub errors: Vec<String>,
}

impl Tally {
    /// Acknowledgements received in `[from, to]`.
    pub fn acked_between(&self, from: Instant, to: Instant) -> usize {
        self.acked
            .iter()
            .filter(|(_, at)| *at >= from && *at <= to)
            .count()
    }
}

/// A stop switch shared by the loops.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Runs `op(1)`, `op(2)`, … every `pace` until `stop`. A failed `op(i)` is
/// run again with the same `i` (the caller derives its idempotency key from
/// it) until it is acknowledged; once stopped, an operation still pending
/// is retried for at most `drain` and then the loop panics, since an
/// operation that never lands is a lost write.
pub async fn retrying<F, Fut>(stop: Stop, pace: Duration, drain: Duration, mut op: F) -> Tally
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<i64, String>>,
{
    let mut t = Tally::default();
    let mut i = 1;
    let mut pending = false;
    let mut deadline: Option<Instant> = None;
    // A hard bound on iterations, so a loop can never run away.
    for _ in 0..100_000 {
        if stop.stopped() {
            if !pending {
                return t;
            }
            let d = *deadline.get_or_insert_with(|| Instant::now() + drain);
            assert!(
                Instant::now() < d,
                "operation {i} was never acknowledged: {:?}",
                t.errors.last()
            );
        }
        match op(i).await {
            Ok(n) => {
                t.acked.push((n, Instant::now()));
                i += 1;
                pending = false;
            }
            Err(e) => {
                t.errors.push(e);
                pending = true;
            }
        }
        tokio::time::sleep(pace).await;
    }
    panic!("a load loop ran 100000 times");
}

/// Runs `op()` every `pace` until `stop`, no retries: reads.
pub async fn repeating<F, Fut>(stop: Stop, pace: Duration, mut op: F) -> Tally
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i64, String>>,
{
    let mut t = Tally::default();
    for _ in 0..100_000 {
        if stop.stopped() {
            return t;
        }
        match op().await {
            Ok(n) => t.acked.push((n, Instant::now())),
            Err(e) => t.errors.push(e),
        }
        tokio::time::sleep(pace).await;
    }
    panic!("a load loop ran 100000 times");
}
