//! The cell's data plane binds (issue 16): every `/v1/` error is one JSON
//! body; only ACTIVE tenants are served (a suspension binds within a
//! second, a resume serves again); amounts and counts are range-checked and
//! counters cannot wrap; only data-plane tokens of the cell write.

use std::time::{Duration, Instant};

use chrono::Utc;
use e2e::flags::{boolean_flag, evaluate, set_targeting, signal};
use e2e::quota::{consume, data_plane, define, hook, wait_synced};
use e2e::{Backend, Options, Stack};
use serde_json::{Value, json};
use shared::auth::Role;
use shared::ids::TenantId;
use shared::quota::hooks::{CHECK, CONSUME, MAX_AMOUNT, RELEASE, USAGE};

const CELL: &str = "eu-west-1-a";
const SET: &str = "mutation($i: SetQuotaInput!) { setQuota(input: $i) { metric version } }";
const SUSPEND: &str =
    "mutation($i: ChangeTenantStatusInput!) { suspendTenant(input: $i) { status version } }";
const RESUME: &str =
    "mutation($i: ChangeTenantStatusInput!) { resumeTenant(input: $i) { status version } }";
const DEPROVISION: &str =
    "mutation($i: DeprovisionTenantInput!) { deprovisionTenant(input: $i) { status version } }";

/// Asserts the one error body: `{error: {code, message}}` with `status`.
fn assert_error(got: (u16, Value), status: u16, code: &str) {
    let (st, v) = got;
    assert_eq!(st, status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        !v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{v}"
    );
}

