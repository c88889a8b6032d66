//! `POST /v1/usage`: a batch of metered events, each counted once
//! (`quota::usage`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use shared::error::Error;
use shared::quota::hooks::UsageBatch;

use super::auth::{Access, authorize, may_act_for};
use super::error::rejected;
use super::{Plane, error};
use crate::quota::usage;

pub async fn ingest(
    State(p): State<Arc<Plane>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return rejected(r.status(), "body", r.body_text()),
    };
    let run = async {
        let principal = authorize(&p, &headers, Access::Write)?;
        let batch: UsageBatch = serde_json::from_slice(&body).map_err(|e| Error::BadInput {
            field: None,
            message: format!("invalid request body: {e}"),
        })?;
        let tenants = usage::validate(&batch.events)?;
        for t in &tenants {
            may_act_for(&principal, *t)?;
        }
        let answer = p.st.quota.ingest(&batch.events, &tenants).await?;
        Ok::<_, Error>(axum::Json(answer).into_response())
    };
    run.await.unwrap_or_else(error)
}
