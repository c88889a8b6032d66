//! The decision for one check or consume, on the limiter state of one
//! tenant and metric: GCRA for RATE, a counter per window for PERIODIC, a
//! level for GAUGE. Pure, so the in-memory limiter and its tests share it;
//! the Redis script mirrors it.

use super::{Enforcement, Kind, Rule};

/// What the limiter keeps per tenant and metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// RATE: the theoretical arrival time (µs). PERIODIC: the window start (µs).
    pub at: i64,
    /// PERIODIC and GAUGE: what was used in the window (or the level).
    pub used: i64,
}

/// A decision, times in µs since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the amount may be used (SOFT limits allow past the limit).
    pub allowed: bool,
    /// The rule's limit.
    pub limit: i64,
    /// What is left before the limit after this decision (never below 0).
    pub remaining: i64,
    /// When the PERIODIC window ends or the RATE burst is full again (µs since the epoch).
    pub reset_at: Option<i64>,
    /// When a RATE limit denies: how long to wait before the amount fits (µs).
    pub retry_after_us: Option<i64>,
    /// How much of the amount went past a SOFT limit.
    pub overage: i64,
    /// Used in the window (PERIODIC, GAUGE) or currently drawn from the burst (RATE), after this decision.
    pub used: i64,
}

/// The window a PERIODIC rule is in at `now`: `(start, end)` in µs.
pub type Window = (i64, i64);

/// Decides whether `amount` more may be used, and records it unless `dry`.
/// `window` is required for PERIODIC rules.
pub fn decide(
    kind: Kind,
    rule: &Rule,
    slot: &mut Slot,
    amount: i64,
    now: i64,
    window: Option<Window>,
    dry: bool,
) -> Outcome {
    match kind {
        Kind::Rate => rate(rule, slot, amount, now, dry),
        Kind::Periodic => {
            let (start, end) = window.unwrap_or((now, now));
            if slot.at != start {
                *slot = Slot { at: start, used: 0 };
            }
            counter(rule, slot, amount, Some(end), now, dry)
        }
        Kind::Gauge => counter(rule, slot, amount, None, now, dry),
    }
}

/// Lowers a GAUGE level by `amount`, never below zero; always allowed.
pub fn release(rule: &Rule, slot: &mut Slot, amount: i64) -> Outcome {
    slot.used = slot.used.max(0).saturating_sub(amount.max(0)).max(0);
    Outcome {
        allowed: true,
        limit: rule.limit,
        remaining: rule.limit.saturating_sub(slot.used).max(0),
        reset_at: None,
        retry_after_us: None,
        overage: 0,
        used: slot.used,
    }
}

fn counter(
    rule: &Rule,
    slot: &mut Slot,
    amount: i64,
    end: Option<i64>,
    now: i64,
    dry: bool,
) -> Outcome {
    // Saturating throughout: a counter holds at i64::MAX, never wraps
    // negative (which would allow anything after).
    let used = slot.used.max(0);
    let after = used.saturating_add(amount.max(0));
    let over = after > rule.limit;
    let allowed = !over || rule.enforcement == Enforcement::Soft;
    let overage = if over && allowed {
        after.saturating_sub(rule.limit).min(amount)
    } else {
        0
    };
    if allowed && !dry {
        slot.used = after;
    }
    let used = if allowed { after } else { used };
    Outcome {
        allowed,
        limit: rule.limit,
        remaining: rule.limit.saturating_sub(used).max(0),
        reset_at: end,
        retry_after_us: (!allowed)
            .then(|| end.map(|e| e.saturating_sub(now)))
            .flatten(),
        overage,
        used,
    }
}

