//! Prometheus metrics, one registry per server so that the tiers of the dev
//! stack, which share a process, each export only their own.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub graphql_errors: IntCounterVec,
}

impl Metrics {
    /// `tier` is `global` or `cell`; `cell` labels every series of a cell.
    pub fn new(tier: &str, cell: Option<&str>) -> Self {
        let mut labels = std::collections::HashMap::new();
        labels.insert("tier".to_string(), tier.to_string());
        if let Some(c) = cell {
            labels.insert("cell".to_string(), c.to_string());
        }
        let registry =
            Registry::new_custom(Some("tcp".into()), Some(labels)).expect("valid registry prefix");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            &["route"],
        )
        .expect("valid metric");
        let graphql_errors = IntCounterVec::new(
            Opts::new("graphql_errors_total", "GraphQL errors by code"),
            &["code"],
        )
        .expect("valid metric");
        let m = Self {
            registry,
            http_requests,
            http_duration,
            graphql_errors,
        };
        m.register(m.http_requests.clone());
        m.register(m.http_duration.clone());
        m.register(m.graphql_errors.clone());
        m
    }

    pub fn register<C: prometheus::core::Collector + 'static>(&self, c: C) {
        if let Err(e) = self.registry.register(Box::new(c)) {
            tracing::warn!(error = %e, "metric registered twice");
        }
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.register(g.clone());
        g
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.register(c.clone());
        c
    }

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
