//! Prometheus metrics, one registry per server so that the tiers of the dev
//! stack, which share a process, each export only their own.
//!
//! Every series is named `tcp_…`. The names the SLOs and the alert rules
//! (`deploy/prometheus/rules.yaml`) use are constants in [`names`]; a test
//! checks that every metric the rules reference is exported.

pub mod operation;
pub mod top;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Stable metric names (without the `tcp_` prefix the registry adds).
pub mod names {
    /// HTTP requests by route and status class (`2xx` … `5xx`).
    pub const HTTP_REQUESTS: &str = "http_requests_total";
    /// HTTP request latency by route, in seconds.
    pub const HTTP_DURATION: &str = "http_request_duration_seconds";
    /// GraphQL errors by error code (`BAD_USER_INPUT`, `INTERNAL`, …).
    pub const GRAPHQL_ERRORS: &str = "graphql_errors_total";
    /// GraphQL requests by operation, (tenant's) cell, plan and outcome.
    pub const OPERATIONS: &str = "graphql_operations_total";
    /// GraphQL request latency by operation, (tenant's) cell and plan, in seconds.
    pub const OPERATION_DURATION: &str = "graphql_operation_duration_seconds";
    /// Requests of the busiest tenants, the rest under `tenant="other"`.
    pub const TENANT_REQUESTS: &str = "tenant_requests_total";
    /// Data-plane hook requests by hook and outcome (cells).
    pub const HOOK_REQUESTS: &str = "hook_requests_total";
    /// Data-plane hook latency by hook, in seconds (cells).
    pub const HOOK_DURATION: &str = "hook_request_duration_seconds";
    /// `createTenant` saga, first attempt to ACTIVE or FAILED (global tier).
    pub const PROVISIONING_DURATION: &str = "provisioning_duration_seconds";
    /// Commit at the origin to application here, by stream (cells).
    pub const PROPAGATION: &str = "sync_propagation_seconds";
}

/// Latency buckets, in seconds, of the request histograms.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How often the busiest tenants are elected again.
pub const TENANT_WINDOW: Duration = Duration::from_secs(300);

/// Tenants with a series of their own unless configured.
pub const DEFAULT_TOP_TENANTS: usize = 100;

/// The outcome of a GraphQL request: no error, only errors of the caller's
/// making (`rejected`), or an INTERNAL/UNAVAILABLE error or timeout (`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No error.
    Ok,
    /// Only errors of the caller's making (bad input, not found, conflict, …).
    Rejected,
    /// An INTERNAL or UNAVAILABLE error, or a timeout.
    Error,
}

impl Outcome {
    /// The `outcome` label value: `ok`, `rejected` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Error => "error",
        }
    }
}

/// One server's metrics: its registry (every series prefixed `tcp_` and
/// labelled with `tier`, and `cell` in a cell) and the series every server
/// records. Cheap to clone: clones share the series.
#[derive(Clone)]
pub struct Metrics {
    /// The registry [`Metrics::render`] exports; register more series with
    /// the `*_vec` helpers.
    pub registry: Registry,
    /// `tcp_http_requests_total{route, status}`.
    pub http_requests: IntCounterVec,
    /// `tcp_http_request_duration_seconds{route}`.
    pub http_duration: HistogramVec,
    /// `tcp_graphql_errors_total{code}`.
    pub graphql_errors: IntCounterVec,
    /// `{operation, cell, plan, outcome}`; a cell's registry has no `cell`
    /// label here (every series of a cell carries its own `cell`).
    pub operations: IntCounterVec,
    /// `tcp_graphql_operation_duration_seconds{operation, cell, plan}`;
    /// no `cell` label in a cell's registry either.
    pub operation_duration: HistogramVec,
    /// `tcp_tenant_requests_total{tenant, outcome}`, for the busiest tenants.
    pub tenants: Arc<top::TenantTop>,
    /// Whether the operation series carry a `cell` label (global tier).
    cell_label: bool,
}

impl Metrics {
    /// `tier` is `global` or `cell`; `cell` labels every series of a cell.
    pub fn new(tier: &str, cell: Option<&str>) -> Self {
        Self::with_top_tenants(tier, cell, DEFAULT_TOP_TENANTS)
    }

