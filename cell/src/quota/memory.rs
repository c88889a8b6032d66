//! The limiter of a cell that runs one replica, and the per-tenant rule
//! cache of every cell: state in memory, in shards picked by tenant, so one
//! lock covers a tenant's rules, its slots and the consume keys it has seen
//! (a retry cannot count twice) and tenants on different shards never wait
//! for each other. A decision takes that one lock and allocates nothing.
//!
//! What a consume changes is also queued for the database (`drain`), so a
//! restart finds PERIODIC counters, GAUGE levels and consume keys again
//! (`persist.rs`).

use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;
use shared::quota::decide::{self, Outcome, Slot};
use shared::quota::window::Windows;
use shared::quota::{Kind, Rule, Source, plans};
use uuid::Uuid;

pub const SHARDS: usize = 64;

/// What an idempotency key answers again: the fingerprint of the request
/// that first used it (metric, amount, operation) and its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remembered {
    pub fingerprint: u64,
    pub outcome: Outcome,
}

/// A tenant's plan and overrides, with each known metric's rule resolved.
#[derive(Debug)]
pub struct Policy {
    pub plan: String,
    pub deleted: bool,
    pub overrides: FxHashMap<String, (Option<Rule>, i64)>,
    /// By catalog index, for the metrics known when it was loaded.
    rules: Vec<Option<(Rule, Source)>>,
    /// When it was read (µs since the epoch).
    pub loaded: i64,
}

impl Policy {
    /// `names` are the catalog's metric names by index.
    pub fn new(
        plan: String,
        deleted: bool,
        overrides: FxHashMap<String, (Option<Rule>, i64)>,
        names: &[Box<str>],
        loaded: i64,
    ) -> Self {
        let mut p = Self {
            plan,
            deleted,
            overrides,
            rules: Vec::new(),
            loaded,
        };
        p.rules = names.iter().map(|n| p.resolve(n)).collect();
        p
    }

    fn resolve(&self, metric: &str) -> Option<(Rule, Source)> {
        match self.overrides.get(metric) {
            Some((Some(r), _)) => Some((*r, Source::Override)),
            _ => plans::default_for(&self.plan, metric).map(|r| (r, Source::Plan)),
        }
    }

    /// The tenant's rule on the metric at catalog index `idx`, named `name`.
    pub fn rule(&self, idx: u32, name: &str) -> Option<(Rule, Source)> {
        match self.rules.get(idx as usize) {
            Some(r) => *r,
            None => self.resolve(name),
        }
    }
}

/// What a decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A dry run.
    Check,
    Consume,
    /// Lowers a GAUGE level (never below zero).
    Release,
}

/// One decision to make.
pub struct Ask<'a> {
    pub tenant: Uuid,
    /// The metric's catalog index and name.
    pub metric: u32,
    pub name: &'a str,
    pub kind: Kind,
    pub amount: i64,
    pub now: i64,
    /// A consume's or release's idempotency key (hashed); none for a check.
    pub key: Option<u128>,
    pub fingerprint: u64,
    pub op: Op,
    /// Answer for a deleted tenant too (listing its quotas).
    pub deleted_ok: bool,
}

/// What the limiter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Decided {
        outcome: Outcome,
        rule: Rule,
        /// A retried key: the first answer, nothing counted.
        replay: bool,
    },
    /// The key was first used with other input.
    Conflict,
    /// The tenant has no limit on the metric.
    Unlimited,
    /// The tenant is deleted.
    Deleted,
    /// The tenant's rules are not cached (or are too old): load them, ask again.
    Unknown,
}

/// A counter change waiting for the database: (tenant, metric index, window start).
pub type CounterKey = (Uuid, u32, i64);