fn rate(rule: &Rule, slot: &mut Slot, amount: i64, now: i64, dry: bool) -> Outcome {
    if rule.limit <= 0 {
        let allowed = rule.enforcement == Enforcement::Soft;
        return Outcome {
            allowed,
            limit: 0,
            remaining: 0,
            reset_at: None,
            retry_after_us: None,
            overage: if allowed { amount } else { 0 },
            used: 0,
        };
    }
    // Saturating throughout: a huge amount or burst holds at the end of
    // time instead of wrapping into the past (which would allow anything).
    let interval = (1_000_000 / rule.limit).max(1);
    let burst = rule.burst();
    let tolerance = interval.saturating_mul(burst);
    let tat = slot.at.max(now);
    let new_tat = tat.saturating_add(interval.saturating_mul(amount.max(0)));
    let ahead = new_tat.saturating_sub(now);
    let over = ahead > tolerance;
    let allowed = !over || rule.enforcement == Enforcement::Soft;
    let overage = if over && allowed {
        (ahead.saturating_sub(tolerance).saturating_add(interval - 1) / interval).min(amount)
    } else {
        0
    };
    let held = if allowed { new_tat } else { tat };
    if allowed && !dry {
        slot.at = new_tat;
    }
    let remaining = (now.saturating_add(tolerance).saturating_sub(held) / interval).clamp(0, burst);
    Outcome {
        allowed,
        limit: rule.limit,
        remaining,
        reset_at: Some(held.max(now)),
        retry_after_us: (!allowed).then_some(ahead.saturating_sub(tolerance)),
        overage,
        used: burst - remaining,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Period;

    fn rule(limit: i64, burst: Option<i64>, e: Enforcement) -> Rule {
        Rule {
            limit,
            period: None,
            burst,
            enforcement: e,
        }
    }

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        let r = rule(10, Some(5), Enforcement::Hard);
        let mut s = Slot::default();
        let t0 = 1_000_000_000;
        for i in 0..5 {
            let o = decide(Kind::Rate, &r, &mut s, 1, t0, None, false);
            assert!(o.allowed, "burst request {i}");
            assert_eq!(o.remaining, 4 - i);
        }
        let o = decide(Kind::Rate, &r, &mut s, 1, t0, None, false);
        assert!(!o.allowed);
        assert_eq!(o.retry_after_us, Some(100_000), "one emission interval");
        // After one interval, exactly one more.
        let t1 = t0 + 100_000;
        assert!(decide(Kind::Rate, &r, &mut s, 1, t1, None, false).allowed);
        assert!(!decide(Kind::Rate, &r, &mut s, 1, t1, None, false).allowed);
        // A dry run changes nothing.
        let before = s;
        decide(Kind::Rate, &r, &mut s, 1, t1 + 1_000_000, None, true);
        assert_eq!(s, before);
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let hard = Rule {
            limit: 10,
            period: None,
            burst: None,
            enforcement: Enforcement::Hard,
        };
        let soft = Rule {
            enforcement: Enforcement::Soft,
            ..hard
        };
        // Two huge SOFT consumes hold the level at i64::MAX, never negative.
        let mut s = Slot::default();
        for _ in 0..2 {
            let o = decide(Kind::Gauge, &soft, &mut s, i64::MAX, 0, None, false);
            assert!(o.allowed);
            assert_eq!(o.used, i64::MAX);
        }
        assert_eq!(s.used, i64::MAX);
        // A HARD limit then still denies a huge amount.
        let o = decide(Kind::Gauge, &hard, &mut s, i64::MAX, 0, None, false);
        assert!(!o.allowed && o.remaining == 0, "{o:?}");
        // A level read back negative (a wrapped counter) counts as zero.
        let mut s = Slot { at: 0, used: -5 };
        let o = decide(Kind::Gauge, &hard, &mut s, 11, 0, None, false);
        assert!(!o.allowed, "{o:?}");
        let o = release(&hard, &mut s, i64::MAX);
        assert_eq!((s.used, o.remaining), (0, 10));
        // GCRA with a huge amount holds its arrival time at the end of time.
        let rate = Rule {
            limit: 1,
            burst: Some(i64::MAX),
            ..soft
        };
        let mut s = Slot::default();
        let o = decide(Kind::Rate, &rate, &mut s, i64::MAX, 1_000, None, false);
        assert!(o.allowed);
        assert_eq!(s.at, i64::MAX);
        let o = decide(
            Kind::Rate,
            &Rule {
                burst: Some(1),
                ..hard
            },
            &mut s,
            i64::MAX,
            1_000,
            None,
            false,
        );
        assert!(!o.allowed && o.retry_after_us.unwrap() > 0, "{o:?}");
    }

    #[test]
    fn soft_limits_allow_and_flag_overage() {
        let r = Rule {
            limit: 10,
            period: Some(Period::Day),
            burst: None,
            enforcement: Enforcement::Soft,
        };
        let mut s = Slot::default();
        let w = Some((0, 86_400_000_000));
        let o = decide(Kind::Periodic, &r, &mut s, 8, 5, w, false);
        assert!(o.allowed && o.overage == 0 && o.remaining == 2);
        let o = decide(Kind::Periodic, &r, &mut s, 5, 6, w, false);
        assert!(o.allowed);
        assert_eq!(o.overage, 3);
        assert_eq!(o.remaining, 0);
        let hard = Rule {
            enforcement: Enforcement::Hard,
            ..r
        };
        let o = decide(Kind::Periodic, &hard, &mut s, 1, 7, w, false);
        assert!(!o.allowed);
        assert_eq!(o.retry_after_us, Some(86_400_000_000 - 7));
        // A new window starts from zero.
        let o = decide(
            Kind::Periodic,
            &hard,
            &mut s,
            10,
            86_400_000_001,
            Some((86_400_000_000, 2 * 86_400_000_000)),
            false,
        );
        assert!(o.allowed && o.remaining == 0);
    }
}
