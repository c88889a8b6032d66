//! The cell's data-plane hooks over HTTP: HARD and SOFT limits, GCRA rate
//! limits, idempotent consume, dry-run checks, usage ingestion with
//! deduplication and rollups to the global tier, bad requests and auth.

use std::time::Duration;

use chrono::Utc;
use e2e::quota::{QUOTAS, SET, consume, data_plane, define, hook, wait_synced};
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::auth::Role;
use shared::ids::TenantId;
use shared::quota::hooks::{CHECK, CONSUME, USAGE};

const CELL: &str = "eu-west-1-a";

async fn set(s: &Stack, tenant: &str, metric: &str, extra: Value) {
    let mut i = json!({ "tenantId": tenant, "metric": metric, "expectedVersion": 0,
        "idempotencyKey": format!("{tenant}-{metric}") });
    for (k, v) in extra.as_object().unwrap() {
        i[k] = v.clone();
    }
    let v = s.gql(&s.admin(), SET, json!({ "i": i })).await;
    assert!(v.get("errors").is_none(), "setQuota: {v}");
}

async fn setup(s: &Stack) -> (String, String) {
    define(s, "api.calls", "PERIODIC", "CLOSED").await;
    define(s, "api.requests", "RATE", "CLOSED").await;
    define(s, "seats", "GAUGE", "CLOSED").await;
    wait_synced(s, &["api.calls", "api.requests", "seats"]).await;
    let a = s.create_tenant("hooks-a", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = s.create_tenant("hooks-b", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    set(
        s,
        &a,
        "api.calls",
        json!({ "limit": 3, "period": "DAY", "enforcement": "HARD" }),
    )
    .await;
    set(
        s,
        &b,
        "api.calls",
        json!({ "limit": 2, "period": "DAY", "enforcement": "SOFT" }),
    )
    .await;
    set(
        s,
        &a,
        "api.requests",
        json!({ "limit": 1, "burst": 2, "enforcement": "HARD" }),
    )
    .await;
    (a, b)
}

#[tokio::test]
async fn consume_enforces_hard_and_soft_limits_once_per_key() {
    let s = Stack::start(Backend::Postgres).await;
    let (a, b) = setup(&s).await;
    let url = s.cell(CELL).url();
    let tok = data_plane(&s, CELL, &[]);
    let t = Some(tok.as_str());

    let (st, first) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 2, "c1")).await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(first["allowed"], true);
    assert_eq!(
        (first["limit"].as_i64(), first["remaining"].as_i64()),
        (Some(3), Some(1))
    );
    assert!(first["resetAt"].is_string());
    // The retry answers the first decision and counts nothing.
    let (_, again) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 2, "c1")).await;
    assert_eq!(again, first);
    // A check is a dry run.
    let (_, dry) = hook(
        &s,
        &url,
        CHECK,
        t,
        json!({ "tenantId": a, "metric": "api.calls", "amount": 2 }),
    )
    .await;
    assert_eq!(dry["allowed"], false, "{dry}");
    let (_, dry) = hook(
        &s,
        &url,
        CHECK,
        t,
        json!({ "tenantId": a, "metric": "api.calls", "amount": 1 }),
    )
    .await;
    assert_eq!(dry["allowed"], true, "{dry}");
    let (_, last) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 1, "c2")).await;
    assert_eq!(
        (last["allowed"].as_bool(), last["remaining"].as_i64()),
        (Some(true), Some(0))
    );
    let (_, denied) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 1, "c3")).await;
    assert_eq!(
        denied["allowed"], false,
        "HARD denies past the limit: {denied}"
    );
    assert!(denied["retryAfterMs"].as_i64().unwrap() > 0);
    assert_eq!(denied["overage"], 0);
    let q = s.gql(&s.admin(), QUOTAS, json!({ "t": a })).await;
    let calls = q["data"]["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["metric"] == "api.calls")
        .unwrap()
        .clone();
    assert_eq!(
        (calls["used"].as_i64(), calls["remaining"].as_i64()),
        (Some(3), Some(0)),
        "{q}"
    );

    // SOFT allows and flags the overage.
    let (_, soft) = hook(&s, &url, CONSUME, t, consume(&b, "api.calls", 3, "s1")).await;
    assert_eq!(
        (soft["allowed"].as_bool(), soft["overage"].as_i64()),
        (Some(true), Some(1)),
        "{soft}"
    );

    // GCRA: a burst of 2, then one per second.
    let mut allowed = 0;
    let mut retry = None;
    for i in 0..3 {
        let (_, d) = hook(
            &s,
            &url,
            CONSUME,
            t,
            consume(&a, "api.requests", 1, &format!("r{i}")),
        )
        .await;
        if d["allowed"] == true {
            allowed += 1;
        } else {
            retry = d["retryAfterMs"].as_i64();
        }
    }
    assert_eq!(allowed, 2);
    assert!(retry.is_some_and(|ms| ms > 0 && ms <= 1000), "{retry:?}");

    // A metric the plan does not limit is allowed without a limit.
    let (_, seats) = hook(&s, &url, CONSUME, t, consume(&a, "seats", 3, "seat-1")).await;
    assert_eq!(
        (seats["allowed"].as_bool(), seats["limit"].as_i64()),
        (Some(true), Some(50)),
        "pro plan: {seats}"
    );

    let metrics = e2e::stack::metrics_request(&reqwest::Client::new(), &url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("tcp_quota_decisions_total") && l.contains("outcome=\"denied\"")), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_400_and_auth_failures_401_or_403() {
    let s = Stack::start(Backend::Postgres).await;
    let (a, b) = setup(&s).await;
    let url = s.cell(CELL).url();
    let tok = data_plane(&s, CELL, &[]);
    let t = Some(tok.as_str());
    let bad = [
        consume(&a, "api.calls", 0, "z"),
        consume(&a, "api.calls", -5, "z"),
        json!({ "tenantId": a, "metric": "api.calls", "amount": 1 }),
        consume(&a, "api.calls", 1, ""),
        consume(&a, "no.such.metric", 1, "z"),
        consume("not-a-tenant", "api.calls", 1, "z"),
        json!({ "tenantId": a }),
        json!("not an object"),
    ];
    for body in bad {
        let (st, v) = hook(&s, &url, CONSUME, t, body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "BAD_USER_INPUT", "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let (st, v) = hook(
        &s,
        &url,
        CONSUME,
        t,
        consume(&TenantId::new().to_string(), "api.calls", 1, "z"),
    )
    .await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    // Nothing was counted by the refused requests.
    let (_, d) = hook(
        &s,
        &url,
        CHECK,
        t,
        json!({ "tenantId": a, "metric": "api.calls", "amount": 3 }),
    )
    .await;
    assert_eq!(d["allowed"], true, "{d}");

    let body = consume(&a, "api.calls", 1, "auth");
    let (st, v) = hook(&s, &url, CONSUME, None, body.clone()).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (st, _) = hook(&s, &url, CONSUME, Some("garbage"), body.clone()).await;
    assert_eq!(st, 401);
    let other_cell = data_plane(&s, "us-east-1-a", &[]);
    let (st, v) = hook(&s, &url, CONSUME, Some(&other_cell), body.clone()).await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("FORBIDDEN")));
    let sre = s.token("sre", &[Role::Sre], &[], None);
    assert_eq!(
        hook(&s, &url, CONSUME, Some(&sre), body.clone()).await.0,
        403
    );
    let unbound = s.token("edge", &[Role::DataPlane], &[], None);
    assert_eq!(
        hook(&s, &url, CONSUME, Some(&unbound), body.clone())
            .await
            .0,
        403
    );
    // A tenant's token never consumes another tenant's quota.
    let ta: TenantId = a.parse().unwrap();
    let scoped = data_plane(&s, CELL, &[ta]);
    assert_eq!(
        hook(&s, &url, CONSUME, Some(&scoped), body.clone()).await.0,
        200
    );
    let (st, _) = hook(
        &s,
        &url,
        CONSUME,
        Some(&scoped),
        consume(&b, "api.calls", 1, "steal"),
    )
    .await;
    assert_eq!(st, 403);
    // Only data-plane tokens write (issue 16): a tenant-admin may not
    // consume even its own tenant's quota (it could reset its limits).
    let tenant_admin = s.token("alice", &[Role::TenantAdmin], &[ta], None);
    assert_eq!(
        hook(
            &s,
            &url,
            CONSUME,
            Some(&tenant_admin),
            consume(&a, "api.calls", 1, "own")
        )
        .await
        .0,
        403
    );
    let (st, _) = hook(
        &s,
        &url,
        CONSUME,
        Some(&tenant_admin),
        consume(&b, "api.calls", 1, "steal2"),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = hook(&s, &url, USAGE, Some(&scoped), json!({ "events": [
        { "tenantId": b, "metric": "api.calls", "amount": 1, "idempotencyKey": "u", "timestamp": Utc::now() } ] })).await;
    assert_eq!(st, 403);
    let (_, d) = hook(
        &s,
        &url,
        CHECK,
        t,
        json!({ "tenantId": b, "metric": "api.calls", "amount": 2 }),
    )
    .await;
    assert_eq!(
        (d["allowed"].as_bool(), d["overage"].as_i64()),
        (Some(true), Some(0)),
        "b untouched: {d}"
    );
    s.stop().await;
}

#[tokio::test]
async fn usage_is_counted_once_and_rolled_up_to_the_global_tier() {
    usage_counted_once(Backend::Postgres).await;
}

#[tokio::test]
async fn usage_is_counted_once_on_sqlite_too() {
    usage_counted_once(Backend::Sqlite).await;
}

async fn usage_counted_once(backend: Backend) {
    let s = Stack::start(backend).await;
    let (a, _) = setup(&s).await;
    let url = s.cell(CELL).url();
    let tok = data_plane(&s, CELL, &[]);
    let t = Some(tok.as_str());
    let now = Utc::now();
    let ev = |key: &str, amount: i64, ts: chrono::DateTime<Utc>, metric: &str| json!({ "tenantId": a, "metric": metric, "amount": amount, "idempotencyKey": key, "timestamp": ts });
    let batch = json!({ "events": [
        ev("e1", 5, now, "api.calls"),
        ev("e2", 7, now, "api.calls"),
        ev("e1", 5, now, "api.calls"),
        ev("late", 1, now - chrono::Duration::days(3), "api.calls"),
        ev("future", 1, now + chrono::Duration::minutes(10), "api.calls"),
        ev("nometric", 1, now, "no.such.metric"),
    ] });
    let (st, v) = hook(&s, &url, USAGE, t, batch.clone()).await;
    assert_eq!(st, 200, "{v}");
    let statuses: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "accepted",
            "accepted",
            "duplicate",
            "rejected",
            "rejected",
            "rejected"
        ],
        "{v}"
    );
    assert!(
        v["results"][3]["reason"]
            .as_str()
            .unwrap()
            .contains("lateness")
    );
    assert!(
        v["results"][4]["reason"]
            .as_str()
            .unwrap()
            .contains("future")
    );
    // The retried batch is all duplicates (or rejected again).
    let (_, v) = hook(&s, &url, USAGE, t, batch).await;
    let statuses: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "duplicate",
            "duplicate",
            "duplicate",
            "rejected",
            "rejected",
            "rejected"
        ],
        "{v}"
    );
    // A batch with an event missing its key, or a zero amount, is refused whole.
    for broken in [
        json!({ "events": [ ev("ok", 1, now, "api.calls"), { "tenantId": a, "metric": "api.calls", "amount": 1, "timestamp": now } ] }),
        json!({ "events": [ ev("ok", 1, now, "api.calls"), ev("zero", 0, now, "api.calls") ] }),
        json!({ "events": [] }),
    ] {
        let (st, v) = hook(&s, &url, USAGE, t, broken).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (400, Some("BAD_USER_INPUT")),
            "{v}"
        );
    }
    let cell = s.cell(CELL);
    let totals = cell
        .state
        .quota
        .totals(a.parse().unwrap(), "api.calls")
        .await
        .unwrap();
    assert_eq!(
        totals.values().sum::<i64>(),
        12,
        "the refused batches counted nothing: {totals:?}"
    );

    let q = "query($t: ID!, $m: String!, $f: DateTime!, $to: DateTime!) { usage(tenantId: $t, metric: $m, from: $f, to: $to, granularity: DAY) { start amount } }";
    let vars = json!({ "t": a, "m": "api.calls", "f": now - chrono::Duration::days(1), "to": now + chrono::Duration::days(1) });
    let mut got = Value::Null;
    for _ in 0..200 {
        got = s.gql(&s.admin(), q, vars.clone()).await;
        let sum: i64 = got["data"]["usage"]
            .as_array()
            .map(|a| a.iter().map(|p| p["amount"].as_i64().unwrap()).sum())
            .unwrap_or(0);
        if sum == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sum: i64 = got["data"]["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 12, "{got}");
    let bad = s
        .gql(
            &s.admin(),
            q,
            json!({ "t": a, "m": "nope", "f": now, "to": now + chrono::Duration::hours(1) }),
        )
        .await;
    assert_eq!(e2e::stack::code(&bad), Some("BAD_USER_INPUT"));
    s.stop().await;
}
