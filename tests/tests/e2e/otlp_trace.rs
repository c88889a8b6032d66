//! Traces cross the tiers: the `global` and `cell` binaries export over
//! OTLP/HTTP to a real receiver run by this test (protobuf decoded with
//! `opentelemetry-proto`). A read that crosses global → cell is one trace
//! with the tenant's attributes on both sides, and a change that travels on
//! a stream is applied in the cell under the trace of the request that made it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use e2e::backing;
use e2e::process::{free_port, gql, spawn_cell_with, spawn_global, terminate};
use e2e::stack::SECRET;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    links: Vec<Vec<u8>>,
    attrs: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<Span>>>;

/// A real OTLP/HTTP trace receiver on loopback: `POST /v1/traces`.
async fn receiver() -> (String, Received, tokio::task::JoinHandle<()>) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut out = sink.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .as_ref()
                        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                        .and_then(|a| a.value.as_ref())
                        .and_then(|v| v.value.as_ref())
                        .map(text)
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Span {
                                service: service.clone(),
                                name: s.name,
                                trace_id: s.trace_id,
                                span_id: s.span_id,
                                parent_span_id: s.parent_span_id,
                                links: s.links.into_iter().map(|l| l.span_id).collect(),
                                attrs: s
                                    .attributes
                                    .into_iter()
                                    .filter_map(|a| {
                                        a.value.and_then(|v| v.value).map(|v| (a.key, text(&v)))
                                    })
                                    .collect(),
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, got, handle)
}

