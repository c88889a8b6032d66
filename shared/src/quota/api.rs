//! The GraphQL shapes of the metric catalog and quotas, the same on both
//! APIs: the global tier forwards quota reads and writes to the home cell.

use async_graphql::{Enum, ID, InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Enforcement, FailMode, Kind, MetricDef, Period, Source, store};

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefineMetricInput {
    pub name: String,
    pub kind: Kind,
    pub unit: String,
    #[graphql(default)]
    pub description: String,
    /// What cells decide when the shared limiter store is unreachable.
    #[graphql(default_with = "FailMode::Closed")]
    pub fail_mode: FailMode,
    /// Required to change an existing metric (its current version).
    pub expected_version: Option<i64>,
}

impl DefineMetricInput {
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
    pub name: String,
    pub kind: Kind,
    pub unit: String,
    pub description: String,
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

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetQuotaInput {
    pub tenant_id: ID,
    pub metric: String,
    pub limit: i64,
    /// PERIODIC metrics only.
    pub period: Option<Period>,
    /// RATE metrics only (defaults to the limit).
    pub burst: Option<i64>,
    pub enforcement: Enforcement,
    /// The override's current version (0 when the tenant has none yet).
    pub expected_version: i64,
    pub idempotency_key: String,
}

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearQuotaInput {
    pub tenant_id: ID,
    pub metric: String,
    pub expected_version: i64,
    pub idempotency_key: String,
}

/// One metric's limit for a tenant, and where it stands.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    pub metric: String,
    pub kind: Kind,
    pub limit: i64,
    pub period: Option<Period>,
    pub burst: Option<i64>,
    pub enforcement: Enforcement,
    /// In the current window (PERIODIC), the level (GAUGE), or drawn from the burst (RATE).
    pub used: i64,
    pub remaining: i64,
    /// When the window resets (PERIODIC) or the burst is full again (RATE).
    pub reset_at: Option<DateTime<Utc>>,
    pub source: Source,
    /// The override's version: increases with every setQuota/clearQuota (0 when never overridden).
    pub version: i64,
}

/// What setQuota and clearQuota answer.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaChange {
    pub metric: String,
    pub version: i64,
    pub source: Source,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "UsageGranularity")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

impl Granularity {
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
    pub start: DateTime<Utc>,
    pub amount: i64,
}
