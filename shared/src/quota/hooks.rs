//! The JSON shapes of the cell's data-plane hooks (`/v1/quota/check`,
//! `/v1/quota/consume`, `/v1/usage`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::TenantStatus;

/// Asks whether `amount` more may be used, without counting it (answers a [`Decision`]).
pub const CHECK: &str = "/v1/quota/check";
/// Counts `amount` if the limits allow it, idempotent by key (answers a [`Decision`]).
pub const CONSUME: &str = "/v1/quota/consume";
/// Reports metered usage after the fact, in batches of at most [`MAX_EVENTS`] (answers a [`UsageAnswer`]).
pub const USAGE: &str = "/v1/usage";
/// Lowers a GAUGE level (`amount` at most, never below zero), idempotent by key.
pub const RELEASE: &str = "/v1/quota/release";

/// Most events one `/v1/usage` request may carry.
pub const MAX_EVENTS: usize = 1000;

/// The body of check, consume and release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaRequest {
    /// The tenant's UUID.
    pub tenant_id: String,
    /// The metric's name in the catalog.
    pub metric: String,
    /// Units to check, consume or release: 1 to [`MAX_AMOUNT`].
    pub amount: i64,
    /// Required by consume and release; a check ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// What check, consume and release answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Whether the request may go ahead (SOFT limits allow past the limit).
    pub allowed: bool,
    /// Null when the tenant has no limit on the metric.
    pub limit: Option<i64>,
    /// What is left before the limit after this request (never below 0); null with no limit.
    pub remaining: Option<i64>,
    /// When the PERIODIC window resets or the RATE burst is full again; null otherwise.
    pub reset_at: Option<DateTime<Utc>>,
    /// When denied by a RATE limit: how long to wait before trying again, in milliseconds.
    pub retry_after_ms: Option<i64>,
    /// How much of this request went past a SOFT limit.
    pub overage: i64,
    /// Why the request was refused whatever the limits: the tenant is not
    /// ACTIVE. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Refusal>,
}

/// Why the data plane does not serve a tenant: it serves ACTIVE tenants only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Refusal {
    /// The tenant is SUSPENDED.
    TenantSuspended,
    /// The tenant is being deprovisioned.
    TenantDeprovisioning,
    /// Deleted or purged.
    TenantDeleted,
    /// Any other status that is not ACTIVE (still provisioning, failed).
    TenantInactive,
}

impl Refusal {
    /// Why a tenant in `status` is not served; none when it is ACTIVE.
    pub fn of(status: TenantStatus) -> Option<Self> {
        Some(match status {
            TenantStatus::Active => return None,
            TenantStatus::Suspended => Refusal::TenantSuspended,
            TenantStatus::Deprovisioning => Refusal::TenantDeprovisioning,
            TenantStatus::Deleted => Refusal::TenantDeleted,
            TenantStatus::Pending | TenantStatus::Provisioning | TenantStatus::Failed => {
                Refusal::TenantInactive
            }
        })
    }

    /// The wire code, such as `TENANT_SUSPENDED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TenantSuspended => "TENANT_SUSPENDED",
            Refusal::TenantDeprovisioning => "TENANT_DEPROVISIONING",
            Refusal::TenantDeleted => "TENANT_DELETED",
            Refusal::TenantInactive => "TENANT_INACTIVE",
        }
    }
}

/// The most one quota request (`amount`) or one usage event may count: a
/// larger amount is refused at the edge, so no counter can overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000;

/// One metered use reported to [`USAGE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageEvent {
    /// The tenant's UUID.
    pub tenant_id: String,
    /// The metric's name in the catalog.
    pub metric: String,
    /// Units used: 1 to [`MAX_AMOUNT`].
    pub amount: i64,
    /// Makes the event count once however often it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When the usage happened; it is counted in that UTC hour.
    pub timestamp: DateTime<Utc>,
}

/// The body of a [`USAGE`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBatch {
    /// At most [`MAX_EVENTS`] events.
    pub events: Vec<UsageEvent>,
}

/// What became of one usage event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Counted.
    Accepted,
    /// Already counted under the same idempotency key; not counted again.
    Duplicate,
    /// Not counted; `reason` says why.
    Rejected,
}

/// The outcome of one usage event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageResult {
    /// The event's idempotency key.
    pub idempotency_key: String,
    /// Whether the event was counted.
    pub status: Status,
    /// Why a rejected event was not counted; null otherwise.
    pub reason: Option<String>,
}

/// What a [`USAGE`] request answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageAnswer {
    /// One result per event.
    pub results: Vec<UsageResult>,
}

/// The one error body of every `/v1/` route of a cell:
/// `{error: {code, message, field?, requestId?}}`, with a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// A stable `shared::error::Code` (`BAD_USER_INPUT`, `NOT_FOUND`, …).
    pub code: String,
    /// Readable text for humans; not stable, do not match on it.
    pub message: String,
    /// The input field at fault, for `BAD_USER_INPUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `INTERNAL`: the id the cell logged the cause under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_tenants_are_served_and_refusals_serialize_as_their_codes() {
        assert_eq!(Refusal::of(TenantStatus::Active), None);
        for (status, code) in [
            (TenantStatus::Suspended, "TENANT_SUSPENDED"),
            (TenantStatus::Deprovisioning, "TENANT_DEPROVISIONING"),
            (TenantStatus::Deleted, "TENANT_DELETED"),
            (TenantStatus::Failed, "TENANT_INACTIVE"),
            (TenantStatus::Provisioning, "TENANT_INACTIVE"),
        ] {
            let r = Refusal::of(status).expect("refused");
            assert_eq!(r.as_str(), code);
            assert_eq!(serde_json::to_value(r).unwrap(), code);
        }
        // A decision without a refusal carries no `reason` key at all.
        let d = Decision {
            allowed: true,
            limit: None,
            remaining: None,
            reset_at: None,
            retry_after_ms: None,
            overage: 0,
            reason: None,
        };
        assert!(serde_json::to_value(d).unwrap().get("reason").is_none());
        let refused = Decision {
            allowed: false,
            reason: Some(Refusal::TenantSuspended),
            ..d
        };
        let v = serde_json::to_value(refused).unwrap();
        assert_eq!(v["reason"], "TENANT_SUSPENDED");
        assert_eq!(serde_json::from_value::<Decision>(v).unwrap(), refused);
    }
}