fn text(v: &AnyValue) -> String {
    match v {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

// Multi-threaded: the receiver must keep answering while the tiers flush
// their spans on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_both_tiers_with_the_tenant_attributes() {
    let (otlp, got, receiver_task) = receiver().await;
    let (gdb_name, gdb) = backing::create_database().await;
    let (cdb_name, cdb) = backing::create_database().await;
    let prefix = backing::redis_prefix().await;
    let (gport, cport) = (free_port(), free_port());
    let global_url = format!("http://127.0.0.1:{gport}");
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        // Request spans are info; the rest of the process stays quiet.
        ("RUST_LOG", "warn,shared=info"),
    ];
    let global = spawn_global(gport, &gdb, &prefix, &otel).await;
    let cell = spawn_cell_with(
        cport,
        "us-east-1-a",
        "us-east-1",
        &cdb,
        &prefix,
        &global_url,
        &otel,
    )
    .await;

    let keys = shared::auth::Keys::hs256(
        &[SECRET.into()],
        shared::auth::DEFAULT_ISSUER,
        shared::auth::DEFAULT_AUDIENCE,
    )
    .unwrap();
    let admin = keys
        .mint(
            "admin",
            vec![shared::auth::Role::PlatformAdmin],
            vec![],
            None,
            600,
        )
        .unwrap();
    // The cell registers within its first heartbeat.
    let mut created = serde_json::Value::Null;
    for _ in 0..100 {
        created = gql(
            &global_url,
            &admin,
            "mutation($i: CreateTenantInput!) { createTenant(input: $i) { id status } }",
            json!({ "i": { "idempotencyKey": "otlp-1", "slug": "traced", "name": "Traced",
                           "region": "us-east-1", "plan": "pro" } }),
        )
        .await;
        if created.get("errors").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        created["data"]["createTenant"]["status"], "ACTIVE",
        "{created}"
    );
    let id = created["data"]["createTenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A read whose `name` and `plan` come from the cell.
    let read = reqwest::Client::new()
        .post(format!("{global_url}/graphql"))
        .bearer_auth(&admin)
        .header("x-request-id", "otlp-trace-read-1")
        .json(
            &json!({ "query": "query($id: ID!) { tenant(id: $id) { name plan } }",
                       "variables": { "id": id } }),
        )
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(read["data"]["tenant"]["plan"], "pro", "{read}");

    // A change that reaches the cell on the config-key stream.
    let defined = gql(
        &global_url,
        &admin,
        "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
        json!({ "i": { "key": "traced.limit", "type": "INT", "default": 1,
                       "scopes": ["TENANT"] } }),
    )
    .await;
    assert!(defined.get("errors").is_none(), "{defined}");

    // Wait for the spans, then stop both tiers (which flushes what is left).
    let find = |got: &Received| -> Option<(Span, Span)> {
        let spans = got.lock().unwrap().clone();
        let root = spans.iter().find(|s| {
            s.service == "global"
                && s.name == "request"
                && s.attrs.get("request_id").map(String::as_str) == Some("otlp-trace-read-1")
        })?;
        let remote = spans
            .iter()
            .find(|s| s.service == "cell" && s.name == "request" && s.trace_id == root.trace_id)?;
        Some((root.clone(), remote.clone()))
    };
    for _ in 0..100 {
        if find(&got).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::spawn_blocking(move || {
        terminate(cell);
        terminate(global);
    })
    .await
    .unwrap();
    let (root, remote) = find(&got).unwrap_or_else(|| {
        let spans = got.lock().unwrap();
        panic!(
            "no trace spanning both tiers among {} spans: {:#?}",
            spans.len(),
            spans
                .iter()
                .filter(|s| s.name == "request")
                .collect::<Vec<_>>()
        )
    });

    // Global side: the tenant, its home cell, region and plan.
    assert_eq!(root.attrs.get("tenant_id"), Some(&id), "{root:?}");
    assert_eq!(
        root.attrs.get("cell").map(String::as_str),
        Some("us-east-1-a"),
        "{root:?}"
    );
    assert_eq!(
        root.attrs.get("region").map(String::as_str),
        Some("us-east-1"),
        "{root:?}"
    );
    assert_eq!(
        root.attrs.get("plan").map(String::as_str),
        Some("pro"),
        "{root:?}"
    );
    assert_eq!(
        root.attrs.get("operation").map(String::as_str),
        Some("tenant"),
        "{root:?}"
    );
    // Cell side: same trace, a child of the global side, same tenant and request id.
    assert!(
        !remote.parent_span_id.is_empty(),
        "the cell span has a remote parent"
    );
    assert_ne!(remote.span_id, root.span_id);
    assert_eq!(remote.attrs.get("tenant_id"), Some(&id), "{remote:?}");
    assert_eq!(
        remote.attrs.get("cell").map(String::as_str),
        Some("us-east-1-a")
    );
    assert_eq!(
        remote.attrs.get("region").map(String::as_str),
        Some("us-east-1")
    );
    assert_eq!(
        remote.attrs.get("request_id").map(String::as_str),
        Some("otlp-trace-read-1"),
        "the request id crosses the hop: {remote:?}"
    );

    // The stream hop: the cell applied the config key in the trace of the
    // global request that defined it (as its child, or linked when batched).
    let spans = got.lock().unwrap().clone();
    let define = spans
        .iter()
        .find(|s| {
            s.service == "global"
                && s.name == "request"
                && s.attrs.get("operation").map(String::as_str) == Some("defineConfigKey")
        })
        .expect("the defineConfigKey request span");
    let applied = spans.iter().find(|s| {
        s.service == "cell"
            && s.name == "sync.apply"
            && s.attrs.get("stream").map(String::as_str) == Some("global.config-keys")
            && (s.trace_id == define.trace_id || !s.links.is_empty())
    });
    let applied = applied.unwrap_or_else(|| {
        panic!(
            "no sync.apply span of the config-key stream in the define trace: {:#?}",
            spans
                .iter()
                .filter(|s| s.name == "sync.apply")
                .collect::<Vec<_>>()
        )
    });
    assert_eq!(applied.trace_id, define.trace_id, "{applied:?}");

    receiver_task.abort();
    backing::drop_databases(&[gdb_name, cdb_name]).await;
}
