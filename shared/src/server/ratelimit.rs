//! A rate limit per caller (the token's subject) on the GraphQL API: GCRA
//! (`quota::decide`, the engine the cells' RATE quotas use) with a rate per
//! second and a burst, in this process's memory. The control plane's own
//! `service` identities are exempt. A refused request answers
//! `RATE_LIMITED` with `extensions.retryAfterMs`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use crate::auth::{Principal, Role};
use crate::quota::decide::{Slot, decide};
use crate::quota::{Enforcement, Kind, Rule};

const SHARDS: usize = 16;
/// Past this many callers a shard forgets those whose burst has refilled.
const PRUNE_AT: usize = 4096;

/// Each caller's rate limit state, in this process's memory, sharded by caller to keep lock contention low.
pub struct CallerLimiter {
    rule: Option<Rule>,
    hasher: std::collections::hash_map::RandomState,
    shards: Vec<Mutex<HashMap<String, Slot>>>,
}

impl CallerLimiter {
    /// `per_sec` requests a second with bursts of `burst`; `per_sec == 0`
    /// switches the limit off.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let rule = (per_sec > 0).then(|| Rule {
            limit: i64::from(per_sec),
            period: None,
            burst: Some(i64::from(burst.max(1))),
            enforcement: Enforcement::Hard,
        });
        Self {
            rule,
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// `Ok` when `caller` may make one more request now, else how many
    /// milliseconds until it may.
    pub fn check(&self, caller: &Principal) -> Result<(), u64> {
        let Some(rule) = &self.rule else {
            return Ok(());
        };
        if caller.has(Role::Service) {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp_micros();
        let shard = &self.shards[(self.hasher.hash_one(&caller.subject) as usize) % SHARDS];
        let mut slots = shard.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= PRUNE_AT && !slots.contains_key(&caller.subject) {
            // A slot whose theoretical arrival time has passed holds a full
            // burst: forgetting it changes no decision.
            slots.retain(|_, s| s.at > now);
        }
        let slot = slots.entry(caller.subject.clone()).or_default();
        let o = decide(Kind::Rate, rule, slot, 1, now, None, false);
        if o.allowed {
            Ok(())
        } else {
            let us = o.retry_after_us.unwrap_or(1000).max(1);
            Err((us as u64).div_ceil(1000))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(sub: &str, role: Role) -> Principal {
        Principal {
            subject: sub.into(),
            roles: vec![role],
            tenants: vec![],
            cell: None,
            break_glass: None,
        }
    }

    #[test]
    fn a_runaway_caller_is_limited_while_another_is_served() {
        let l = CallerLimiter::new(10, 5);
        let (greedy, calm) = (caller("greedy", Role::Sre), caller("calm", Role::Sre));
        let allowed = (0..50).filter(|_| l.check(&greedy).is_ok()).count();
        assert!(
            (5..=6).contains(&allowed),
            "{allowed} allowed of a burst of 5"
        );
        let retry = l.check(&greedy).unwrap_err();
        assert!((1..=100).contains(&retry), "retry after {retry} ms at 10/s");
        assert!(l.check(&calm).is_ok(), "another caller keeps its own burst");
    }

    #[test]
    fn service_identities_are_exempt_and_zero_switches_the_limit_off() {
        let l = CallerLimiter::new(1, 1);
        let svc = caller("global", Role::Service);
        assert!((0..100).all(|_| l.check(&svc).is_ok()));
        let off = CallerLimiter::new(0, 0);
        let admin = caller("admin", Role::PlatformAdmin);
        assert!((0..10_000).all(|_| off.check(&admin).is_ok()));
    }

    #[test]
    fn many_callers_stay_bounded() {
        // At a million a second a slot holds for a microsecond: a shard that
        // fills up forgets nearly everything it holds.
        let l = CallerLimiter::new(1_000_000, 1);
        for i in 0..(PRUNE_AT * SHARDS * 3) {
            assert!(l.check(&caller(&format!("c{i}"), Role::Sre)).is_ok());
        }
        for s in &l.shards {
            let n = s.lock().unwrap().len();
            assert!(n <= PRUNE_AT, "{n} callers held in one shard");
        }
    }
}
