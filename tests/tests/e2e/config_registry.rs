//! The config schema registry: defined at the global tier, versioned,
//! audited, and carried to every cell by the outbox and the sync stream;
//! a cell that missed the stream repairs itself from the global API.

use std::time::Duration;

use e2e::stack::{code, message, start_cell};
use e2e::{Backend, CellSpec, Stack, backing};
use serde_json::{Value, json};
use shared::auth::Role;

const DEFINE: &str = "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { key type default scopes min max version deprecated } }";
const KEYS: &str = "{ configKeys { key default version deprecated } }";

fn max_users(default: i64, expected: Option<i64>) -> Value {
    json!({ "i": {
        "key": "limits.max_users", "type": "INT", "default": default, "scopes": ["TENANT", "PROJECT"],
        "description": "Seats", "min": 1, "max": 1000, "expectedVersion": expected } })
}

/// Waits until the cell at `url` holds `key` at `version`.
async fn cell_has(s: &Stack, url: &str, key: &str, version: i64) -> Value {
    let svc = s.token("global", &[Role::Service], &[], None);
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, v) = s.gql_at(url, Some(&svc), KEYS, json!({})).await;
        if let Some(k) = v["data"]["configKeys"]
            .as_array()
            .and_then(|a| a.iter().find(|k| k["key"] == key))
            && k["version"] == version
        {
            return k.clone();
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cell {url} never held {key} at version {version}: {last}");
}

async fn keys_reach_every_cell(backend: Backend) {
    let s = Stack::start(backend).await;
    let admin = s.admin();
    let v1 = s.gql(&admin, DEFINE, max_users(10, None)).await;
    assert_eq!(v1["data"]["defineConfigKey"]["version"], 1, "{v1}");
    for c in &s.cells {
        let k = cell_has(&s, &c.url(), "limits.max_users", 1).await;
        assert_eq!(k["default"], 10);
    }

    // The same definition again changes nothing.
    let again = s.gql(&admin, DEFINE, max_users(10, None)).await;
    assert_eq!(again["data"]["defineConfigKey"]["version"], 1);
    // A change needs the current version.
    let stale = s.gql(&admin, DEFINE, max_users(20, None)).await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let stale = s.gql(&admin, DEFINE, max_users(20, Some(7))).await;
    assert_eq!(code(&stale), Some("CONFLICT"));
    let v2 = s.gql(&admin, DEFINE, max_users(20, Some(1))).await;
    assert_eq!(v2["data"]["defineConfigKey"]["version"], 2, "{v2}");
    for c in &s.cells {
        assert_eq!(
            cell_has(&s, &c.url(), "limits.max_users", 2).await["default"],
            20
        );
    }

    let dep = "mutation($k: String!, $v: Int!) { deprecateConfigKey(key: $k, expectedVersion: $v) { version deprecated } }";
    assert_eq!(
        code(
            &s.gql(&admin, dep, json!({ "k": "limits.max_users", "v": 1 }))
                .await
        ),
        Some("CONFLICT")
    );
    assert_eq!(
        code(&s.gql(&admin, dep, json!({ "k": "nope", "v": 1 })).await),
        Some("NOT_FOUND")
    );
    let d = s
        .gql(&admin, dep, json!({ "k": "limits.max_users", "v": 2 }))
        .await;
    assert_eq!(d["data"]["deprecateConfigKey"]["deprecated"], true, "{d}");
    for c in &s.cells {
        assert_eq!(
            cell_has(&s, &c.url(), "limits.max_users", 3).await["deprecated"],
            true
        );
    }

    let log = s
        .gql(
            &admin,
            "{ auditLog(filter: {action: \"defineConfigKey\", source: \"global\"}) { nodes { outcome target } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        log["data"]["auditLog"]["nodes"].as_array().unwrap().len(),
        5,
        "{log}"
    );
    s.stop().await;
}

#[tokio::test]
async fn keys_reach_every_cell_postgres() {
    keys_reach_every_cell(Backend::Postgres).await;
}

#[tokio::test]
async fn keys_reach_every_cell_sqlite() {
    keys_reach_every_cell(Backend::Sqlite).await;
}

