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

/// Gives the request an id (its `x-request-id` when valid, else a new one), runs it in a span stamped with the server's tier, cell and region, and records its metrics.
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
        plan = tracing::field::Empty,
        operation = tracing::field::Empty,
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

/// Counts and times the data-plane hooks, which stay off the span layer:
/// `tcp_hook_requests_total{hook, outcome}` (ok for 2xx, rejected for 4xx,
/// error for 5xx) and `tcp_hook_request_duration_seconds{hook}`. No span,
/// no log line, no allocation beyond the label lookup.
#[derive(Clone)]
pub struct HookMeter {
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
}

impl HookMeter {
    /// Registers the hook metrics in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            requests: metrics.counter_vec(
                crate::metrics::names::HOOK_REQUESTS,
                "Data-plane hook requests by hook (route) and outcome (ok, rejected, error)",
                &["hook", "outcome"],
            ),
            duration: metrics.histogram_vec(
                crate::metrics::names::HOOK_DURATION,
                "Data-plane hook latency by hook (route)",
                &["hook"],
                crate::metrics::LATENCY_BUCKETS.to_vec(),
            ),
        }
    }

    /// Wraps `router` (the hooks' routes) with the meter.
    pub fn layer(self, router: axum::Router) -> axum::Router {
        router.layer(axum::middleware::from_fn_with_state(self, meter_hook))
    }
}

async fn meter_hook(
    axum::extract::State(m): axum::extract::State<HookMeter>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let hook = matched.as_ref().map(|p| p.as_str()).unwrap_or("unmatched");
    let outcome = match resp.status().as_u16() {
        200..=399 => "ok",
        400..=499 => "rejected",
        _ => "error",
    };
    m.requests.with_label_values(&[hook, outcome]).inc();
    m.duration
        .with_label_values(&[hook])
        .observe(started.elapsed().as_secs_f64());
    resp
}
