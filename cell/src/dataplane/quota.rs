//! `POST /v1/quota/check` (a dry run), `/v1/quota/consume` and
//! `/v1/quota/release` (GAUGE): one decision of the quota engine each.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use shared::error::Error;
use uuid::Uuid;

use super::auth::{Access, authorize, may_act_for};
use super::error::rejected;
use super::{Plane, error};
use crate::quota::Op;

async fn decide(p: &Plane, headers: &HeaderMap, body: &Bytes, op: Op) -> Result<Response, Error> {
    let access = if op == Op::Check {
        Access::Read
    } else {
        Access::Write
    };
    let principal = authorize(p, headers, access)?;
    // `QuotaRequest`, borrowing from the body where it can.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req<'a> {
        #[serde(borrow)]
        tenant_id: Cow<'a, str>,
        #[serde(borrow)]
        metric: Cow<'a, str>,
        amount: i64,
        #[serde(borrow, default)]
        idempotency_key: Option<Cow<'a, str>>,
    }
    let req: Req<'_> = serde_json::from_slice(body).map_err(|e| Error::BadInput {
        field: None,
        message: format!("invalid request body: {e}"),
    })?;
    let tenant: Uuid = req.tenant_id.parse().map_err(|_| {
        Error::bad_input(
            "tenantId",
            format!("`{}` is not a tenant id", req.tenant_id),
        )
    })?;
    may_act_for(&principal, tenant)?;
    let d =
        p.st.quota
            .decide(
                tenant,
                &req.metric,
                req.amount,
                req.idempotency_key.as_deref(),
                op,
            )
            .await?;
    Ok(axum::Json(d).into_response())
}

pub async fn check(
    State(p): State<Arc<Plane>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => decide(&p, &headers, &body, Op::Check)
            .await
            .unwrap_or_else(error),
        Err(r) => rejected(r.status(), "body", r.body_text()),
    }
}

pub async fn consume(
    State(p): State<Arc<Plane>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => decide(&p, &headers, &body, Op::Consume)
            .await
            .unwrap_or_else(error),
        Err(r) => rejected(r.status(), "body", r.body_text()),
    }
}

pub async fn release(
    State(p): State<Arc<Plane>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => decide(&p, &headers, &body, Op::Release)
            .await
            .unwrap_or_else(error),
        Err(r) => rejected(r.status(), "body", r.body_text()),
    }
}
