//! The quotas each plan gives by default, per metric name. A metric the
//! plan does not name is unlimited for its tenants until an override sets
//! a limit. This is the one plan → default quota table.

use super::{Enforcement, Period, Rule};

const fn rate(limit: i64, burst: i64, enforcement: Enforcement) -> Rule {
    Rule {
        limit,
        period: None,
        burst: Some(burst),
        enforcement,
    }
}

const fn per(limit: i64, period: Period, enforcement: Enforcement) -> Rule {
    Rule {
        limit,
        period: Some(period),
        burst: None,
        enforcement,
    }
}

const fn level(limit: i64, enforcement: Enforcement) -> Rule {
    Rule {
        limit,
        period: None,
        burst: None,
        enforcement,
    }
}

use Enforcement::{Hard, Soft};

const FREE: &[(&str, Rule)] = &[
    ("api.requests", rate(10, 20, Hard)),
    ("api.calls", per(10_000, Period::Month, Hard)),
    ("storage.bytes", per(1_000_000_000, Period::Month, Hard)),
    ("seats", level(5, Hard)),
];

const PRO: &[(&str, Rule)] = &[
    ("api.requests", rate(100, 200, Hard)),
    ("api.calls", per(1_000_000, Period::Month, Soft)),
    ("storage.bytes", per(100_000_000_000, Period::Month, Soft)),
    ("seats", level(50, Hard)),
];

const ENTERPRISE: &[(&str, Rule)] = &[
    ("api.requests", rate(1_000, 2_000, Soft)),
    ("api.calls", per(100_000_000, Period::Month, Soft)),
    (
        "storage.bytes",
        per(10_000_000_000_000, Period::Month, Soft),
    ),
    ("seats", level(1_000, Soft)),
];

/// The default rules of `plan` (none for a plan this table does not know).
pub fn defaults(plan: &str) -> &'static [(&'static str, Rule)] {
    match plan {
        "free" => FREE,
        "pro" => PRO,
        "enterprise" => ENTERPRISE,
        _ => &[],
    }
}

/// The default rule of `plan` for `metric`, if any.
pub fn default_for(plan: &str, metric: &str) -> Option<Rule> {
    defaults(plan)
        .iter()
        .find(|(m, _)| *m == metric)
        .map(|(_, r)| *r)
}
