//! What a decision means, the same with the in-memory limiter and with
//! Redis: a consume key reused with other input is a CONFLICT (409) and
//! changes nothing; GAUGE levels are released, idempotently, never below
//! zero; metered usage (`/v1/usage`) counts against PERIODIC limits, in
//! consume decisions and in `quotas(tenantId)`.

use chrono::Utc;
use e2e::quota::{QUOTAS, SET, consume, data_plane, define, hook, wait_synced};
use e2e::{Backend, CellSpec, Options, Stack};
use serde_json::{Value, json};
use shared::quota::hooks::{CHECK, CONSUME, RELEASE, USAGE};

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

async fn used(s: &Stack, tenant: &str, metric: &str) -> (i64, i64) {
    let q = s.gql(&s.admin(), QUOTAS, json!({ "t": tenant })).await;
    let row = q["data"]["quotas"]
        .as_array()
        .unwrap_or_else(|| panic!("no quotas: {q}"))
        .iter()
        .find(|r| r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric}: {q}"))
        .clone();
    (
        row["used"].as_i64().unwrap(),
        row["remaining"].as_i64().unwrap(),
    )
}

async fn run(limiter: cell::quota::LimiterKind) {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![CellSpec {
        id: CELL,
        region: "eu-west-1",
        capacity: 100,
    }];
    o.quota.limiter = limiter;
    let s = Stack::start_with(o).await;
    define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    define(&s, "seats", "GAUGE", "CLOSED").await;
    wait_synced(&s, &["api.calls", "seats"]).await;
    let a = s.create_tenant("sem-a", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    set(
        &s,
        &a,
        "api.calls",
        json!({ "limit": 5, "period": "DAY", "enforcement": "HARD" }),
    )
    .await;
    set(
        &s,
        &a,
        "seats",
        json!({ "limit": 4, "enforcement": "HARD" }),
    )
    .await;
    let url = s.cell(CELL).url();
    let tok = data_plane(&s, CELL, &[]);
    let t = Some(tok.as_str());

    // A key reused with another amount, metric or operation: 409, nothing counted.
    let (st, first) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 1, "k1")).await;
    assert_eq!((st, first["remaining"].as_i64()), (200, Some(4)), "{first}");
    for body in [
        consume(&a, "api.calls", 2, "k1"),
        consume(&a, "seats", 1, "k1"),
    ] {
        let (st, v) = hook(&s, &url, CONSUME, t, body.clone()).await;
        assert_eq!(st, 409, "{body}: {v}");
        assert_eq!(v["error"]["code"], "CONFLICT", "{v}");
    }
    let (st, again) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 1, "k1")).await;
    assert_eq!(
        (st, &again),
        (200, &first),
        "the same input answers the first decision"
    );
    assert_eq!(used(&s, &a, "api.calls").await, (1, 4));
    assert_eq!(used(&s, &a, "seats").await, (0, 4));

    // Metered usage counts against the PERIODIC limit: 1 consumed + 3 metered of 5.
    let now = Utc::now();
    let events = json!({ "events": [
        { "tenantId": a, "metric": "api.calls", "amount": 2, "idempotencyKey": "u1", "timestamp": now },
        { "tenantId": a, "metric": "api.calls", "amount": 1, "idempotencyKey": "u2", "timestamp": now },
        // Counted by the meter, but in another window than today's limit.
        { "tenantId": a, "metric": "api.calls", "amount": 7, "idempotencyKey": "u3",
          "timestamp": now - chrono::Duration::hours(23) - chrono::Duration::minutes(59) },
    ] });
    let (st, v) = hook(&s, &url, USAGE, t, events.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "accepted"),
        "{v}"
    );
    let today = if (now - chrono::Duration::hours(23) - chrono::Duration::minutes(59)).date_naive()
        == now.date_naive()
    {
        10
    } else {
        3
    };
    let (u, _) = used(&s, &a, "api.calls").await;
    assert_eq!(u, 1 + today, "quotas(tenantId) sees metered usage");
    // Sent again: duplicates, counted once.
    let (_, v) = hook(&s, &url, USAGE, t, events).await;
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "duplicate"),
        "{v}"
    );
    assert_eq!(used(&s, &a, "api.calls").await.0, 1 + today);
    if today == 3 {
        let (_, d) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 1, "k2")).await;
        assert_eq!(
            (d["allowed"].as_bool(), d["remaining"].as_i64()),
            (Some(true), Some(0)),
            "{d}"
        );
    }
    let (_, d) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 1, "k3")).await;
    assert_eq!(
        d["allowed"], false,
        "consume decisions see metered usage: {d}"
    );

    // GAUGE: take 3 seats, release 2 (idempotent), release more than held: 0.
    let (_, d) = hook(&s, &url, CONSUME, t, consume(&a, "seats", 3, "s1")).await;
    assert_eq!(d["remaining"], 1, "{d}");
    let (st, r1) = hook(&s, &url, RELEASE, t, consume(&a, "seats", 2, "r1")).await;
    assert_eq!(st, 200, "{r1}");
    assert_eq!(
        (r1["allowed"].as_bool(), r1["remaining"].as_i64()),
        (Some(true), Some(3))
    );
    let (_, again) = hook(&s, &url, RELEASE, t, consume(&a, "seats", 2, "r1")).await;
    assert_eq!(
        again, r1,
        "a retried release answers the first and releases once"
    );
    assert_eq!(used(&s, &a, "seats").await, (1, 3));
    let (st, v) = hook(&s, &url, RELEASE, t, consume(&a, "seats", 1, "s1")).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("CONFLICT")),
        "a consume key is not a release key: {v}"
    );
    let (_, r2) = hook(&s, &url, RELEASE, t, consume(&a, "seats", 10, "r2")).await;
    assert_eq!(r2["remaining"], 4, "never below zero: {r2}");
    assert_eq!(used(&s, &a, "seats").await, (0, 4));
    let (_, d) = hook(&s, &url, CONSUME, t, consume(&a, "seats", 4, "s2")).await;
    assert_eq!(
        (d["allowed"].as_bool(), d["remaining"].as_i64()),
        (Some(true), Some(0)),
        "{d}"
    );

    // Bad releases: 400, nothing changes.
    for body in [
        consume(&a, "api.calls", 1, "r3"),
        consume(&a, "seats", 0, "r4"),
        consume(&a, "seats", -1, "r5"),
        json!({ "tenantId": a, "metric": "seats", "amount": 1 }),
        consume(&a, "no.such", 1, "r6"),
    ] {
        let (st, v) = hook(&s, &url, RELEASE, t, body.clone()).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (400, Some("BAD_USER_INPUT")),
            "{body}: {v}"
        );
    }
    let (_, d) = hook(
        &s,
        &url,
        CHECK,
        t,
        json!({ "tenantId": a, "metric": "seats", "amount": 1 }),
    )
    .await;
    assert_eq!(d["allowed"], false, "still full: {d}");
    s.stop().await;
}

#[tokio::test]
async fn conflicts_releases_and_metered_usage_in_memory() {
    run(cell::quota::LimiterKind::Memory).await;
}

#[tokio::test]
async fn conflicts_releases_and_metered_usage_in_redis() {
    run(cell::quota::LimiterKind::Redis).await;
}
