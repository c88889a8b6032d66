//! The limiter of a cell that runs one replica: every tenant's state in
//! memory, in shards picked by tenant so one lock covers a tenant's slots
//! and the consume keys it has seen (a retry cannot count twice).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::quota::decide::{self, Outcome, Slot, Window};
use shared::quota::{Kind, Rule};
use uuid::Uuid;

const SHARDS: usize = 64;

#[derive(Default)]
struct Shard {
    slots: HashMap<(Uuid, u32), Slot>,
    /// Consume keys seen, in two generations: `seen` is rotated into `old`
    /// every half TTL (or when full), so a key is remembered at least half
    /// the TTL and memory stays bounded.
    seen: HashMap<(Uuid, Box<str>), Outcome>,
    old: HashMap<(Uuid, Box<str>), Outcome>,
    rotated: Option<Instant>,
}

pub struct Memory {
    shards: Box<[Mutex<Shard>]>,
    half_ttl: Duration,
    cap: usize,
}

/// One decision to make.
pub struct Ask<'a> {
    pub tenant: Uuid,
    pub metric: u32,
    pub kind: Kind,
    pub rule: &'a Rule,
    pub amount: i64,
    pub now: i64,
    pub window: Option<Window>,
    /// A consume's idempotency key; none for a check.
    pub key: Option<&'a str>,
    pub dry: bool,
}

impl Memory {
    /// Consume keys are remembered `ttl / 2` at least, at most `max_keys` per generation.
    pub fn new(ttl: Duration, max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            half_ttl: ttl / 2,
            cap: (max_keys / SHARDS).max(16),
        }
    }

    fn shard(&self, tenant: &Uuid) -> &Mutex<Shard> {
        let v = tenant.as_u128();
        let h = (v as u64) ^ ((v >> 64) as u64);
        &self.shards[(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS]
    }

    /// Decides, records unless dry; a consume key seen before answers the
    /// first outcome and changes nothing. Returns the outcome and whether it was a replay.
    pub fn apply(&self, a: &Ask<'_>) -> (Outcome, bool) {
        let mut s = self
            .shard(&a.tenant)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(key) = a.key {
            let k = (a.tenant, Box::<str>::from(key));
            if let Some(o) = s.seen.get(&k).or_else(|| s.old.get(&k)) {
                return (*o, true);
            }
            let slot = s.slots.entry((a.tenant, a.metric)).or_default();
            let o = decide::decide(a.kind, a.rule, slot, a.amount, a.now, a.window, a.dry);
            let now = Instant::now();
            let due = s
                .rotated
                .is_none_or(|at| now.duration_since(at) >= self.half_ttl);
            if s.seen.len() >= self.cap || due {
                s.old = std::mem::take(&mut s.seen);
                s.rotated = Some(now);
            }
            s.seen.insert(k, o);
            return (o, false);
        }
        let slot = s.slots.entry((a.tenant, a.metric)).or_default();
        (
            decide::decide(a.kind, a.rule, slot, a.amount, a.now, a.window, a.dry),
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::quota::Enforcement;

    #[test]
    fn a_retried_key_answers_the_first_decision_and_counts_once() {
        let m = Memory::new(Duration::from_secs(600), 1000);
        let rule = Rule {
            limit: 3,
            period: None,
            burst: None,
            enforcement: Enforcement::Hard,
        };
        let t = Uuid::now_v7();
        let ask = |key: &'static str, amount| Ask {
            tenant: t,
            metric: 1,
            kind: Kind::Gauge,
            rule: &rule,
            amount,
            now: 0,
            window: None,
            key: Some(key),
            dry: false,
        };
        let (first, replay) = m.apply(&ask("a", 2));
        assert!(first.allowed && !replay);
        let (again, replay) = m.apply(&ask("a", 2));
        assert!(replay);
        assert_eq!(again, first);
        let (next, _) = m.apply(&ask("b", 1));
        assert_eq!(next.remaining, 0, "a counted once: 2 + 1 of 3");
        assert!(!m.apply(&ask("c", 1)).0.allowed);
    }
}