/// Sends `body` (raw) with `method` to the cell; returns status and JSON (or Null).
async fn raw(
    s: &Stack,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let resp = s
        .http
        .request(method, url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("cell answered");
    let st = resp.status().as_u16();
    (st, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_data_plane_error_is_the_json_error_body() {
    let s = Stack::start(Backend::Postgres).await;
    let a = s.create_tenant("errs-a", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = s.cell(CELL).url();
    let tok = data_plane(&s, CELL, &[]);
    let post = reqwest::Method::POST;

    // A body over the limit (256 KiB): 413, JSON, on every route kind.
    let big = format!(
        "{{\"tenantId\":\"{a}\",\"metric\":\"m\",\"amount\":1,\"pad\":\"{}\"}}",
        "x".repeat(300 * 1024)
    )
    .into_bytes();
    for path in [CONSUME, USAGE, "/v1/flags/evaluate", "/v1/signals"] {
        let got = raw(&s, post.clone(), &format!("{url}{path}"), &tok, big.clone()).await;
        assert_error(got, 413, "BAD_USER_INPUT");
    }
    // Unknown `/v1/` paths: 404 JSON; other paths keep their plain 404.
    let got = raw(
        &s,
        post.clone(),
        &format!("{url}/v1/nope"),
        &tok,
        b"{}".to_vec(),
    )
    .await;
    assert_error(got, 404, "NOT_FOUND");
    let other = s.http.get(format!("{url}/nope")).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
    // A method a route does not serve: 405 JSON, with `Allow`.
    let resp = s
        .http
        .get(format!("{url}{CONSUME}"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let v: Value = resp.json().await.expect("JSON 405");
    assert_eq!(v["error"]["code"], "BAD_USER_INPUT", "{v}");
    // What axum's extractors refuse: broken JSON, a wrong shape, a bad query.
    for path in ["/v1/flags/evaluate", "/v1/signals"] {
        for body in [&b"{not json"[..], &b"{\"tenantId\": 5}"[..]] {
            let got = raw(
                &s,
                post.clone(),
                &format!("{url}{path}"),
                &tok,
                body.to_vec(),
            )
            .await;
            assert_error(got, 400, "BAD_USER_INPUT");
        }
    }
    let resp = s
        .http
        .get(format!(
            "{url}/v1/tenants/{a}/flags?environment=a&environment=b"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let st = resp.status().as_u16();
    assert_error(
        (st, resp.json().await.expect("JSON 400")),
        400,
        "BAD_USER_INPUT",
    );
    // Auth failures carry the same body.
    let got = raw(
        &s,
        post.clone(),
        &format!("{url}/v1/flags/evaluate"),
        "garbage",
        b"{}".to_vec(),
    )
    .await;
    assert_error(got, 401, "UNAUTHENTICATED");
    s.stop().await;
}

/// Consumes once with a fresh key; returns the decision.
async fn consume_once(s: &Stack, url: &str, tok: &str, tenant: &str, n: &mut u32) -> Value {
    *n += 1;
    let (st, d) = hook(
        s,
        url,
        CONSUME,
        Some(tok),
        consume(tenant, "api.calls", 1, &format!("k{n}")),
    )
    .await;
    assert_eq!(st, 200, "{d}");
    d
}

/// Polls consume until its `reason` is `want` (null: allowed again); returns the time it took.
async fn until_reason(
    s: &Stack,
    url: &str,
    tok: &str,
    tenant: &str,
    n: &mut u32,
    want: Value,
) -> Duration {
    let started = Instant::now();
    loop {
        let d = consume_once(s, url, tok, tenant, n).await;
        let reason = d.get("reason").cloned().unwrap_or(Value::Null);
        if reason == want {
            assert_eq!(d["allowed"], want.is_null(), "{d}");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "consume never answered reason {want}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_within_a_second_and_served_again_on_resume() {
    let mut o = Options::new(Backend::Postgres);
    o.provisioning.max_grace_period = Duration::from_secs(3600);
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    wait_synced(&s, &["api.calls"]).await;
    let t = s.create_tenant("bound", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let version = t["version"].as_i64().unwrap();
    boolean_flag(&s, "gate").await;
    let on = s
        .gql(&admin, &set_targeting(), json!({ "i": { "key": "gate", "environment": "prod", "enabled": true,
            "defaultVariant": "on", "rules": [], "expectedVersion": 1, "idempotencyKey": "gate-on" } }))
        .await;
    assert!(on.get("errors").is_none(), "{on}");
    let url = s.cell(CELL).url();
    let tok = data_plane(&s, CELL, &[]);
    let mut n = 0;
    assert_eq!(
        consume_once(&s, &url, &tok, &id, &mut n).await["allowed"],
        true
    );
    let on = e2e::flags::wait_variant(&url, &tok, &id, "gate", "prod", "on").await;
    assert_eq!(on["reason"], "DEFAULT", "{on}");

    let sus = s
        .gql(
            &admin,
            SUSPEND,
            json!({ "i": { "tenantId": id, "expectedVersion": version, "idempotencyKey": "sus" } }),
        )
        .await;
    assert_eq!(sus["data"]["suspendTenant"]["status"], "SUSPENDED", "{sus}");
    let took = until_reason(&s, &url, &tok, &id, &mut n, json!("TENANT_SUSPENDED")).await;
    assert!(
        took < Duration::from_secs(1),
        "the suspension bound after {took:?}"
    );
    // A check is refused alike, and nothing was counted by the refusals.
    let (_, d) = hook(
        &s,
        &url,
        CHECK,
        Some(&tok),
        json!({ "tenantId": id, "metric": "api.calls", "amount": 1 }),
    )
    .await;
    assert_eq!(
        (d["allowed"].as_bool(), d["reason"].as_str()),
        (Some(false), Some("TENANT_SUSPENDED")),
        "{d}"
    );
    // Flags: the off variant, reason TENANT_INACTIVE, on both routes.
    let (st, e) = evaluate(&url, &tok, &id, "gate", "prod").await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(
        (e["variant"].as_str(), e["reason"].as_str()),
        (Some("off"), Some("TENANT_INACTIVE")),
        "{e}"
    );
    let all: Value = s
        .http
        .get(format!("{url}/v1/tenants/{id}/flags?environment=prod"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["flags"][0]["reason"], "TENANT_INACTIVE", "{all}");
    // Metering is the truth: a suspended tenant's usage is still recorded.
    let (st, u) = hook(&s, &url, USAGE, Some(&tok), json!({ "events": [
        { "tenantId": id, "metric": "api.calls", "amount": 4, "idempotencyKey": "u-sus", "timestamp": Utc::now() } ] })).await;
    assert_eq!(
        (st, u["results"][0]["status"].as_str()),
        (200, Some("accepted")),
        "{u}"
    );

    let res = s
        .gql(&admin, RESUME, json!({ "i": { "tenantId": id, "expectedVersion": version + 1, "idempotencyKey": "res" } }))
        .await;
    assert_eq!(res["data"]["resumeTenant"]["status"], "ACTIVE", "{res}");
    let took = until_reason(&s, &url, &tok, &id, &mut n, Value::Null).await;
    assert!(
        took < Duration::from_secs(1),
        "the resume bound after {took:?}"
    );
    let (_, e) = evaluate(&url, &tok, &id, "gate", "prod").await;
    assert_eq!(e["variant"], "on", "{e}");

    // Deprovisioning (in its grace period) is refused with its own reason.
    let dep = s
        .gql(
            &admin,
            DEPROVISION,
            json!({ "i": { "tenantId": id, "idempotencyKey": "dep", "gracePeriodSeconds": 3600 } }),
        )
        .await;
    assert_eq!(
        dep["data"]["deprovisionTenant"]["status"], "DEPROVISIONING",
        "{dep}"
    );
    until_reason(&s, &url, &tok, &id, &mut n, json!("TENANT_DEPROVISIONING")).await;
    s.stop().await;
}

#[tokio::test]
async fn amounts_are_range_checked_and_counters_cannot_wrap() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    define(&s, "seats", "GAUGE", "CLOSED").await;
    wait_synced(&s, &["api.calls", "seats"]).await;
    let a = s.create_tenant("wrap", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let set = s
        .gql(
            &admin,
            SET,
            json!({ "i": { "tenantId": a, "metric": "api.calls", "expectedVersion": 0,
            "idempotencyKey": "q", "limit": 100, "period": "DAY", "enforcement": "HARD" } }),
        )
        .await;
    assert!(set.get("errors").is_none(), "{set}");
    let url = s.cell(CELL).url();
    let tok = data_plane(&s, CELL, &[]);
    let t = Some(tok.as_str());

    // Two events of i64::MAX used to wrap the total negative: each is now
    // rejected on its own, with a reason, beside an event that counts.
    let now = Utc::now();
    let ev = |k: &str, amount: i64| json!({ "tenantId": a, "metric": "api.calls", "amount": amount, "idempotencyKey": k, "timestamp": now });
    let (st, v) = hook(&s, &url, USAGE, t, json!({ "events": [ev("max-1", i64::MAX), ev("max-2", i64::MAX), ev("edge", MAX_AMOUNT), ev("ok", 3)] })).await;
    assert_eq!(st, 200, "{v}");
    let statuses: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["rejected", "rejected", "accepted", "accepted"],
        "{v}"
    );
    assert!(
        v["results"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("AMOUNT_TOO_LARGE"),
        "{v}"
    );
    let totals = s
        .cell(CELL)
        .state
        .quota
        .totals(a.parse().unwrap(), "api.calls")
        .await
        .unwrap();
    assert_eq!(totals.values().sum::<i64>(), MAX_AMOUNT + 3, "{totals:?}");

    // The HARD limit holds: the counter is past it, never wrapped below.
    let (st, d) = hook(&s, &url, CONSUME, t, consume(&a, "api.calls", 1, "after")).await;
    assert_eq!((st, d["allowed"].as_bool()), (200, Some(false)), "{d}");
    // A quota amount past the maximum is refused at the edge.
    for (path, body) in [
        (CONSUME, consume(&a, "api.calls", i64::MAX, "huge")),
        (CONSUME, consume(&a, "api.calls", MAX_AMOUNT + 1, "huge2")),
        (
            CHECK,
            json!({ "tenantId": a, "metric": "api.calls", "amount": i64::MAX }),
        ),
        (RELEASE, consume(&a, "seats", i64::MAX, "rel")),
    ] {
        let (st, v) = hook(&s, &url, path, t, body).await;
        assert_eq!(
            (st, v["error"]["field"].as_str()),
            (400, Some("amount")),
            "{path}: {v}"
        );
    }
    // Signals: a count past the maximum refuses the batch (400), naming it.
    boolean_flag(&s, "sig").await;
    let (st, v) = signal(&url, &tok, "prod", json!([{ "tenantId": a, "flagKey": "sig", "variant": "on", "requests": i64::MAX, "errors": 0 }])).await;
    assert_eq!(
        (st, v["error"]["field"].as_str()),
        (400, Some("signals[0].requests")),
        "{v}"
    );
    let (st, v) = signal(
        &url,
        &tok,
        "prod",
        json!([{ "tenantId": a, "flagKey": "sig", "variant": "on", "requests": 10, "errors": 1 }]),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn only_data_plane_tokens_of_the_cell_write() {
    let s = Stack::start(Backend::Postgres).await;
    define(&s, "seats", "GAUGE", "CLOSED").await;
    wait_synced(&s, &["seats"]).await;
    let a = s.create_tenant("seated", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ta: TenantId = a.parse().unwrap();
    let url = s.cell(CELL).url();
    let tok = data_plane(&s, CELL, &[ta]);
    let (_, d) = hook(&s, &url, CONSUME, Some(&tok), consume(&a, "seats", 5, "s1")).await;
    assert_eq!(d["allowed"], true, "{d}");

    // A tenant-admin cannot zero its own seat count, nor count or report.
    let tenant_admin = s.token("alice", &[Role::TenantAdmin], &[ta], None);
    let now = Utc::now();
    for (path, body) in [
        (RELEASE, consume(&a, "seats", 5, "free")),
        (CONSUME, consume(&a, "seats", 1, "c")),
        (
            USAGE,
            json!({ "events": [{ "tenantId": a, "metric": "seats", "amount": 1, "idempotencyKey": "u", "timestamp": now }] }),
        ),
    ] {
        let got = hook(&s, &url, path, Some(&tenant_admin), body).await;
        assert_error(got, 403, "FORBIDDEN");
    }
    let (st, _) = signal(
        &url,
        &tenant_admin,
        "prod",
        json!([{ "tenantId": a, "flagKey": "x", "variant": "on", "requests": 1, "errors": 0 }]),
    )
    .await;
    assert_eq!(st, 403);
    // Neither can a platform-admin write; both may still read.
    let admin = s.admin();
    let got = hook(
        &s,
        &url,
        RELEASE,
        Some(&admin),
        consume(&a, "seats", 5, "free2"),
    )
    .await;
    assert_error(got, 403, "FORBIDDEN");
    for reader in [&tenant_admin, &admin] {
        let (st, d) = hook(
            &s,
            &url,
            CHECK,
            Some(reader),
            json!({ "tenantId": a, "metric": "seats", "amount": 1 }),
        )
        .await;
        assert_eq!(st, 200, "{d}");
        assert_eq!(d["remaining"], 44, "pro: 50 seats, 5 used: {d}");
    }
    // A data-plane token of another cell is refused on this one (403 body);
    // a token naming one tenant does not write for another.
    let other = data_plane(&s, "us-east-1-a", &[ta]);
    let got = hook(
        &s,
        &url,
        RELEASE,
        Some(&other),
        consume(&a, "seats", 5, "free3"),
    )
    .await;
    assert_error(got, 403, "FORBIDDEN");
    let b = s.create_tenant("other", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = hook(
        &s,
        &url,
        RELEASE,
        Some(&tok),
        consume(&b, "seats", 1, "free4"),
    )
    .await;
    assert_error(got, 403, "FORBIDDEN");
    let (st, _) = evaluate(&url, &tok, &b, "x", "prod").await;
    assert_eq!(st, 403, "a scoped token reads its tenants only");
    // The seats are untouched by every refusal.
    let (_, d) = hook(
        &s,
        &url,
        CHECK,
        Some(&tok),
        json!({ "tenantId": a, "metric": "seats", "amount": 1 }),
    )
    .await;
    assert_eq!(d["remaining"], 44, "{d}");
    s.stop().await;
}
