//! Quotas, rate limits and metering: the metric catalog (owned by the
//! global tier, synced to every cell), the limits a tenant gets (its plan's
//! defaults or an override), the shapes of the cell's data-plane hooks and a
//! client for them.

pub mod api;
pub mod client;
pub mod decide;
pub mod hooks;
pub mod plans;
pub mod store;
pub mod window;

use serde::{Deserialize, Serialize};

/// The stream that carries metric definitions from the global tier to cells.
pub const STREAM: &str = "global.metrics";

/// The stream that carries usage rollups from cells to the global tier.
pub const USAGE_STREAM: &str = "cell.usage";

/// The sync entity of a metric.
pub fn entity(name: &str) -> String {
    format!("metric:{name}")
}

/// The sync entity of one tenant's usage of one metric in one hour.
pub fn usage_entity(tenant: &str, metric: &str, hour_start: i64) -> String {
    format!("usage:{tenant}:{metric}:{hour_start}")
}

/// How a metric is limited.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[graphql(name = "MetricKind")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    /// Per second, with a burst.
    Rate,
    /// A counter reset every period.
    Periodic,
    /// A level, such as seats.
    Gauge,
}

/// The window a PERIODIC metric's counter is reset on (UTC-aligned).
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[graphql(name = "QuotaPeriod")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Period {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
    /// One calendar month.
    Month,
}

/// What happens to a request past the limit.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Enforcement {
    /// Denies past the limit.
    Hard,
    /// Allows past the limit and flags the overage.
    Soft,
}

/// What a cell decides for a metric when the shared limiter store (Redis) is unreachable.
#[derive(
    async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailMode {
    /// Allow the request.
    Open,
    /// Deny the request.
    #[default]
    Closed,
}

/// One metric of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricDef {
    /// Unique in the catalog: lowercase letters, digits, '.' and '_', starting with a letter, at most 64 characters.
    pub name: String,
    /// How the metric is limited.
    pub kind: Kind,
    /// What one unit counts, such as `request` or `seat` (1 to 32 characters).
    pub unit: String,
    /// Free text for operators (at most 1024 characters).
    pub description: String,
    /// What cells decide when the shared limiter store is unreachable.
    #[serde(default)]
    pub fail_mode: FailMode,
}

impl MetricDef {
    /// Checks the definition; every problem is listed.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        let ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_'));
        if !ok {
            errs.push(format!(
                "name `{}` must start with a lowercase letter and hold only a-z, 0-9, '.' or '_' (at most 64)",
                self.name
            ));
        }
        if self.unit.trim().is_empty() || self.unit.chars().count() > 32 {
            errs.push("unit must be 1 to 32 characters".into());
        }
        if self.description.chars().count() > 1024 {
            errs.push("description must be at most 1024 characters".into());
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// The limit a tenant has on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Per second for RATE, per period for PERIODIC, the level for GAUGE.
    pub limit: i64,
    /// PERIODIC only.
    pub period: Option<Period>,
    /// RATE only: how many may come at once (defaults to `limit`).
    pub burst: Option<i64>,
    /// Whether requests past the limit are denied or only flagged.
    pub enforcement: Enforcement,
}

impl Rule {
    /// Checks the rule against the metric's kind; `field` prefixes the
    /// field named in the error.
    pub fn check(&self, kind: Kind, field: &str) -> crate::Result<()> {
        let bad = |f: &str, m: String| Err(crate::Error::bad_input(format!("{field}.{f}"), m));
        if self.limit < 0 {
            return bad(
                "limit",
                format!("limit must be 0 or more, got {}", self.limit),
            );
        }
        match kind {
            Kind::Rate => {
                if self.period.is_some() {
                    return bad(
                        "period",
                        "a RATE metric is per second: give no period".into(),
                    );
                }
                if let Some(b) = self.burst
                    && b < 1
                {
                    return bad("burst", format!("burst must be at least 1, got {b}"));
                }
            }
            Kind::Periodic => {
                if self.period.is_none() {
                    return bad(
                        "period",
                        "a PERIODIC metric needs a period: MINUTE, HOUR, DAY or MONTH".into(),
                    );
                }
                if self.burst.is_some() {
                    return bad("burst", "burst applies to RATE metrics only".into());
                }
            }
            Kind::Gauge => {
                if self.period.is_some() || self.burst.is_some() {
                    return bad(
                        "period",
                        "a GAUGE metric takes neither period nor burst".into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The burst of a RATE rule.
    pub fn burst(&self) -> i64 {
        self.burst.unwrap_or(self.limit).max(1)
    }
}

/// Where a tenant's rule comes from.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "QuotaSource")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Source {
    /// The tenant's plan gives the limit.
    Plan,
    /// An override set for the tenant with setQuota.
    Override,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(period: Option<Period>, burst: Option<i64>) -> Rule {
        Rule {
            limit: 10,
            period,
            burst,
            enforcement: Enforcement::Hard,
        }
    }

    #[test]
    fn rules_follow_the_kind() {
        assert!(rule(None, Some(5)).check(Kind::Rate, "input").is_ok());
        let e = rule(Some(Period::Day), None)
            .check(Kind::Rate, "input")
            .unwrap_err();
        assert!(matches!(e, crate::Error::BadInput { field: Some(f), .. } if f == "input.period"));
        assert!(rule(None, None).check(Kind::Periodic, "input").is_err());
        assert!(
            rule(Some(Period::Month), None)
                .check(Kind::Periodic, "i")
                .is_ok()
        );
        assert!(rule(None, None).check(Kind::Gauge, "i").is_ok());
        let neg = Rule {
            limit: -1,
            ..rule(None, None)
        };
        assert!(neg.check(Kind::Gauge, "i").is_err());
    }

    #[test]
    fn metric_names_are_checked() {
        let mut d = MetricDef {
            name: "api.requests".into(),
            kind: Kind::Rate,
            unit: "request".into(),
            description: String::new(),
            fail_mode: FailMode::Open,
        };
        assert!(d.check().is_ok());
        d.name = "Bad Name".into();
        d.unit = String::new();
        assert_eq!(d.check().unwrap_err().len(), 2);
    }
}

/// What a cell publishes on `cell.usage`: its running total of one tenant's
/// usage of one metric in one hour (a total, not a delta, so applying the
/// newest version is enough).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollup {
    /// The tenant the usage belongs to.
    pub tenant_id: uuid::Uuid,
    /// The metric's name in the catalog.
    pub metric: String,
    /// The start of the UTC hour the total covers.
    pub hour_start: chrono::DateTime<chrono::Utc>,
    /// The cell that counted the usage.
    pub cell_id: String,
    /// Units used in that hour so far, in that cell.
    pub amount: i64,
}
