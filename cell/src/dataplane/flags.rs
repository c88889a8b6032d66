//! Flag evaluation from the compiled snapshot: `GET /v1/tenants/{id}/flags`,
//! `POST /v1/flags/evaluate`, and `GET /v1/flags/snapshot` (the stored
//! snapshot, for `tenantctl flags eval --snapshot`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::error::Error;
use shared::flags::def::check_environment;
use shared::flags::eval::Context;
use uuid::Uuid;

use super::auth::{Access, authorize};
use super::{Plane, error};

fn environment(env: Option<&str>) -> Result<&str, Error> {
    let env = env.ok_or_else(|| Error::bad_input("environment", "environment is required"))?;
    check_environment(env).map_err(|m| Error::bad_input("environment", m))?;
    Ok(env)
}

fn not_here(id: Uuid) -> Error {
    Error::NotFound(format!("tenant {id} not found in this cell"))
}

#[derive(Deserialize)]
pub struct EnvQuery {
    environment: Option<String>,
}

pub async fn tenant_flags(
    State(p): State<Arc<Plane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Response {
    let engine = p.st.flags.engine();
    let run = || {
        authorize(&p, &headers, Access::Flags)?;
        let id = Uuid::parse_str(&id)
            .map_err(|_| Error::bad_input("tenantId", format!("`{id}` is not a tenant id")))?;
        let env = environment(q.environment.as_deref())?;
        let flags = engine
            .evaluate_all(id, env, &Context::new())
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

pub async fn evaluate(
    State(p): State<Arc<Plane>>,
    headers: HeaderMap,
    body: Result<Json<EvaluateRequest>, JsonRejection>,
) -> Response {
    let engine = p.st.flags.engine();
    let run = || {
        authorize(&p, &headers, Access::Flags)?;
        let Json(req) = body.map_err(|e| Error::bad_input("body", e.body_text()))?;
        let env = environment(req.environment.as_deref())?;
        let e = engine
            .evaluate(req.tenant_id, &req.flag_key, env, &req.context)
            .map_err(|_| not_here(req.tenant_id))?;
        Ok::<_, Error>(Json(e).into_response())
    };
    run().unwrap_or_else(error)
}

pub async fn snapshot(State(p): State<Arc<Plane>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&p, &headers, Access::Flags) {
        return error(e);
    }
    match crate::flags::load(&p.st.db, p.st.cell_id.as_str()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(e),
    }
}
