//! A client of one cell's data-plane hooks.

use std::time::Duration;

use super::hooks::{
    CHECK, CONSUME, Decision, ErrorBody, QuotaRequest, RELEASE, USAGE, UsageAnswer, UsageBatch,
};
use crate::error::{Code, Error};

/// Calls one cell's data-plane hooks over HTTP: the cell's error bodies come back as [`Error`]s with their codes, an unreachable cell as `UNAVAILABLE`.
#[derive(Clone)]
pub struct HooksClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HooksClient {
    /// `base` is the cell's URL; `token` a data-plane token bound to it.
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// A dry run: what consume would answer, counting nothing.
    pub async fn check(&self, tenant: &str, metric: &str, amount: i64) -> crate::Result<Decision> {
        let req = QuotaRequest {
            tenant_id: tenant.to_owned(),
            metric: metric.to_owned(),
            amount,
            idempotency_key: None,
        };
        self.post(CHECK, &req).await
    }

    /// Counts `amount` unless a HARD limit denies it; a retry with the same
    /// key answers the first decision and counts nothing.
    pub async fn consume(
        &self,
        tenant: &str,
        metric: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> crate::Result<Decision> {
        let req = QuotaRequest {
            tenant_id: tenant.to_owned(),
            metric: metric.to_owned(),
            amount,
            idempotency_key: Some(idempotency_key.to_owned()),
        };
        self.post(CONSUME, &req).await
    }

    /// Lowers a GAUGE level by `amount` (never below zero); a retry with the
    /// same key answers the first decision and releases nothing more.
    pub async fn release(
        &self,
        tenant: &str,
        metric: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> crate::Result<Decision> {
        let req = QuotaRequest {
            tenant_id: tenant.to_owned(),
            metric: metric.to_owned(),
            amount,
            idempotency_key: Some(idempotency_key.to_owned()),
        };
        self.post(RELEASE, &req).await
    }

    /// Reports usage; each event is answered accepted, duplicate or rejected.
    pub async fn usage(&self, batch: &UsageBatch) -> crate::Result<UsageAnswer> {
        self.post(USAGE, batch).await
    }

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> crate::Result<T> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("cell hooks unreachable: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Unavailable(format!("cell hooks answer cut: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(Error::internal);
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(Error::from_remote(
                Code::parse(&b.error.code).unwrap_or(Code::Internal),
                b.error.message,
                b.error.field,
            )),
            Err(_) => Err(Error::Unavailable(format!("cell hooks answered {status}"))),
        }
    }
}
