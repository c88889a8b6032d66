//! Flag evaluation from the compiled snapshot: `GET /v1/tenants/{id}/flags`,
//! `POST /v1/flags/evaluate`, and `GET /v1/flags/snapshot` (the stored
//! snapshot, for `tenantctl flags eval --snapshot`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::error::Error;
use shared::flags::def::check_environment;
use shared::flags::eval::Context;
use uuid::Uuid;

use super::auth::{Access, authorize, may_act_for, may_act_for_all};
use super::error::rejected;
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
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<EnvQuery>, QueryRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(r) => return rejected(r.status(), "tenantId", r.body_text()),
    };
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return rejected(r.status(), "query", r.body_text()),
    };
    let engine = p.st.flags.engine();
    let run = || {
        let principal = authorize(&p, &headers, Access::Read)?;
        let id = Uuid::parse_str(&id)
            .map_err(|_| Error::bad_input("tenantId", format!("`{id}` is not a tenant id")))?;
        may_act_for(&principal, id)?;
        let env = environment(q.environment.as_deref())?;
        // The data plane serves ACTIVE tenants only: the others get every
        // flag's off variant.
        let flags = if p.st.statuses.inactive(id).is_some() {
            engine.inactive_all()
        } else {
            engine
                .evaluate_all(id, env, &Context::new())
                .map_err(|_| not_here(id))?
        };
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
        let principal = authorize(&p, &headers, Access::Read)?;
        let Json(req) = match body {
            Ok(b) => b,
            Err(r) => return Ok(rejected(r.status(), "body", r.body_text())),
        };
        may_act_for(&principal, req.tenant_id)?;
        let env = environment(req.environment.as_deref())?;
        let e = if p.st.statuses.inactive(req.tenant_id).is_some() {
            engine.inactive(&req.flag_key)
        } else {
            engine
                .evaluate(req.tenant_id, &req.flag_key, env, &req.context)
                .map_err(|_| not_here(req.tenant_id))?
        };
        Ok::<_, Error>(Json(e).into_response())
    };
    run().unwrap_or_else(error)
}

pub async fn snapshot(State(p): State<Arc<Plane>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&p, &headers, Access::Read).and_then(|p| may_act_for_all(&p)) {
        return error(e);
    }
    match crate::flags::load(&p.st.db, p.st.cell_id.as_str()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(e),
    }
}
