//! The data-plane hooks over HTTP/JSON: `POST /v1/quota/check`,
//! `POST /v1/quota/consume`, `POST /v1/quota/release` (GAUGE) and
//! `POST /v1/usage`. They need a `data-plane`
//! token bound to this cell (or a tenant-admin token, for its own tenants);
//! a token naming tenants may act for those only. Kept off the per-request
//! span layer: the hot path logs nothing unless it fails.

mod tokens;

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use shared::auth::{Keys, Principal, Role, bearer};
use shared::breakglass::Revocations;
use shared::error::Error;
use shared::ids::CellId;
use shared::quota::hooks::{CHECK, CONSUME, ErrorBody, ErrorDetail, RELEASE, USAGE, UsageBatch};
use uuid::Uuid;

use crate::quota::{Engine, Op, usage};

struct Hooks {
    engine: Arc<Engine>,
    keys: Arc<Keys>,
    tokens: Arc<tokens::Tokens>,
    revocations: Revocations,
    cell: CellId,
}

pub fn router(
    engine: Arc<Engine>,
    keys: Arc<Keys>,
    revocations: Revocations,
    cell: CellId,
    max_body: usize,
) -> Router {
    Router::new()
        .route(CHECK, post(check))
        .route(CONSUME, post(consume))
        .route(RELEASE, post(release))
        .route(USAGE, post(ingest))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        // One `Arc`: the state is cloned for every request.
        .with_state(Arc::new(Hooks {
            engine,
            keys,
            tokens: Arc::default(),
            revocations,
            cell,
        }))
}

fn error(e: Error) -> Response {
    let code = e.code();
    if let Error::Internal(err) = &e {
        tracing::error!(error = %err, "data-plane hook failed");
    }
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.as_str().to_owned(),
            message: e.to_string(),
        },
    };
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn authenticate(h: &Hooks, headers: &HeaderMap) -> Result<Arc<Principal>, Error> {
    let token = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(|_| Error::Unauthenticated("a bearer token is required".into()))?;
    let p = h
        .tokens
        .verify(&h.keys, token, chrono::Utc::now().timestamp())
        .map_err(|_| Error::Unauthenticated("the token is invalid or expired".into()))?;
    h.revocations
        .check(&p)
        .map_err(|_| Error::Unauthenticated("this break-glass access was revoked".into()))?;
    if let Some(c) = &p.cell
        && c != &h.cell
    {
        return Err(Error::Forbidden(format!("this token is bound to cell {c}")));
    }
    if p.has(Role::DataPlane) && p.cell.is_none() {
        return Err(Error::Forbidden(
            "a data-plane token must be bound to this cell".into(),
        ));
    }
    if !p.has_any(&[Role::DataPlane, Role::TenantAdmin, Role::PlatformAdmin]) {
        return Err(Error::Forbidden(
            "the hooks need a data-plane, tenant-admin or platform-admin token".into(),
        ));
    }
    Ok(p)
}

/// A token that names tenants acts for those only; tenant roles always name them.
fn may_act_for(p: &Principal, tenant: Uuid) -> Result<(), Error> {
    let ok = if p.tenants.is_empty() {
        p.has_any(&[Role::DataPlane, Role::PlatformAdmin])
    } else {
        p.tenants.iter().any(|t| t.0 == tenant)
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "this token may not act for tenant {tenant}"
        )))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::BadInput {
        field: None,
        message: format!("invalid request body: {e}"),
    })
}

async fn decide(h: &Hooks, headers: &HeaderMap, body: &Bytes, op: Op) -> Result<Response, Error> {
    let p = authenticate(h, headers)?;
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
    may_act_for(&p, tenant)?;
    let d = h
        .engine
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

async fn check(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    decide(&h, &headers, &body, Op::Check)
        .await
        .unwrap_or_else(error)
}

async fn consume(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    decide(&h, &headers, &body, Op::Consume)
        .await
        .unwrap_or_else(error)
}

async fn release(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    decide(&h, &headers, &body, Op::Release)
        .await
        .unwrap_or_else(error)
}

async fn ingest(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    let run = async {
        let p = authenticate(&h, &headers)?;
        let batch: UsageBatch = parse(&body)?;
        let tenants = usage::validate(&batch.events)?;
        for t in &tenants {
            may_act_for(&p, *t)?;
        }
        let answer = h.engine.ingest(&batch.events, &tenants).await?;
        Ok::<_, Error>(axum::Json(answer).into_response())
    };
    run.await.unwrap_or_else(error)
}
