//! The HTTP surface both tiers share: GraphQL over HTTP and WebSocket with
//! JWT auth, health and readiness, metrics, limits, request ids and spans,
//! and graceful shutdown.

mod graphql;
mod observe;
mod ops;
pub mod ratelimit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Keys;
use crate::metrics::Metrics;

pub use graphql::{
    GraphqlRoutes, Placement, RequestSpan, SessionEnd, record_tenant, record_tenant_at,
};
pub use observe::{HookMeter, observe};
pub use ops::{ReadyCheck, metrics_routes, ops_routes, serve_metrics};

/// Where a server sits: stamped on every request span.
#[derive(Debug, Clone)]
pub struct Component {
    /// `global` or `cell`.
    pub tier: &'static str,
    /// The cell's id; none for the global tier.
    pub cell: Option<String>,
    /// The region the server runs in, when configured.
    pub region: Option<String>,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// The largest request body accepted, in bytes (at least 1024).
    pub max_body_bytes: usize,
    /// How long a request may run, in milliseconds (at least 100).
    pub request_timeout_ms: u64,
    /// The deepest GraphQL query accepted.
    pub max_depth: usize,
    /// The most complex GraphQL query accepted (async-graphql's complexity count).
    pub max_complexity: usize,
    /// Tenants with a request series of their own in `/metrics`; the rest
    /// are counted under `tenant="other"`.
    #[serde(default = "default_top_tenants")]
    pub metrics_top_tenants: usize,
    /// GraphQL requests a second each caller (token subject) may make;
    /// 0 switches the limit off. `service` tokens are exempt.
    #[serde(default = "default_rate_limit_per_sec")]
    pub rate_limit_per_sec: u32,
    /// How many requests a caller may make at once, beyond its rate.
    #[serde(default = "default_rate_limit_burst")]
    pub rate_limit_burst: u32,
    /// A port (on the API's address) serving `/metrics` without a token, for
    /// the Prometheus scraper; 0 picks a free one. On the API port
    /// `/metrics` needs a platform-admin, sre or service token.
    #[serde(default)]
    pub metrics_port: Option<u16>,
}

fn default_top_tenants() -> usize {
    crate::metrics::DEFAULT_TOP_TENANTS
}

/// Generous: far above what one client of the API makes, low enough to
/// stop a runaway loop from starving everyone else.
pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 50_000;
/// How many requests a caller may make at once by default, beyond its rate.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 50_000;

fn default_rate_limit_per_sec() -> u32 {
    DEFAULT_RATE_LIMIT_PER_SEC
}

fn default_rate_limit_burst() -> u32 {
    DEFAULT_RATE_LIMIT_BURST
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            request_timeout_ms: 15_000,
            max_depth: 12,
            max_complexity: 500,
            metrics_top_tenants: crate::metrics::DEFAULT_TOP_TENANTS,
            rate_limit_per_sec: DEFAULT_RATE_LIMIT_PER_SEC,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            metrics_port: None,
        }
    }
}

impl Limits {
    /// Checks the limits; the error names the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        if self.request_timeout_ms < 100 {
            return Err("request_timeout_ms must be at least 100".into());
        }
        if self.metrics_top_tenants > 10_000 {
            return Err("metrics_top_tenants must be at most 10000".into());
        }
        if self.rate_limit_per_sec > 0 && self.rate_limit_burst == 0 {
            return Err(
                "rate_limit_burst must be at least 1 when rate_limit_per_sec is set".into(),
            );
        }
        if self.max_depth == 0 || self.max_complexity == 0 {
            return Err("max_depth and max_complexity must be positive".into());
        }
        Ok(())
    }
}

/// Applies the query depth and complexity limits, and switches
/// introspection off unless it is wanted.
pub fn limit_schema<Q, M, S>(
    b: async_graphql::SchemaBuilder<Q, M, S>,
    limits: &Limits,
    introspection: bool,
) -> async_graphql::SchemaBuilder<Q, M, S> {
    let b = b
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if introspection {
        b
    } else {
        b.disable_introspection()
    }
}

/// What every server of the control plane is given.
#[derive(Clone)]
pub struct Shared {
    /// Verifies tokens (and mints service tokens).
    pub keys: Arc<Keys>,
    /// Where request metrics are recorded.
    pub metrics: Metrics,
    /// Where the server sits, stamped on every request span.
    pub component: Arc<Component>,
    /// Limits applied to every request.
    pub limits: Limits,
    /// Development conveniences: GraphiQL is served on `GET /graphql`.
    pub dev_mode: bool,
    /// Revoked break-glass requests, checked on every request with a `bg` claim.
    pub revocations: crate::breakglass::Revocations,
    /// Places the tenant of a request no resolver placed, for its metrics.
    pub placement: Option<Arc<dyn crate::metrics::operation::PlacementLookup>>,
    /// Authority that ended (a membership removed), fanned out to every
    /// replica: subscription connections of that subject close.
    pub session_ends: Option<Arc<crate::events::Bus<SessionEnd>>>,
}

/// Wraps a tier's router with the common layers: request id, span and
/// metrics, body limit and timeout.
pub fn layered(router: Router, shared: &Shared) -> Router {
    use axum::extract::DefaultBodyLimit;
    use tower_http::timeout::TimeoutLayer;
    router
        .layer(DefaultBodyLimit::max(shared.limits.max_body_bytes))
        // GraphQL answers its own timeout with a coded error; this one is the
        // backstop for every other route.
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            Duration::from_millis(shared.limits.request_timeout_ms + 1000),
        ))
        .layer(axum::middleware::from_fn_with_state(
            observe::State::new(shared),
            observe,
        ))
}

/// A running server.
pub struct Running {
    /// The address the server listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Cancel to stop accepting and drain.
    pub shutdown: CancellationToken,
    /// The serving task; ends when the server has stopped.
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests, then returns.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match self.handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains.
pub fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> Running {
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
    });
    Running {
        addr,
        shutdown,
        handle,
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
