//! One tracing init for every binary: logs (JSON or text), an OTLP/HTTP
//! trace exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace
//! context propagation. The returned guard flushes spans when dropped.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written to stdout; `json` or `text` in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, with the current span: for log shippers.
    #[default]
    Json,
    /// Human-readable lines: for a terminal.
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = crate::ids::Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(crate::ids::Invalid(format!(
                "log format `{s}` is not json or text"
            ))),
        }
    }
}

/// Flushes and shuts the exporter down when dropped.
#[must_use = "dropping the guard shuts telemetry down"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.force_flush() {
                eprintln!("telemetry flush failed: {e}");
            }
            if let Err(e) = p.shutdown() {
                eprintln!("telemetry shutdown failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` sets the filter (default `info`).
pub fn init(service: &str, format: LogFormat) -> Guard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|_| match otlp_provider(service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("OTLP exporter not started: {e}");
                None
            }
        });
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    let (json, text) = match format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            ),
            None,
        ),
        LogFormat::Text => (None, Some(tracing_subscriber::fmt::layer().compact())),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer)
        .with(json)
        .with(text)
        .try_init();
    Guard { provider }
}

fn otlp_provider(service: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build(),
        )
        .build())
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// The W3C trace context of the current span, as headers to send on.
pub fn current_trace_headers() -> HashMap<String, String> {
    let mut map = HashMap::new();
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MapCarrier(&mut map))
    });
    map
}

struct HeaderCarrier<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the trace context carried by incoming headers.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderCarrier(headers)));
        let _ = span.set_parent(cx);
    }
}

/// Wraps `fut` to run in the current span and with the current request id,
/// for work spawned on behalf of a request (a DataLoader batch): its calls
/// to another tier then carry this request's trace context and id.
pub fn in_current_context<F>(fut: F) -> impl Future<Output = F::Output> + Send + 'static
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    use tracing::Instrument;
    let span = tracing::Span::current();
    let id = crate::request::RequestId::current();
    async move {
        match id {
            Some(id) => id.scope(fut).await,
            None => fut.await,
        }
    }
    .instrument(span)
}

/// The remote trace context a stream event carries (`Event::trace`).
pub fn event_context(trace: &HashMap<String, String>) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt;
    if !trace.contains_key("traceparent") {
        return None;
    }
    struct Map<'a>(&'a HashMap<String, String>);
    impl Extractor for Map<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).map(String::as_str)
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(String::as_str).collect()
        }
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Map(trace)));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Ties the span that applies stream events to the traces of the changes
/// they carry: a batch of one event becomes a child of that change's span,
/// a larger batch links to each event's span (it has no single parent).
pub fn adopt_event_traces<'a>(
    span: &tracing::Span,
    traces: impl IntoIterator<Item = &'a HashMap<String, String>>,
) {
    use opentelemetry::trace::TraceContextExt;
    let cxs: Vec<_> = traces.into_iter().filter_map(event_context).collect();
    match cxs.as_slice() {
        [] => {}
        [one] => {
            let _ = span.set_parent(one.clone());
        }
        many => {
            for cx in many {
                span.add_link(cx.span().span_context().clone());
            }
        }
    }
}
