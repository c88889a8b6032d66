//! `/healthz`, `/readyz` and `/metrics`.
//!
//! On the API port `/metrics` answers only a platform-admin, sre or service
//! token (it names busy tenants); the Prometheus scraper reads it without a
//! token on a listener of its own (`limits.metrics_port`), which a
//! deployment keeps off the public network.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{Running, Shared, serve};
use crate::auth::{Keys, REFUSED, Role, bearer};
use crate::breakglass::Revocations;
use crate::error::Code;
use crate::metrics::Metrics;

/// Answers whether the server can do its work (database migrated and reachable…).
pub trait ReadyCheck: Send + Sync + 'static {
    /// `Ok` when ready; otherwise what is not ready, for the readiness probe's answer.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The roles that may read `/metrics` on the API port.
pub const METRICS_READERS: [Role; 3] = [Role::PlatformAdmin, Role::Sre, Role::Service];

#[derive(Clone)]
struct OpsState {
    ready: Arc<dyn ReadyCheck>,
    metrics: Metrics,
    /// `None` on the scraper's own listener: no token asked.
    auth: Option<(Arc<Keys>, Revocations)>,
}

/// `/healthz`, `/readyz` and the token-protected `/metrics` of the API port.
pub fn ops_routes(ready: Arc<dyn ReadyCheck>, shared: &Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState {
            ready,
            metrics: shared.metrics.clone(),
            auth: Some((shared.keys.clone(), shared.revocations.clone())),
        })
}

/// The scraper's listener: `/metrics` (no token) and `/healthz`.
pub fn metrics_routes(metrics: Metrics) -> Router {
    struct Always;
    impl ReadyCheck for Always {
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState {
            ready: Arc::new(Always),
            metrics,
            auth: None,
        })
}

/// Serves [`metrics_routes`] on `host:port` (port 0 picks one) when
/// `limits.metrics_port` is set, until `shutdown`.
pub async fn serve_metrics(
    api_addr: std::net::SocketAddr,
    shared: &Shared,
    shutdown: CancellationToken,
) -> std::io::Result<Option<Running>> {
    let Some(port) = shared.limits.metrics_port else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind((api_addr.ip(), port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listener serving");
    Ok(Some(serve(
        listener,
        metrics_routes(shared.metrics.clone()),
        shutdown,
    )))
}

async fn readyz(axum::extract::State(st): axum::extract::State<OpsState>) -> impl IntoResponse {
    match st.ready.check().await {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

async fn metrics_text(
    axum::extract::State(st): axum::extract::State<OpsState>,
    headers: HeaderMap,
) -> Response {
    if let Some((keys, revocations)) = &st.auth {
        let verified = bearer(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
        .and_then(|t| keys.verify(t))
        .and_then(|p| revocations.check(&p).map(|()| p));
        let (status, code, message) = match verified {
            Ok(p) if p.has_any(&METRICS_READERS) && p.break_glass.is_none() => {
                return text(st.metrics.render());
            }
            Ok(_) => (
                StatusCode::FORBIDDEN,
                Code::Forbidden,
                "reading /metrics needs one of the roles: platform-admin, sre",
            ),
            Err(e) => {
                tracing::info!(reason = %e, "token refused on /metrics");
                (StatusCode::UNAUTHORIZED, Code::Unauthenticated, REFUSED)
            }
        };
        return (
            status,
            axum::Json(serde_json::json!({
                "errors": [{ "message": message, "extensions": { "code": code.as_str() } }],
            })),
        )
            .into_response();
    }
    text(st.metrics.render())
}

fn text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
