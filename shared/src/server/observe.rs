//! Per-request middleware: request id, span with tier/cell/region, metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::{Component, Shared};
use crate::metrics::Metrics;
use crate::request::RequestId;

#[derive(Clone)]
pub struct State {
    component: Arc<Component>,
    metrics: Metrics,
}

impl State {
    pub(super) fn new(shared: &Shared) -> Self {
        Self {
            component: shared.component.clone(),
            metrics: shared.metrics.clone(),
        }
    }
}

pub async fn observe(
    axum::extract::State(st): axum::extract::State<State>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::from_header)
        .unwrap_or_default();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = %route,
        tier = st.component.tier,
        cell = st.component.cell.as_deref(),
        region = st.component.region.as_deref(),
        tenant_id = tracing::field::Empty,
        break_glass = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    crate::telemetry::adopt_remote_parent(&span, req.headers());
    req.extensions_mut().insert(id.clone());
    req.extensions_mut()
        .insert(super::RequestSpan(span.clone()));
    let mut resp = id
        .clone()
        .scope(next.run(req))
        .instrument(span.clone())
        .await;
    let status = resp.status().as_u16();
    span.record("status", status);
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        resp.headers_mut().insert("x-request-id", v);
    }
    st.metrics
        .http_requests
        .with_label_values(&[route.as_str(), status_class(status)])
        .inc();
    st.metrics
        .http_duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
