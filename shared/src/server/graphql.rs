//! GraphQL over HTTP (`POST /graphql`, GraphiQL on `GET /graphql` in dev
//! mode) and over WebSocket (`/graphql/ws`, both graphql-transport-ws and the
//! legacy graphql-ws protocol), authenticated by JWT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor, ServerError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Extension, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, watch};

mod ws;

use ws::websocket;

use super::Shared;
use super::ratelimit::CallerLimiter;
use crate::auth::{Keys, Principal, REFUSED, bearer};
use crate::breakglass::{self, Revocations};
use crate::error::{Code, Error};
use crate::metrics::operation::{PlacementLookup, RequestFacts, inspect};
use crate::metrics::{Metrics, Outcome};
use crate::request::RequestId;

/// The request's span, so resolvers can record the tenant they act on.
#[derive(Clone)]
pub struct RequestSpan(pub tracing::Span);

/// Records `tenant_id` on the current request's span and in its metrics.
pub fn record_tenant(ctx: &async_graphql::Context<'_>, tenant: &dyn std::fmt::Display) {
    if let Some(RequestSpan(span)) = ctx.data_opt::<RequestSpan>() {
        span.record("tenant_id", tracing::field::display(tenant));
    }
    if let Some(facts) = ctx.data_opt::<RequestFacts>() {
        facts.set_tenant(tenant);
    }
}

/// Where a tenant lives and on what plan, as far as the resolver knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement<'a> {
    /// The tenant's home cell.
    pub cell: Option<&'a str>,
    /// The tenant's region.
    pub region: Option<&'a str>,
    /// The tenant's plan.
    pub plan: Option<&'a str>,
}

/// Records the tenant with its home cell, region and plan: on the span
/// (`cell`, `region`, `plan`: at the global tier the tenant's, in a cell its
/// own) and as the request's metric labels.
pub fn record_tenant_at(
    ctx: &async_graphql::Context<'_>,
    tenant: &dyn std::fmt::Display,
    at: Placement<'_>,
) {
    record_tenant(ctx, tenant);
    let (cell, plan) = (at.cell, at.plan);
    if let Some(RequestSpan(span)) = ctx.data_opt::<RequestSpan>() {
        for (field, v) in [("cell", cell), ("region", at.region), ("plan", plan)] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                span.record(field, v);
            }
        }
    }
    if let Some(facts) = ctx.data_opt::<RequestFacts>() {
        facts.set_placement(cell, plan);
    }
}

/// The GraphQL routes every tier serves: `POST /graphql`, subscriptions on `/graphql/ws`, GraphiQL on `GET /graphql` in dev mode.
pub struct GraphqlRoutes;

/// A subject lost authority it may have relied on: its membership of
/// `tenant` was removed. Its subscription connections close (4403), unless
/// its token alone lets it read that tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionEnd {
    /// The subject whose authority ended.
    pub subject: String,
    /// The tenant it lost access to; none when it lost all its access.
    pub tenant: Option<crate::ids::TenantId>,
}

/// The close code of a connection whose authority was refused or ended
/// (graphql-ws's `Forbidden`).
pub const CLOSE_FORBIDDEN: u16 = 4403;

/// The longest an error message a client gets may be: an error never
/// echoes a large input back.
pub const MAX_ERROR_MESSAGE: usize = 1024;

#[derive(Clone)]
struct GqlState<E> {
    executor: E,
    keys: Arc<Keys>,
    revocations: Revocations,
    metrics: Metrics,
    placement: Option<Arc<dyn PlacementLookup>>,
    dev_mode: bool,
    timeout: std::time::Duration,
    limiter: Arc<CallerLimiter>,
    session_ends: Option<Arc<crate::events::Bus<SessionEnd>>>,
}

impl GraphqlRoutes {
    /// The routes, serving `executor` with the tier's keys, limits and revocations.
    pub fn router<E: Executor>(executor: E, shared: &Shared) -> Router {
        let st = GqlState {
            executor,
            keys: shared.keys.clone(),
            revocations: shared.revocations.clone(),
            metrics: shared.metrics.clone(),
            placement: shared.placement.clone(),
            dev_mode: shared.dev_mode,
            timeout: std::time::Duration::from_millis(shared.limits.request_timeout_ms),
            limiter: Arc::new(CallerLimiter::new(
                shared.limits.rate_limit_per_sec,
                shared.limits.rate_limit_burst,
            )),
            session_ends: shared.session_ends.clone(),
        };
        Router::new()
            .route("/graphql", get(graphiql::<E>).post(post_graphql::<E>))
            .route("/graphql/ws", get(websocket::<E>))
            .with_state(st)
    }
}

