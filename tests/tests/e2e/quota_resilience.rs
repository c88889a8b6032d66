//! Quotas under stress: one tenant sending ten times its limit does not
//! lower another's allowed rate, and with the global tier down consume and
//! usage keep working in the cell, the rollups arriving once it returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use e2e::quota::{SET, consume, data_plane, define};
use e2e::stack::{SECRET, global_settings, start_cell};
use e2e::{Backend, CellSpec, Options, Stack, backing};
use serde_json::json;
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};
use shared::quota::client::HooksClient;
use shared::quota::hooks::{UsageBatch, UsageEvent};

const CELL: &str = "eu-west-1-a";

#[tokio::test]
async fn a_tenant_ten_times_over_its_limit_leaves_another_its_rate() {
    const NOISY_LIMIT: i64 = 20;
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![CellSpec {
        id: CELL,
        region: "eu-west-1",
        capacity: 100,
    }];
    let s = Stack::start_with(o).await;
    define(&s, "api.requests", "RATE", "CLOSED").await;
    e2e::quota::wait_synced(&s, &["api.requests"]).await;
    let mut ids = Vec::new();
    // The noisy tenant's limit is low enough that ten times it is reached
    // even by a debug build on a loaded machine; the quiet one's leaves room
    // for its 25 a second.
    for (slug, limit) in [("noisy", NOISY_LIMIT), ("quiet", 50)] {
        let id = s.create_tenant(slug, "eu-west-1").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let v = s
            .gql(
                &s.admin(),
                SET,
                json!({ "i": { "tenantId": id, "metric": "api.requests", "limit": limit,
            "burst": 10, "enforcement": "HARD", "expectedVersion": 0, "idempotencyKey": slug } }),
            )
            .await;
        assert!(v.get("errors").is_none(), "{v}");
        ids.push(id);
    }
    let url = s.cell(CELL).url();
    let token = data_plane(&s, CELL, &[]);
    let client = HooksClient::new(&url, &token);
    let run_for = Duration::from_secs(2);
    let started = Instant::now();
    let (noisy_sent, noisy_allowed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut noisy = Vec::new();
    for w in 0..8 {
        let (c, t) = (client.clone(), ids[0].clone());
        let (sent, allowed) = (noisy_sent.clone(), noisy_allowed.clone());
        noisy.push(tokio::spawn(async move {
            let mut i = 0;
            while started.elapsed() < run_for {
                let d = c
                    .consume(&t, "api.requests", 1, &format!("n{w}-{i}"))
                    .await
                    .unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                if d.allowed {
                    allowed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    // The quiet tenant stays under its rate: 25 a second.
    let mut quiet_allowed = 0;
    let mut quiet_sent = 0;
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(40));
    while started.elapsed() < run_for {
        tick.tick().await;
        let at = Instant::now();
        let d = client
            .consume(&ids[1], "api.requests", 1, &format!("q{quiet_sent}"))
            .await
            .unwrap();
        latencies.push(at.elapsed());
        quiet_sent += 1;
        if d.allowed {
            quiet_allowed += 1;
        }
    }
    for n in noisy {
        n.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = noisy_sent.load(Ordering::Relaxed);
    let allowed = noisy_allowed.load(Ordering::Relaxed);
    latencies.sort();
    println!(
        "noisy: {sent} sent, {allowed} allowed; quiet: {quiet_sent} sent, {quiet_allowed} allowed, p99 {:?}",
        latencies[latencies.len() * 99 / 100]
    );
    assert!(
        sent as f64 >= 10.0 * NOISY_LIMIT as f64 * run_for.as_secs_f64(),
        "the noisy tenant sent ten times its limit ({sent})"
    );
    assert!(
        allowed as f64 <= 10.0 + NOISY_LIMIT as f64 * elapsed + 1.0,
        "GCRA held the noisy tenant to its rate: {allowed} in {elapsed}s"
    );
    assert_eq!(
        quiet_allowed, quiet_sent,
        "the quiet tenant lost nothing to the noisy one"
    );
    s.stop().await;
}

#[tokio::test]
async fn with_the_global_tier_down_the_cell_keeps_enforcing_and_metering() {
    let keys = Arc::new(Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap());
    let prefix = backing::redis_prefix().await;
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![CellSpec {
        id: CELL,
        region: "eu-west-1",
        capacity: 100,
    }];
    let (gname, gdb) = backing::create_database().await;
    let (cname, cdb) = backing::create_database().await;
    let global = global::build(global_settings(&gdb, &keys, &o, &prefix))
        .await
        .unwrap();
    let cell = start_cell(&o.cells[0], cdb, &global.url(), &keys, &o, &prefix, None).await;
    let admin = keys
        .mint("admin", vec![Role::PlatformAdmin], vec![], None, 600)
        .unwrap();
    let gql = |url: String, q: &'static str, v: serde_json::Value| {
        let admin = admin.clone();
        async move { e2e::process::gql(&url, &admin, q, v).await }
    };
    let v = gql(
        global.url(),
        e2e::quota::DEFINE,
        json!({ "i": { "name": "api.calls", "kind": "PERIODIC", "unit": "call" } }),
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");
    let mut id = String::new();
    for _ in 0..100 {
        let v = gql(
            global.url(),
            e2e::stack::CREATE,
            json!({ "input": { "idempotencyKey": "global-down", "slug": "global-down",
            "name": "GD", "region": "eu-west-1", "plan": "pro" } }),
        )
        .await;
        if let Some(i) = v.pointer("/data/createTenant/id").and_then(|i| i.as_str()) {
            id = i.to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!id.is_empty(), "tenant created");
    for _ in 0..200 {
        if shared::quota::store::get(&cell.state.db, "api.calls")
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cell.state.quota.reload_catalog().await.unwrap();

    global.stop().await;
    let token = keys
        .mint(
            "edge",
            vec![Role::DataPlane],
            vec![],
            Some(shared::ids::CellId::parse(CELL).unwrap()),
            600,
        )
        .unwrap();
    let client = HooksClient::new(&cell.url(), &token);
    let d = client.consume(&id, "api.calls", 4, "down-1").await.unwrap();
    assert!(d.allowed && d.remaining == Some(999_996), "{d:?}");
    let now = Utc::now();
    let events = (0..10)
        .map(|i| UsageEvent {
            tenant_id: id.clone(),
            metric: "api.calls".into(),
            amount: 3,
            idempotency_key: Some(format!("u{i}")),
            timestamp: now,
        })
        .collect();
    let answer = client.usage(&UsageBatch { events }).await.unwrap();
    assert!(
        answer
            .results
            .iter()
            .all(|r| r.status == shared::quota::hooks::Status::Accepted),
        "{answer:?}"
    );
    let http = reqwest::Client::new();
    let (st, _) = hook_status(
        &http,
        &cell.url(),
        &token,
        consume(&id, "api.calls", 1, "down-2"),
    )
    .await;
    assert_eq!(st, 200);

    // The global tier comes back (on another port): the rollups arrive.
    let back = global::build(global_settings(&gdb, &keys, &o, &prefix))
        .await
        .unwrap();
    let q = "query($t: ID!, $m: String!, $f: DateTime!, $to: DateTime!) { usage(tenantId: $t, metric: $m, from: $f, to: $to) { start amount } }";
    let vars = json!({ "t": id, "m": "api.calls", "f": now - chrono::Duration::hours(2), "to": now + chrono::Duration::hours(2) });
    let mut sum = 0;
    for _ in 0..300 {
        let v = gql(back.url(), q, vars.clone()).await;
        sum = v["data"]["usage"]
            .as_array()
            .map(|a| a.iter().map(|p| p["amount"].as_i64().unwrap()).sum())
            .unwrap_or(0);
        if sum == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sum, 30, "every accepted event reached the global tier");
    cell.stop().await;
    back.stop().await;
    backing::drop_databases(&[gname, cname]).await;
}

async fn hook_status(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{url}/v1/quota/consume"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}