/// What waits for the database.
#[derive(Debug, Default)]
pub struct Pending {
    /// PERIODIC and GAUGE counter changes.
    pub deltas: Vec<(CounterKey, i64)>,
    /// RATE slots: (tenant, metric index) → theoretical arrival time (µs).
    pub rates: Vec<((Uuid, u32), i64)>,
    /// Consume keys, in one batch per shard.
    pub keys: Vec<Vec<FreshKey>>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty() && self.rates.is_empty() && self.key_count() == 0
    }

    pub fn key_count(&self) -> usize {
        self.keys.iter().map(Vec::len).sum()
    }
}

/// A consume key waiting for the database.
#[derive(Debug, Clone, Copy)]
pub struct FreshKey {
    pub tenant: Uuid,
    pub key: u128,
    pub remembered: Remembered,
    pub at: i64,
}

#[derive(Default)]
struct Shard {
    policies: FxHashMap<Uuid, Arc<Policy>>,
    slots: FxHashMap<(Uuid, u32), Slot>,
    /// Consume keys in two generations: `seen` is rotated into `old` every
    /// half TTL (or when full), so a key is remembered at least half the
    /// TTL and memory stays bounded.
    seen: FxHashMap<(Uuid, u128), Remembered>,
    old: FxHashMap<(Uuid, u128), Remembered>,
    rotated: i64,
    /// Changes not yet written to the database (when persisting).
    deltas: FxHashMap<CounterKey, i64>,
    /// RATE slots' theoretical arrival times not yet written.
    rates: FxHashMap<(Uuid, u32), i64>,
    fresh: Vec<FreshKey>,
    unpersisted: u64,
    allowed: u64,
    denied: u64,
}

pub struct Memory {
    shards: Box<[Mutex<Shard>]>,
    half_ttl: i64,
    cap: usize,
    /// Queue counter changes and keys for the database.
    persist: bool,
    policy_ttl: i64,
}

/// How many decisions were allowed and denied, and how many consume keys
/// could not be queued for the database (the queue was full).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub allowed: u64,
    pub denied: u64,
    pub unpersisted: u64,
}