async fn graphiql<E: Executor>(State(st): State<GqlState<E>>) -> Response {
    if !st.dev_mode {
        return error_response(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "GraphiQL is served only in dev mode; POST queries to /graphql".into(),
            None,
        );
    }
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
    .into_response()
}

async fn post_graphql<E: Executor>(
    State(st): State<GqlState<E>>,
    Extension(request_id): Extension<RequestId>,
    Extension(span): Extension<RequestSpan>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let facts = RequestFacts::default();
    let (response, outcome) = execute_post(&st, &request_id, span, &facts, headers, body).await;
    let elapsed = started.elapsed();
    if let Some(lookup) = &st.placement {
        facts.complete(lookup.as_ref()).await;
    }
    st.metrics
        .record_operation(&facts.snapshot(), outcome, elapsed);
    response
}

async fn execute_post<E: Executor>(
    st: &GqlState<E>,
    request_id: &RequestId,
    span: RequestSpan,
    facts: &RequestFacts,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (Response, Outcome) {
    let rid = Some(request_id);
    let rejected = |r: Response| (r, Outcome::Rejected);
    let body = match body {
        Ok(b) => b,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return rejected(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::BadUserInput,
                "request body is too large".into(),
                rid,
            ));
        }
        Err(rej) => {
            return rejected(error_response(
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                format!("cannot read request body: {rej}"),
                rid,
            ));
        }
    };
    let principal = match authenticate(
        &st.keys,
        &st.revocations,
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    ) {
        Ok(p) => p,
        Err(e) => {
            st.metrics
                .graphql_errors
                .with_label_values(&[Code::Unauthenticated.as_str()])
                .inc();
            return rejected(error_response(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                e.to_string(),
                rid,
            ));
        }
    };
    if let Err(retry_ms) = st.limiter.check(&principal) {
        st.metrics
            .graphql_errors
            .with_label_values(&[Code::RateLimited.as_str()])
            .inc();
        let mut resp = error_response_with(
            StatusCode::TOO_MANY_REQUESTS,
            Code::RateLimited,
            format!("too many requests from this caller; retry in {retry_ms} ms"),
            rid,
            serde_json::json!({ "retryAfterMs": retry_ms }),
        );
        if let Ok(v) = header::HeaderValue::from_str(&retry_ms.div_ceil(1000).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return rejected(resp);
    }
    let mut request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return rejected(error_response(
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                format!("malformed GraphQL request: {e}; expected a JSON object with `query`"),
                rid,
            ));
        }
    };
    // Parsed once here; execution reuses the parsed document. A query that
    // does not parse is answered here, without echoing it.
    let (operation, tenant) = match async_graphql::parser::parse_query(&request.query) {
        Ok(doc) => {
            let seen = inspect(&doc, request.operation_name.as_deref(), &request.variables);
            request.set_parsed_query(doc);
            seen
        }
        Err(e) => {
            st.metrics
                .graphql_errors
                .with_label_values(&[Code::BadUserInput.as_str()])
                .inc();
            let (message, locations) = parse_error(&e);
            return rejected(error_response_with(
                StatusCode::OK,
                Code::BadUserInput,
                message,
                rid,
                serde_json::json!({ "locations": locations }),
            ));
        }
    };
    if let Some(op) = &operation {
        span.0.record("operation", op.as_str());
    }
    if let Some(t) = &tenant {
        span.0.record("tenant_id", t.as_str());
        facts.set_tenant(t);
    }
    let bg = breakglass::of_request(
        &principal,
        headers
            .get(breakglass::HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    if let Some(id) = bg {
        span.0.record("break_glass", tracing::field::display(id));
    }
    let request = request
        .data(principal)
        .data(request_id.clone())
        .data(span)
        .data(facts.clone());
    let Ok(mut response) = tokio::time::timeout(
        st.timeout,
        breakglass::scope(bg, st.executor.execute(request)),
    )
    .await
    else {
        st.metrics
            .graphql_errors
            .with_label_values(&[Code::Unavailable.as_str()])
            .inc();
        facts.set_operation(operation);
        return (
            error_response(
                StatusCode::GATEWAY_TIMEOUT,
                Code::Unavailable,
                format!(
                    "the request did not finish within {} ms; a mutation may still complete: retry it with the same idempotency key",
                    st.timeout.as_millis()
                ),
                rid,
            ),
            Outcome::Error,
        );
    };
    let mut outcome = Outcome::Ok;
    for err in &mut response.errors {
        let code = ensure_code(err);
        st.metrics.graphql_errors.with_label_values(&[code]).inc();
        if matches!(code, "UNAUTHENTICATED" | "FORBIDDEN" | "NOT_FOUND") {
            facts.set_denied();
        }
        outcome = match (outcome, code) {
            (_, "INTERNAL" | "UNAVAILABLE") => Outcome::Error,
            (Outcome::Error, _) => Outcome::Error,
            _ => Outcome::Rejected,
        };
    }
    // Only an executed request (it passed validation) names a field of the
    // schema: data came back, or an error has a path into it.
    let executed = !matches!(response.data, async_graphql::Value::Null)
        || response.errors.iter().any(|e| !e.path.is_empty());
    if executed {
        facts.set_operation(operation);
    }
    (axum::Json(response).into_response(), outcome)
}

/// What a client is told of a query that does not parse: where, and what
/// was expected there, never the text around it (the parser's own message
/// quotes the offending line, however long).
fn parse_error(e: &async_graphql::parser::Error) -> (String, serde_json::Value) {
    use async_graphql::parser::Error as P;
    let locations: Vec<serde_json::Value> = e
        .positions()
        .take(1)
        .map(|p| serde_json::json!({ "line": p.line, "column": p.column }))
        .collect();
    let at = e
        .positions()
        .next()
        .map(|p| format!(" at line {}, column {}", p.line, p.column))
        .unwrap_or_default();
    let mut message = match e {
        P::Syntax { message, .. } => {
            // pest ends its message with `= expected …` after the quoted line.
            let expected = message
                .lines()
                .rev()
                .find_map(|l| l.trim_start().strip_prefix("= "))
                .unwrap_or("unexpected input");
            format!("the query does not parse{at}: {expected}")
        }
        P::RecursionLimitExceeded => "the query is nested too deeply to parse".to_string(),
        other => format!("the query is not a valid document{at}: {other}"),
    };
    truncate(&mut message, 256);
    (message, serde_json::Value::Array(locations))
}

/// Cuts `s` to at most `max` bytes (on a character boundary), marking the cut.
fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

/// Verifies the bearer token (and that its break-glass request, if any, was
/// not revoked) and logs why one was refused.
fn authenticate(
    keys: &Keys,
    revocations: &Revocations,
    authorization: Option<&str>,
) -> Result<Principal, Error> {
    authenticate_expiring(keys, revocations, authorization).map(|(p, _)| p)
}

/// As [`authenticate`], with the token's `exp` (epoch seconds). The reason
/// of a refusal is logged (by `From<TokenError>`); the caller gets [`REFUSED`].
fn authenticate_expiring(
    keys: &Keys,
    revocations: &Revocations,
    authorization: Option<&str>,
) -> Result<(Principal, i64), Error> {
    let token = bearer(authorization)?;
    let (p, exp) = keys.verify_expiring(token)?;
    revocations.check(&p)?;
    Ok((p, exp))
}

/// Errors raised by the GraphQL engine itself (parse, validation, limits,
/// argument coercion) carry no code: they are all the client's input.
fn ensure_code(err: &mut ServerError) -> &'static str {
    truncate(&mut err.message, MAX_ERROR_MESSAGE);
    if let Some(code) = err
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(|v| match v {
            async_graphql::Value::String(s) => Code::parse(s),
            _ => None,
        })
    {
        return code.as_str();
    }
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", Code::BadUserInput.as_str());
    Code::BadUserInput.as_str()
}

fn error_response(
    status: StatusCode,
    code: Code,
    message: String,
    request_id: Option<&RequestId>,
) -> Response {
    error_response_with(status, code, message, request_id, serde_json::json!({}))
}

/// An error answer whose extensions carry `extra` beside the code.
fn error_response_with(
    status: StatusCode,
    code: Code,
    message: String,
    request_id: Option<&RequestId>,
    extra: serde_json::Value,
) -> Response {
    let mut ext = extra;
    ext["code"] = code.as_str().into();
    if let Some(id) = request_id {
        ext["requestId"] = id.as_str().into();
    }
    (
        status,
        axum::Json(serde_json::json!({
            "data": null,
            "errors": [{ "message": message, "extensions": ext }],
        })),
    )
        .into_response()
}
