//! The GraphQL shapes of the metric catalog and quotas, the same on both
//! APIs: the global tier forwards quota reads and writes to the home cell.

use async_graphql::{Enum, ID, InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Enforcement, FailMode, Kind, MetricDef, Period, Source, store};

/// Defines a metric of the catalog, or changes an existing one.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefineMetricInput {
    /// Lowercase letters, digits, '.' and '_', starting with a letter; at most 64 characters.
    pub name: String,
    /// How the metric is limited: RATE, PERIODIC or GAUGE.
    pub kind: Kind,
    /// What one unit of the metric counts, such as `request` or `seat` (1 to 32 characters).
    pub unit: String,
    /// Free text for operators (at most 1024 characters).
    #[graphql(default)]
    pub description: String,
    /// What cells decide when the shared limiter store is unreachable.
    #[graphql(default_with = "FailMode::Closed")]
    pub fail_mode: FailMode,
    /// Required to change an existing metric (its current version).
    pub expected_version: Option<i64>,
}

impl DefineMetricInput {
    /// The catalog entry this input describes.
    pub fn def(&self) -> MetricDef {
        MetricDef {
            name: self.name.clone(),
            kind: self.kind,
            unit: self.unit.clone(),
            description: self.description.clone(),
            fail_mode: self.fail_mode,
        }
    }
}

/// A metric as both APIs show it.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[graphql(name = "Metric")]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    /// The metric's name, unique in the catalog.
    pub name: String,
    /// How the metric is limited: RATE, PERIODIC or GAUGE.
    pub kind: Kind,
    /// What one unit of the metric counts, such as `request` or `seat`.
    pub unit: String,
    /// Free text for operators.
    pub description: String,
    /// What cells decide when the shared limiter store is unreachable.
    pub fail_mode: FailMode,
    /// Increases with every change to the definition.
    pub version: i64,
}

impl From<store::Stored> for MetricView {
    fn from(s: store::Stored) -> Self {
        Self {
            name: s.def.name,
            kind: s.def.kind,
            unit: s.def.unit,
            description: s.def.description,
            fail_mode: s.def.fail_mode,
            version: s.version,
        }
    }
}

/// Overrides a tenant's limit on one metric, replacing its plan's default.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetQuotaInput {
    /// The tenant whose limit changes.
    pub tenant_id: ID,
    /// The metric's name in the catalog.
    pub metric: String,
    /// 0 or more: per second for RATE, per period for PERIODIC, the level for GAUGE.
    pub limit: i64,
    /// PERIODIC metrics only.
    pub period: Option<Period>,
    /// RATE metrics only (defaults to the limit).
    pub burst: Option<i64>,
    /// HARD denies past the limit; SOFT allows and flags the overage.
    pub enforcement: Enforcement,
    /// The override's current version (0 when the tenant has none yet).
    pub expected_version: i64,
    /// Makes retries safe: a repeated key with the same input answers the first result; with different input it is a CONFLICT.
    pub idempotency_key: String,
}

/// Removes a tenant's override on one metric, so its plan's default applies again.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearQuotaInput {
    /// The tenant whose override is removed.
    pub tenant_id: ID,
    /// The metric's name in the catalog.
    pub metric: String,
    /// The override's current version; a stale one is refused as a conflict.
    pub expected_version: i64,
    /// Makes retries safe: a repeated key with the same input answers the first result; with different input it is a CONFLICT.
    pub idempotency_key: String,
}

/// One metric's limit for a tenant, and where it stands.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// The metric's name in the catalog.
    pub metric: String,
    /// How the metric is limited: RATE, PERIODIC or GAUGE.
    pub kind: Kind,
    /// Per second for RATE, per period for PERIODIC, the level for GAUGE.
    pub limit: i64,
    /// The window of a PERIODIC metric; null for the other kinds.
    pub period: Option<Period>,
    /// How many may come at once (RATE only; null for the other kinds).
    pub burst: Option<i64>,
    /// HARD denies past the limit; SOFT allows and flags the overage.
    pub enforcement: Enforcement,
    /// In the current window (PERIODIC), the level (GAUGE), or drawn from the burst (RATE).
    pub used: i64,
    /// What is left before the limit (never below 0).
    pub remaining: i64,
    /// When the window resets (PERIODIC) or the burst is full again (RATE).
    pub reset_at: Option<DateTime<Utc>>,
    /// Whether the limit is the plan's default or a tenant override.
    pub source: Source,
    /// The override's version: increases with every setQuota/clearQuota (0 when never overridden).
    pub version: i64,
}

/// What setQuota and clearQuota answer.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaChange {
    /// The metric's name in the catalog.
    pub metric: String,
    /// The override's new version (0 after clearQuota).
    pub version: i64,
    /// Where the tenant's limit comes from now.
    pub source: Source,
}

/// The size of the buckets usage is reported in.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "UsageGranularity")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Granularity {
    /// One bucket per UTC hour.
    Hour,
    /// One bucket per UTC day.
    Day,
    /// One bucket per UTC calendar month.
    Month,
}

impl Granularity {
    /// The quota period of the same length.
    pub fn period(self) -> Period {
        match self {
            Granularity::Hour => Period::Hour,
            Granularity::Day => Period::Day,
            Granularity::Month => Period::Month,
        }
    }
}

/// Usage of one metric in one bucket.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsagePoint {
    /// When the bucket starts (UTC, aligned to the granularity).
    pub start: DateTime<Utc>,
    /// Units of the metric used in the bucket.
    pub amount: i64,
}