    /// As [`Metrics::new`], with at most `top_tenants` tenants having a
    /// series of their own in `tcp_tenant_requests_total`.
    pub fn with_top_tenants(tier: &str, cell: Option<&str>, top_tenants: usize) -> Self {
        let mut labels = std::collections::HashMap::new();
        labels.insert("tier".to_string(), tier.to_string());
        if let Some(c) = cell {
            labels.insert("cell".to_string(), c.to_string());
        }
        let registry =
            Registry::new_custom(Some("tcp".into()), Some(labels)).expect("valid registry prefix");
        let http_requests = IntCounterVec::new(
            Opts::new(names::HTTP_REQUESTS, "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(names::HTTP_DURATION, "HTTP request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let graphql_errors = IntCounterVec::new(
            Opts::new(names::GRAPHQL_ERRORS, "GraphQL errors by code"),
            &["code"],
        )
        .expect("valid metric");
        let cell_label = cell.is_none();
        let (counter_labels, histogram_labels): (&[&str], &[&str]) = if cell_label {
            (
                &["operation", "cell", "plan", "outcome"],
                &["operation", "cell", "plan"],
            )
        } else {
            (&["operation", "plan", "outcome"], &["operation", "plan"])
        };
        let operations = IntCounterVec::new(
            Opts::new(
                names::OPERATIONS,
                "GraphQL requests by operation (first root field), the tenant's cell and plan, and outcome (ok, rejected, error)",
            ),
            counter_labels,
        )
        .expect("valid metric");
        let operation_duration = HistogramVec::new(
            HistogramOpts::new(
                names::OPERATION_DURATION,
                "GraphQL request latency by operation, the tenant's cell and plan",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            histogram_labels,
        )
        .expect("valid metric");
        let tenant_requests = IntCounterVec::new(
            Opts::new(
                names::TENANT_REQUESTS,
                "GraphQL requests of the busiest tenants by outcome (ok, error); every other tenant under tenant=\"other\"",
            ),
            &["tenant", "outcome"],
        )
        .expect("valid metric");
        let m = Self {
            registry,
            http_requests,
            http_duration,
            graphql_errors,
            operations,
            operation_duration,
            tenants: Arc::new(top::TenantTop::new(
                top_tenants,
                TENANT_WINDOW,
                tenant_requests.clone(),
            )),
            cell_label,
        };
        m.register(m.http_requests.clone());
        m.register(m.http_duration.clone());
        m.register(m.graphql_errors.clone());
        m.register(m.operations.clone());
        m.register(m.operation_duration.clone());
        m.register(tenant_requests);
        m
    }

    /// Counts one GraphQL request and its latency.
    pub fn record_operation(&self, facts: &operation::Facts, outcome: Outcome, elapsed: Duration) {
        let op = facts.operation.as_deref().unwrap_or("unknown");
        let plan = facts.plan.as_deref().unwrap_or("");
        let cell = facts.cell.as_deref().unwrap_or("");
        if self.cell_label {
            self.operations
                .with_label_values(&[op, cell, plan, outcome.as_str()])
                .inc();
            self.operation_duration
                .with_label_values(&[op, cell, plan])
                .observe(elapsed.as_secs_f64());
        } else {
            self.operations
                .with_label_values(&[op, plan, outcome.as_str()])
                .inc();
            self.operation_duration
                .with_label_values(&[op, plan])
                .observe(elapsed.as_secs_f64());
        }
        if let Some(t) = &facts.tenant {
            self.tenants.record(t, outcome != Outcome::Error);
        }
    }

    /// Creates and registers a histogram `tcp_{name}` with these labels and
    /// bucket bounds (seconds for latencies: see [`LATENCY_BUCKETS`]).
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("valid metric");
        self.register(h.clone());
        h
    }

    /// Registers a collector; registering a name twice is logged, not fatal.
    pub fn register<C: prometheus::core::Collector + 'static>(&self, c: C) {
        if let Err(e) = self.registry.register(Box::new(c)) {
            tracing::warn!(error = %e, "metric registered twice");
        }
    }

    /// Creates and registers an integer gauge `tcp_{name}` with these labels.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.register(g.clone());
        g
    }

    /// Creates and registers an integer counter `tcp_{name}` with these labels;
    /// by Prometheus convention `name` ends in `_total`.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.register(c.clone());
        c
    }

    /// Creates and registers an unlabelled histogram `tcp_{name}` with these bucket bounds.
    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> prometheus::Histogram {
        let h = prometheus::Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .expect("valid metric");
        self.register(h.clone());
        h
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
