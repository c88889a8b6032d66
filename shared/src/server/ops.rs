//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::future::BoxFuture;

use crate::metrics::Metrics;

/// Answers whether the server can do its work (database migrated and reachable…).
pub trait ReadyCheck: Send + Sync + 'static {
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

#[derive(Clone)]
struct OpsState {
    ready: Arc<dyn ReadyCheck>,
    metrics: Metrics,
}

pub fn ops_routes(ready: Arc<dyn ReadyCheck>, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState { ready, metrics })
}

async fn readyz(axum::extract::State(st): axum::extract::State<OpsState>) -> impl IntoResponse {
    match st.ready.check().await {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

async fn metrics_text(
    axum::extract::State(st): axum::extract::State<OpsState>,
) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
}
