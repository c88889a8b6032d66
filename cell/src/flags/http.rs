//! The data-plane hooks: `GET /v1/tenants/{id}/flags`, `POST
//! /v1/flags/evaluate` and `GET /v1/flags/snapshot`, for a `data-plane`
//! token bound to this cell (or a platform-admin). Served outside the
//! per-request span layer: evaluation is a hot path.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::Error;
use shared::auth::{Keys, Role, bearer};
use shared::flags::def::check_environment;
use shared::flags::eval::Context;
use uuid::Uuid;

use crate::State;

#[derive(Clone)]
pub struct Hooks {
    pub st: State,
    pub keys: Arc<Keys>,
}

pub fn routes(st: State, keys: Arc<Keys>) -> Router {
    Router::new()
        .route("/v1/tenants/{id}/flags", get(tenant_flags))
        .route("/v1/flags/evaluate", post(evaluate))
        .route("/v1/flags/snapshot", get(snapshot))
        .route("/v1/signals", post(super::signals::post))
        .layer(DefaultBodyLimit::max(256 * 1024))
        .with_state(Hooks { st, keys })
}

/// A coded error as JSON, with the matching HTTP status.
pub fn error(e: Error) -> Response {
    let code = e.code();
    let (message, request_id) = e.public_message();
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({ "error": { "code": code.as_str(), "message": message, "requestId": request_id } })),
    )
        .into_response()
}

/// A `data-plane` token bound to this cell, or a platform-admin.
pub fn authorize(h: &Hooks, headers: &HeaderMap) -> Result<(), Error> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let p = h.keys.verify(bearer(auth)?)?;
    h.st.revocations.check(&p)?;
    if p.has(Role::PlatformAdmin)
        || (p.has(Role::DataPlane) && p.cell.as_ref() == Some(&h.st.cell_id))
    {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "the data-plane hooks need a data-plane token bound to cell {}",
        h.st.cell_id
    )))
}

fn environment(env: Option<&str>) -> Result<String, Error> {
    let env = env.ok_or_else(|| Error::bad_input("environment", "environment is required"))?;
    check_environment(env).map_err(|m| Error::bad_input("environment", m))?;
    Ok(env.to_owned())
}

fn not_here(id: Uuid) -> Error {
    Error::NotFound(format!("tenant {id} not found in this cell"))
}

#[derive(Deserialize)]
struct EnvQuery {
    environment: Option<String>,
}

async fn tenant_flags(
    AxState(h): AxState<Hooks>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Response {
    let engine = h.st.flags.engine();
    let run = || {
        authorize(&h, &headers)?;
        let id = Uuid::parse_str(&id)
            .map_err(|_| Error::bad_input("tenantId", format!("`{id}` is not a tenant id")))?;
        let env = environment(q.environment.as_deref())?;
        let flags = engine
            .evaluate_all(id, &env, &Context::new())
            .map_err(|_| not_here(id))?;
        Ok::<_, Error>(
            Json(json!({ "tenantId": id, "environment": env, "flags": flags })).into_response(),
        )
    };
    run().unwrap_or_else(error)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateRequest {
    pub tenant_id: Uuid,
    pub flag_key: String,
    pub environment: Option<String>,
    #[serde(default)]
    pub context: HashMap<String, Value>,
}

async fn evaluate(
    AxState(h): AxState<Hooks>,
    headers: HeaderMap,
    body: Result<Json<EvaluateRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let engine = h.st.flags.engine();
    let run = || {
        authorize(&h, &headers)?;
        let Json(req) = body.map_err(|e| Error::bad_input("body", e.body_text()))?;
        let env = environment(req.environment.as_deref())?;
        let e = engine
            .evaluate(req.tenant_id, &req.flag_key, &env, &req.context)
            .map_err(|_| not_here(req.tenant_id))?;
        Ok::<_, Error>(Json(e).into_response())
    };
    run().unwrap_or_else(error)
}

/// The stored snapshot, for `tenantctl flags eval --snapshot`.
async fn snapshot(AxState(h): AxState<Hooks>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&h, &headers) {
        return error(e);
    }
    match super::load(&h.st.db, h.st.cell_id.as_str()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(e),
    }
}