#[tokio::test]
async fn bad_definitions_are_refused_and_change_nothing() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let bad = s
        .gql(&admin, DEFINE, json!({ "i": { "key": "Bad Key", "type": "INT", "default": "ten", "scopes": [], "min": 5, "max": 1 } }))
        .await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    for problem in [
        "must start with a lowercase letter",
        "scopes must name",
        "min 5 is greater than max 1",
    ] {
        assert!(message(&bad).contains(problem), "{problem}: {bad}");
    }
    let wrong_default = s
        .gql(&admin, DEFINE, json!({ "i": { "key": "flag.on", "type": "BOOL", "default": "yes", "scopes": ["TENANT"] } }))
        .await;
    assert!(
        message(&wrong_default).contains("must be a boolean"),
        "{wrong_default}"
    );
    let schema = s
        .gql(&admin, DEFINE, json!({ "i": { "key": "blob", "type": "JSON", "default": {}, "scopes": ["TENANT"], "jsonSchema": {"type": 12} } }))
        .await;
    assert_eq!(code(&schema), Some("BAD_USER_INPUT"));
    assert!(
        message(&schema).contains("not a valid JSON Schema"),
        "{schema}"
    );
    let sre = s.token("sre", &[Role::Sre], &[], None);
    assert_eq!(
        code(&s.gql(&sre, DEFINE, max_users(10, None)).await),
        Some("FORBIDDEN")
    );
    let keys = s.gql(&admin, KEYS, json!({})).await;
    assert_eq!(keys["data"]["configKeys"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn a_cell_that_missed_the_stream_repairs_from_the_global_api() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    s.gql(&admin, DEFINE, max_users(10, None)).await;
    s.gql(&admin, DEFINE, max_users(30, Some(1))).await;

    // A new cell on a private in-process transport hears nothing of the
    // stream: only the resync at start can give it the registry.
    let (name, url) = backing::create_database().await;
    let spec = CellSpec {
        id: "ap-south-1-a",
        region: "ap-south-1",
        capacity: 10,
    };
    let private = std::sync::Arc::new(shared::sync::memory::Memory::new());
    let lone = start_cell(
        &spec,
        url,
        &s.url(),
        &s.keys,
        &s.options,
        &s.redis_prefix,
        Some(private),
    )
    .await;
    assert_eq!(
        cell_has(&s, &lone.url(), "limits.max_users", 2).await["default"],
        30
    );
    lone.stop().await;
    s.stop().await;
    backing::drop_databases(&[name]).await;
}

#[tokio::test]
async fn a_cell_stopped_during_500_changes_catches_up_exactly() {
    let mut s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let idx = s
        .cells
        .iter()
        .position(|c| c.state.cell_id.as_str() == "eu-west-1-a")
        .unwrap();
    let stopped = s.cells.remove(idx);
    stopped.stop().await;

    for i in 0..500 {
        let key = format!("bulk.k{}", i % 250);
        // 250 keys, each defined then changed once: 500 changes.
        let expected = if i < 250 { None } else { Some(1) };
        let v = s
            .gql(&admin, DEFINE, json!({ "i": { "key": key, "type": "INT", "default": i, "scopes": ["TENANT"], "expectedVersion": expected } }))
            .await;
        assert!(v.get("errors").is_none(), "{v}");
    }

    let spec = CellSpec {
        id: "eu-west-1-a",
        region: "eu-west-1",
        capacity: 100,
    };
    let url = s.cell_database_urls["eu-west-1-a"].clone();
    let restarted = start_cell(
        &spec,
        url,
        &s.url(),
        &s.keys,
        &s.options,
        &s.redis_prefix,
        None,
    )
    .await;
    let want = shared::configkeys::store::all(&s.global.state.db)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..200 {
        got = shared::configkeys::store::all(&restarted.state.db)
            .await
            .unwrap();
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.len(), 250);
    assert_eq!(
        got, want,
        "the restarted cell holds exactly the global registry"
    );
    assert!(got.iter().all(|k| k.version == 2));
    restarted.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn cells_resync_when_redis_loses_the_stream() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    s.gql(&admin, DEFINE, max_users(10, None)).await;
    for c in &s.cells {
        cell_has(&s, &c.url(), "limits.max_users", 1).await;
    }
    // A change whose stream entry Redis lost: it is in the global registry
    // but will never be delivered.
    let lost = shared::configkeys::KeyDef {
        key: "lost.in.flush".into(),
        value_type: shared::configkeys::ValueType::Bool,
        default: json!(true),
        scopes: vec![shared::configkeys::Scope::Tenant],
        description: String::new(),
        min: None,
        max: None,
        allowed: None,
        pattern: None,
        json_schema: None,
        deprecated: false,
    };
    shared::configkeys::store::put(&s.global.state.db, &lost, 1)
        .await
        .unwrap();
    // Redis loses the stream and its consumer groups, as after a restart without persistence.
    let client = redis::Client::open(backing::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!(
            "{}:sync:{}",
            s.redis_prefix,
            shared::configkeys::STREAM
        ))
        .query_async(&mut conn)
        .await
        .unwrap();
    // Each cell notices its group is gone, recreates it and resyncs long
    // before the periodic anti-entropy pass (a minute) would.
    for c in &s.cells {
        cell_has(&s, &c.url(), "lost.in.flush", 1).await;
    }
    s.stop().await;
}