impl Memory {
    /// Consume keys are remembered `ttl_us / 2` at least, at most
    /// `max_keys` per generation; rules are read again after `policy_ttl_us`.
    pub fn new(ttl_us: i64, max_keys: usize, persist: bool, policy_ttl_us: i64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            half_ttl: ttl_us / 2,
            cap: (max_keys / SHARDS).max(16),
            persist,
            policy_ttl: policy_ttl_us,
        }
    }

    fn lock(&self, tenant: &Uuid) -> MutexGuard<'_, Shard> {
        let v = tenant.as_u128();
        let h = (v as u64) ^ ((v >> 64) as u64);
        self.shards[(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Caches the tenant's rules.
    pub fn put_policy(&self, tenant: Uuid, p: Arc<Policy>) {
        self.lock(&tenant).policies.insert(tenant, p);
    }

    /// Forgets the tenant's cached rules.
    pub fn forget_policy(&self, tenant: Uuid) {
        self.lock(&tenant).policies.remove(&tenant);
    }

    /// The tenant's cached rules, if fresh at `now`.
    pub fn policy(&self, tenant: Uuid, now: i64) -> Option<Arc<Policy>> {
        self.lock(&tenant)
            .policies
            .get(&tenant)
            .filter(|p| now - p.loaded < self.policy_ttl)
            .cloned()
    }

    /// Decides, records unless a check; a key seen before answers its first
    /// outcome (or a conflict) and changes nothing. With `limiter == false`
    /// only the rules are looked up (the caller decides elsewhere): the
    /// answer is `Decided` with a placeholder outcome.
    pub fn apply(&self, a: &Ask<'_>, windows: &Windows, limiter: bool) -> Step {
        let mut guard = self.lock(&a.tenant);
        let s = &mut *guard;
        let Some(p) = s.policies.get(&a.tenant) else {
            return Step::Unknown;
        };
        if a.now - p.loaded >= self.policy_ttl {
            return Step::Unknown;
        }
        if p.deleted && !a.deleted_ok {
            return Step::Deleted;
        }
        let Some((rule, _)) = p.rule(a.metric, a.name) else {
            return Step::Unlimited;
        };
        if !limiter {
            return Step::Decided {
                outcome: decide::Outcome::default(),
                rule,
                replay: false,
            };
        }
        let tk = a.key.map(|k| (a.tenant, k));
        if let Some(k) = &tk
            && let Some(r) = s.seen.get(k).or_else(|| s.old.get(k))
        {
            return if r.fingerprint == a.fingerprint {
                Step::Decided {
                    outcome: r.outcome,
                    rule,
                    replay: true,
                }
            } else {
                Step::Conflict
            };
        }
        let window = match (a.kind, rule.period) {
            (Kind::Periodic, Some(period)) => Some(windows.get(period, a.now)),
            _ => None,
        };
        let slot = s.slots.entry((a.tenant, a.metric)).or_default();
        let (before_at, before) = (slot.at, slot.used);
        let o = match a.op {
            Op::Release => decide::release(&rule, slot, a.amount),
            op => decide::decide(
                a.kind,
                &rule,
                slot,
                a.amount,
                a.now,
                window,
                op == Op::Check,
            ),
        };
        if a.op == Op::Check {
            return Step::Decided {
                outcome: o,
                rule,
                replay: false,
            };
        }
        if o.allowed {
            s.allowed += 1;
        } else {
            s.denied += 1;
        }
        if self.persist && a.kind == Kind::Rate && slot.at != before_at {
            s.rates.insert((a.tenant, a.metric), slot.at);
        } else if self.persist && (slot.used, slot.at) != (before, before_at) {
            // A new window starts from zero.
            let delta = if slot.at == before_at {
                slot.used.saturating_sub(before)
            } else {
                slot.used
            };
            let d = s.deltas.entry((a.tenant, a.metric, slot.at)).or_default();
            *d = d.saturating_add(delta);
        }
        if let Some(k) = tk {
            if s.seen.len() >= self.cap || a.now - s.rotated >= self.half_ttl {
                // The older generation is forgotten and its table reused:
                // a fresh one would grow again by reallocating, each time
                // on pages the kernel must zero.
                std::mem::swap(&mut s.old, &mut s.seen);
                s.seen.clear();
                s.rotated = a.now;
            }
            let r = Remembered {
                fingerprint: a.fingerprint,
                outcome: o,
            };
            s.seen.insert(k, r);
            if self.persist {
                if s.fresh.len() < self.cap {
                    s.fresh.push(FreshKey {
                        tenant: a.tenant,
                        key: k.1,
                        remembered: r,
                        at: a.now,
                    });
                } else {
                    s.unpersisted += 1;
                }
            }
        }
        Step::Decided {
            outcome: o,
            rule,
            replay: false,
        }
    }

    /// Adds metered usage to a PERIODIC counter whose window starts at
    /// `start` (a counter already in a later window is left alone).
    pub fn add_usage(&self, tenant: Uuid, metric: u32, start: i64, amount: i64) {
        let mut s = self.lock(&tenant);
        let slot = s.slots.entry((tenant, metric)).or_default();
        if slot.at == start {
            slot.used = slot.used.max(0).saturating_add(amount.max(0));
        } else if slot.at < start {
            *slot = Slot {
                at: start,
                used: amount.max(0),
            };
        }
    }

    /// Restores a counter read from the database (the latest window wins).
    pub fn restore_counter(&self, tenant: Uuid, metric: u32, start: i64, used: i64) {
        let mut s = self.lock(&tenant);
        let slot = s.slots.entry((tenant, metric)).or_default();
        if start >= slot.at {
            // A row a wrapped counter left negative counts as zero.
            *slot = Slot {
                at: start,
                used: used.max(0),
            };
        }
    }

    /// Restores a RATE slot's theoretical arrival time read from the database.
    pub fn restore_rate(&self, tenant: Uuid, metric: u32, tat: i64) {
        let mut s = self.lock(&tenant);
        let slot = s.slots.entry((tenant, metric)).or_default();
        slot.at = slot.at.max(tat);
    }

    /// Restores a consume key read from the database.
    pub fn restore_key(&self, tenant: Uuid, key: u128, r: Remembered) {
        self.lock(&tenant).seen.insert((tenant, key), r);
    }

    /// Takes what waits for the database.
    pub fn drain(&self) -> Pending {
        let mut p = Pending::default();
        for sh in self.shards.iter() {
            let mut s = sh.lock().unwrap_or_else(|p| p.into_inner());
            p.deltas.extend(s.deltas.drain().filter(|(_, d)| *d != 0));
            p.rates.extend(s.rates.drain());
            // Taken whole (decisions wait on this lock): a copy of up to
            // `cap` keys here would hold them up.
            if !s.fresh.is_empty() {
                let room = s.fresh.capacity();
                p.keys
                    .push(std::mem::replace(&mut s.fresh, Vec::with_capacity(room)));
            }
        }
        p
    }

    /// Puts back what could not be written (the next flush tries again).
    pub fn requeue(&self, p: Pending) {
        for (k, d) in p.deltas {
            let mut s = self.lock(&k.0);
            let e = s.deltas.entry(k).or_default();
            *e = e.saturating_add(d);
        }
        for ((t, m), tat) in p.rates {
            let mut s = self.lock(&t);
            let e = s.rates.entry((t, m)).or_default();
            *e = (*e).max(tat);
        }
        for k in p.keys.into_iter().flatten() {
            let mut s = self.lock(&k.tenant);
            if s.fresh.len() < self.cap {
                s.fresh.push(k);
            } else {
                s.unpersisted += 1;
            }
        }
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for sh in self.shards.iter() {
            let s = sh.lock().unwrap_or_else(|p| p.into_inner());
            c.allowed += s.allowed;
            c.denied += s.denied;
            c.unpersisted += s.unpersisted;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::quota::Enforcement;

    fn memory_with(t: Uuid, rule: Rule) -> Memory {
        let m = Memory::new(600_000_000, 1000, true, i64::MAX);
        let mut overrides = FxHashMap::default();
        overrides.insert("seats".to_owned(), (Some(rule), 1));
        m.put_policy(
            t,
            Arc::new(Policy::new(
                "none".into(),
                false,
                overrides,
                &["seats".into()],
                0,
            )),
        );
        m
    }

    fn ask(t: Uuid, key: u128, amount: i64, op: Op) -> Ask<'static> {
        Ask {
            tenant: t,
            metric: 0,
            name: "seats",
            kind: Kind::Gauge,
            amount,
            now: 0,
            key: Some(key),
            fingerprint: amount as u64 ^ (op as u64) << 32,
            op,
            deleted_ok: false,
        }
    }

    fn outcome(s: Step) -> (Outcome, bool) {
        match s {
            Step::Decided {
                outcome, replay, ..
            } => (outcome, replay),
            other => panic!("not decided: {other:?}"),
        }
    }

    #[test]
    fn a_retried_key_answers_the_first_decision_and_counts_once() {
        let rule = Rule {
            limit: 3,
            period: None,
            burst: None,
            enforcement: Enforcement::Hard,
        };
        let t = Uuid::now_v7();
        let m = memory_with(t, rule);
        let w = Windows::default();
        let (first, replay) = outcome(m.apply(&ask(t, 1, 2, Op::Consume), &w, true));
        assert!(first.allowed && !replay);
        let (again, replay) = outcome(m.apply(&ask(t, 1, 2, Op::Consume), &w, true));
        assert!(replay);
        assert_eq!(again, first);
        assert_eq!(
            m.apply(&ask(t, 1, 1, Op::Consume), &w, true),
            Step::Conflict,
            "the same key with another amount"
        );
        let (next, _) = outcome(m.apply(&ask(t, 2, 1, Op::Consume), &w, true));
        assert_eq!(next.remaining, 0, "a counted once: 2 + 1 of 3");
        assert!(
            !outcome(m.apply(&ask(t, 3, 1, Op::Consume), &w, true))
                .0
                .allowed
        );
        // Releasing lowers the level, once per key, never below zero.
        let (r, _) = outcome(m.apply(&ask(t, 4, 2, Op::Release), &w, true));
        assert_eq!((r.used, r.remaining), (1, 2));
        let (r, replay) = outcome(m.apply(&ask(t, 4, 2, Op::Release), &w, true));
        assert!(replay && r.used == 1);
        let (r, _) = outcome(m.apply(&ask(t, 5, 5, Op::Release), &w, true));
        assert_eq!((r.used, r.remaining), (0, 3));
        let p = m.drain();
        assert_eq!(p.deltas.iter().map(|(_, d)| d).sum::<i64>(), 0, "{p:?}");
        assert_eq!(p.key_count(), 5, "keys 1 to 5 (3 was denied: kept too)");
        assert!(p.rates.is_empty());
    }

    #[test]
    fn metered_usage_and_restored_counters_cannot_wrap() {
        let rule = Rule {
            limit: 10,
            period: None,
            burst: None,
            enforcement: Enforcement::Hard,
        };
        let t = Uuid::now_v7();
        let m = memory_with(t, rule);
        let w = Windows::default();
        // Metered usage saturates at i64::MAX: a HARD limit still denies.
        m.add_usage(t, 0, 0, i64::MAX);
        m.add_usage(t, 0, 0, i64::MAX);
        let (o, _) = outcome(m.apply(&ask(t, 1, 1, Op::Consume), &w, true));
        assert!(!o.allowed && o.used == i64::MAX, "{o:?}");
        // A counter a wrapped past left negative is read back as zero.
        let m = memory_with(t, rule);
        m.restore_counter(t, 0, 0, -9_000);
        let (o, _) = outcome(m.apply(&ask(t, 2, 11, Op::Consume), &w, true));
        assert!(!o.allowed, "{o:?}");
        let (o, _) = outcome(m.apply(&ask(t, 3, 10, Op::Consume), &w, true));
        assert!(o.allowed && o.remaining == 0, "{o:?}");
    }

    #[test]
    fn a_rate_slot_is_queued_for_the_database_and_restored() {
        let rule = Rule {
            limit: 10,
            period: None,
            burst: Some(2),
            enforcement: Enforcement::Hard,
        };
        let t = Uuid::now_v7();
        let rate = |key, now| Ask {
            kind: Kind::Rate,
            now,
            ..ask(t, key, 1, Op::Consume)
        };
        let m = memory_with(t, rule);
        let w = Windows::default();
        let now = 1_000_000_000;
        assert!(outcome(m.apply(&rate(1, now), &w, true)).0.allowed);
        assert!(outcome(m.apply(&rate(2, now), &w, true)).0.allowed);
        assert!(!outcome(m.apply(&rate(3, now), &w, true)).0.allowed);
        let p = m.drain();
        assert!(p.deltas.is_empty(), "RATE is not a counter: {p:?}");
        // Two units of 100 ms each: the slot is 200 ms ahead.
        assert_eq!(p.rates, vec![((t, 0), now + 200_000)]);

        // A new limiter that restored the slot has no burst left either.
        let fresh = memory_with(t, rule);
        fresh.restore_rate(t, 0, now + 200_000);
        assert!(!outcome(fresh.apply(&rate(4, now), &w, true)).0.allowed);
        assert!(
            outcome(fresh.apply(&rate(5, now + 100_000), &w, true))
                .0
                .allowed
        );
        // A failed write is queued again; the later time wins.
        fresh.requeue(Pending {
            rates: vec![((t, 0), now)],
            ..Pending::default()
        });
        assert_eq!(fresh.drain().rates, vec![((t, 0), now + 300_000)]);
    }
}
