//! Authority that binds (issue 16): a refused token says nothing of why; a
//! subscription lives no longer than the token, break-glass grant or
//! membership it was opened with; errors never echo their input nor leak a
//! lock or an existence; `/metrics` needs a token (or the scraper's own
//! listener) and names only tenants that exist and were authorized; each
//! caller has a rate.

use std::time::{Duration, Instant};

use base64::Engine;
use e2e::stack::{CREATE, Options, SECRET, code, message, metrics_token};
use e2e::ws::{Socket, open, subscribe};
use e2e::{Backend, Stack};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, REFUSED, Role};
use shared::ids::TenantId;
use tokio_tungstenite::tungstenite::Message;

const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";

/// HMAC-SHA256 (the tests have no JWT library): to sign tokens the
/// control plane's own `Keys` would never mint.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::digest([ipad.as_slice(), msg].concat());
    Sha256::digest([opad.as_slice(), &inner[..]].concat()).to_vec()
}

/// A token with `claims`, signed with the stack's secret, header `alg`.
fn forge(alg: &str, claims: Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(
        json!({ "alg": alg, "typ": "JWT", "kid": shared::auth::key_id(SECRET) })
            .to_string()
            .as_bytes(),
    );
    let body = b64.encode(claims.to_string().as_bytes());
    let sig = b64.encode(hmac_sha256(
        SECRET.as_bytes(),
        format!("{header}.{body}").as_bytes(),
    ));
    format!("{header}.{body}.{sig}")
}

fn claims(sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": sub, "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE,
            "exp": now + 600, "iat": now, "roles": ["platform-admin"] })
}

#[tokio::test]
async fn token_refusals_say_nothing_of_why() {
    let s = Stack::start(Backend::Sqlite).await;
    let now = chrono::Utc::now().timestamp();
    let mut not_yet = claims("early");
    not_yet["nbf"] = (now + 3600).into();
    let mut no_roles = claims("x");
    no_roles.as_object_mut().unwrap().remove("roles");
    let mut bad_role = claims("x");
    bad_role["roles"] = json!(["root"]);
    let expired = s
        .keys
        .mint("x", vec![Role::PlatformAdmin], vec![], None, -600)
        .unwrap();
    let refused = [
        ("nbf an hour ahead", Some(forge("HS256", not_yet))),
        ("empty sub", Some(forge("HS256", claims("")))),
        ("missing roles", Some(forge("HS256", no_roles))),
        ("unknown role", Some(forge("HS256", bad_role))),
        ("other algorithm", Some(forge("HS512", claims("x")))),
        ("expired", Some(expired)),
        ("garbage", Some("not.a.jwt".to_string())),
        ("none", None),
    ];
    let cell = s.cell("us-east-1-a").url();
    for base in [s.url(), cell] {
        for (what, tok) in &refused {
            let (status, body) = s
                .gql_at(&base, tok.as_deref(), "{ __typename }", json!({}))
                .await;
            assert_eq!(status, 401, "{what} at {base}: {body}");
            assert_eq!(code(&body), Some("UNAUTHENTICATED"), "{what}: {body}");
            assert_eq!(message(&body), REFUSED, "{what}: {body}");
            let text = body.to_string().to_lowercase();
            for leak in ["hs256", "algorithm", "roles", "service", "nbf", "immature"] {
                assert!(!text.contains(leak), "{what} names `{leak}`: {body}");
            }
        }
        // The same token with an nbf just past is accepted.
        let mut ready = claims("on-time");
        ready["nbf"] = (now - 5).into();
        let (status, body) = s
            .gql_at(
                &base,
                Some(&forge("HS256", ready)),
                "{ __typename }",
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    s.stop().await;
}

fn bearer(token: &str) -> Value {
    json!({ "Authorization": format!("Bearer {token}") })
}

/// What the server sent next.
#[derive(Debug)]
enum Next {
    Json(Value),
    /// The close frame's code (`None`: the connection ended without one).
    Closed(Option<u16>),
}

async fn next(ws: &mut Socket, within: Duration) -> Next {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("nothing from the server within {within:?}"));
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if matches!(v["type"].as_str(), Some("ka" | "ping" | "pong")) {
                    continue;
                }
                return Next::Json(v);
            }
            Some(Ok(Message::Close(f))) => return Next::Closed(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Next::Closed(None),
        }
    }
}

/// Reads until the connection closes (skipping subscription data), and
/// checks it closed as an ended authority does on `protocol`.
async fn expect_forbidden_close(ws: &mut Socket, protocol: &str, within: Duration) {
    let mut told = false;
    loop {
        match next(ws, within).await {
            Next::Closed(code) => {
                assert_eq!(code, Some(4403), "closed with {code:?}");
                assert!(
                    protocol != LEGACY_WS || told,
                    "the legacy protocol hears a connection_error first"
                );
                return;
            }
            Next::Json(v) if v["type"] == "connection_error" => {
                assert_eq!(protocol, LEGACY_WS, "{v}");
                assert_eq!(v["payload"]["message"], REFUSED, "{v}");
                told = true;
            }
            Next::Json(v) => {
                assert!(
                    matches!(v["type"].as_str(), Some("next" | "data")),
                    "unexpected {v}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_connection_init_without_a_valid_token_closes_with_4403() {
    let s = Stack::start(Backend::Sqlite).await;
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        for payload in [
            json!({}),
            bearer("forged.token.here"),
            bearer(&forge("HS256", claims(""))),
        ] {
            let mut ws = open(&s.url(), protocol, payload.clone()).await;
            expect_forbidden_close(&mut ws, protocol, Duration::from_secs(5)).await;
        }
        let mut ok = open(&s.url(), protocol, bearer(&s.admin())).await;
        match next(&mut ok, Duration::from_secs(5)).await {
            Next::Json(v) => assert_eq!(v["type"], "connection_ack", "{v}"),
            other => panic!("{protocol}: {other:?}"),
        }
    }
    s.stop().await;
}

const EVENTS: &str = "subscription { tenantEvents { kind tenant { slug } } }";

async fn acked(base: &str, protocol: &str, token: &str) -> Socket {
    let mut ws = open(base, protocol, bearer(token)).await;
    match next(&mut ws, Duration::from_secs(5)).await {
        Next::Json(v) => assert_eq!(v["type"], "connection_ack", "{v}"),
        other => panic!("{protocol}: not acknowledged: {other:?}"),
    }
    ws
}

#[tokio::test]
async fn a_subscription_ends_at_its_tokens_exp() {
    let s = Stack::start(Backend::Sqlite).await;
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let token = s
            .keys
            .mint("short", vec![Role::PlatformAdmin], vec![], None, 2)
            .unwrap();
        let exp = chrono::Utc::now().timestamp() + 2;
        let mut ws = acked(&s.url(), protocol, &token).await;
        subscribe(&mut ws, protocol, "1", EVENTS).await;
        expect_forbidden_close(&mut ws, protocol, Duration::from_secs(5)).await;
        let late = chrono::Utc::now().timestamp_millis() - exp * 1000;
        assert!(
            (-1000..1500).contains(&late),
            "{protocol}: closed {late} ms from the token's exp"
        );
    }
    s.stop().await;
}

const REQUEST_BG: &str =
    "mutation($i: RequestBreakGlassInput!) { requestBreakGlass(input: $i) { id } }";
const APPROVE_BG: &str = "mutation($id: ID!) { approveBreakGlass(id: $id) { status } }";
const ACTIVATE_BG: &str = "mutation($id: ID!) { activateBreakGlass(id: $id) { token } }";
const REVOKE_BG: &str = "mutation($id: ID!) { revokeBreakGlass(id: $id) { status } }";

/// alice (sre) requests access to `tenant`, bob (sre) approves: the id.
async fn approved_request(s: &Stack, tenant: &str, key: &str) -> String {
    let alice = s.token("alice", &[Role::Sre], &[], None);
    let bob = s.token("bob", &[Role::Sre], &[], None);
    let r = s
        .gql(
            &alice,
            REQUEST_BG,
            json!({ "i": { "tenantId": tenant, "reason": "SEV1",
            "scope": "READ", "durationSeconds": 600, "idempotencyKey": key } }),
        )
        .await;
    let id = r["data"]["requestBreakGlass"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let a = s.gql(&bob, APPROVE_BG, json!({ "id": id })).await;
    assert_eq!(a["data"]["approveBreakGlass"]["status"], "APPROVED", "{a}");
    id
}

#[tokio::test]
async fn revoking_break_glass_closes_its_subscriptions_within_a_second() {
    let s = Stack::start(Backend::Postgres).await;
    let t = s.create_tenant("glass-ws", "us-east-1").await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let alice = s.token("alice", &[Role::Sre], &[], None);
    for (i, protocol) in [TRANSPORT_WS, LEGACY_WS].into_iter().enumerate() {
        let id = approved_request(&s, &tenant, &format!("bg-ws-{i}")).await;
        let a = s.gql(&alice, ACTIVATE_BG, json!({ "id": id })).await;
        let token = a["data"]["activateBreakGlass"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{a}"))
            .to_owned();
        let mut ws = acked(&s.url(), protocol, &token).await;
        subscribe(&mut ws, protocol, "1", EVENTS).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let revoked = s.gql(&alice, REVOKE_BG, json!({ "id": id })).await;
        assert_eq!(
            revoked["data"]["revokeBreakGlass"]["status"], "REVOKED",
            "{revoked}"
        );
        let t0 = Instant::now();
        expect_forbidden_close(&mut ws, protocol, Duration::from_secs(3)).await;
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "{protocol}: closed {:?} after the revocation",
            t0.elapsed()
        );
    }
    s.stop().await;
}

const ADD: &str = "mutation($i: AddMemberInput!) { addMember(input: $i) { subject version } }";
const REMOVE: &str = "mutation($i: RemoveMemberInput!) { removeMember(input: $i) { subject } }";
const LIFECYCLE: &str = "subscription($t: ID!) { tenantLifecycle(tenantId: $t) { step status } }";

#[tokio::test]
async fn removing_a_member_closes_the_subscription_it_relied_on() {
    let s = Stack::start(Backend::Sqlite).await;
    let created = s
        .gql(&s.admin(), CREATE, json!({ "input": { "idempotencyKey": "ws-members",
            "slug": "ws-members", "name": "M", "region": "us-east-1", "plan": "pro", "owner": "olive" } }))
        .await;
    let tenant = created["data"]["createTenant"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    // Members hold no role in their tokens: the membership is their authority.
    let olive = s.token("olive", &[], &[], None);
    let add = s
        .gql(
            &olive,
            ADD,
            json!({ "i": { "tenantId": tenant, "subject": "vic",
            "role": "viewer", "idempotencyKey": "add-vic" } }),
        )
        .await;
    let version = add["data"]["addMember"]["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("{add}"));
    let vic = s.token("vic", &[], &[], None);
    let mut socks = Vec::new();
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let mut ws = acked(&s.url(), protocol, &vic).await;
        let kind = if protocol == LEGACY_WS {
            "start"
        } else {
            "subscribe"
        };
        ws.send(Message::text(
            json!({ "type": kind, "id": "1", "payload": { "query": LIFECYCLE, "variables": { "t": tenant } } })
                .to_string(),
        ))
        .await
        .unwrap();
        // The recorded steps arrive: the membership is what let vic in.
        match next(&mut ws, Duration::from_secs(5)).await {
            Next::Json(v) => assert!(
                v["payload"]["data"]["tenantLifecycle"]["step"].is_string(),
                "{protocol}: {v}"
            ),
            other => panic!("{protocol}: {other:?}"),
        }
        socks.push((protocol, ws));
    }
    // The owner's own connection, which relies on nothing vic loses, stays.
    let mut owner = acked(&s.url(), TRANSPORT_WS, &olive).await;
    let gone = s
        .gql(
            &olive,
            REMOVE,
            json!({ "i": { "tenantId": tenant, "subject": "vic", "expectedVersion": version } }),
        )
        .await;
    assert_eq!(gone["data"]["removeMember"]["subject"], "vic", "{gone}");
    for (protocol, mut ws) in socks {
        expect_forbidden_close(&mut ws, protocol, Duration::from_secs(2)).await;
    }
    let quiet = tokio::time::timeout(Duration::from_millis(500), owner.next()).await;
    assert!(
        quiet.is_err(),
        "the owner's connection ended too: {quiet:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn errors_never_echo_a_large_query() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    let filler = "a".repeat(250_000);
    let (status, body) = s
        .gql_at(&s.url(), Some(&admin), &format!("{{ {filler} ]"), json!({}))
        .await;
    let text = body.to_string();
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{status}");
    assert!(text.len() < 1024, "a {} byte error", text.len());
    assert!(!text.contains("aaaaaaaa"), "{text}");
    assert!(message(&body).contains("line 1"), "{text}");
    // An argument far too long for its type is not echoed whole either.
    let (_, body) = s
        .gql_at(
            &s.url(),
            Some(&admin),
            "query($id: ID!) { tenant(id: $id) { id } }",
            json!({ "id": filler }),
        )
        .await;
    let text = body.to_string();
    assert_eq!(
        code(&body),
        Some("BAD_USER_INPUT"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(text.len() < 2048, "a {} byte error", text.len());
    s.stop().await;
}

#[tokio::test]
async fn concurrent_quota_changes_on_sqlite_conflict_rather_than_fail() {
    let s = Stack::start(Backend::Sqlite).await;
    e2e::quota::define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    e2e::quota::wait_synced(&s, &["api.calls"]).await;
    let t = s.create_tenant("busy-quota", "us-east-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let admin = s.admin();
    let calls = (0..8).map(|i| {
        let (s, admin, id) = (&s, &admin, &id);
        async move {
            s.gql(
                admin,
                e2e::quota::SET,
                json!({ "i": { "tenantId": id, "metric": "api.calls",
                "limit": 10 + i, "period": "DAY", "enforcement": "HARD", "expectedVersion": 0,
                "idempotencyKey": format!("race-{i}") } }),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|a| a.get("errors").is_none()).count();
    let conflicts = answers
        .iter()
        .filter(|a| code(a) == Some("CONFLICT"))
        .count();
    assert_eq!((ok, conflicts), (1, 7), "{answers:#?}");
    s.stop().await;
}

#[tokio::test]
async fn break_glass_requests_of_others_are_not_found() {
    let s = Stack::start(Backend::Sqlite).await;
    let t = s.create_tenant("glass-oracle", "us-east-1").await;
    let tenant: TenantId = t["id"].as_str().unwrap().parse().unwrap();
    let id = approved_request(&s, &tenant.to_string(), "bg-oracle").await;
    // Someone else, even an admin of the tenant, is told what a random id gets.
    let outsider = s.token("mallory", &[Role::TenantAdmin], &[tenant], None);
    let random = uuid::Uuid::now_v7().to_string();
    for mutation in [ACTIVATE_BG, REVOKE_BG] {
        let theirs = s.gql(&outsider, mutation, json!({ "id": id })).await;
        let unknown = s.gql(&outsider, mutation, json!({ "id": random })).await;
        assert_eq!(code(&theirs), Some("NOT_FOUND"), "{theirs}");
        assert_eq!(code(&unknown), Some("NOT_FOUND"), "{unknown}");
        assert_eq!(
            message(&theirs).replace(&id, "ID"),
            message(&unknown).replace(&random, "ID")
        );
    }
    // The request is untouched: its requester still activates it.
    let alice = s.token("alice", &[Role::Sre], &[], None);
    let a = s.gql(&alice, ACTIVATE_BG, json!({ "id": id })).await;
    assert!(a["data"]["activateBreakGlass"]["token"].is_string(), "{a}");
    s.stop().await;
}

/// `tcp_tenant_requests_total` series of a scrape, by tenant label.
fn tenant_series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("tcp_tenant_requests_total{"))
        .filter_map(|l| l.split("tenant=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The requests counted under `tenant` in a scrape.
fn tenant_requests(text: &str, tenant: &str) -> u64 {
    let label = format!("tenant=\"{tenant}\"");
    text.lines()
        .filter(|l| l.starts_with("tcp_tenant_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn metrics_need_a_token_or_the_scrapers_listener() {
    let mut o = Options::new(Backend::Sqlite);
    o.limits.metrics_port = Some(0);
    let s = Stack::start_with(o).await;
    let t = s.create_tenant("metered", "us-east-1").await;
    let tenant: TenantId = t["id"].as_str().unwrap().parse().unwrap();
    let viewer = s.token("v", &[Role::TenantViewer], &[tenant], None);
    let cell = s.cell("us-east-1-a");
    for (base, scraper) in [
        (s.url(), s.global.metrics_url()),
        (cell.url(), cell.metrics_url()),
    ] {
        let url = format!("{base}/metrics");
        let none = s.http.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{url}");
        let body: Value = none.json().await.unwrap();
        assert_eq!(code(&body), Some("UNAUTHENTICATED"));
        let as_viewer = s.http.get(&url).bearer_auth(&viewer).send().await.unwrap();
        assert_eq!(as_viewer.status(), 403, "{url}");
        let sre = s
            .http
            .get(&url)
            .bearer_auth(metrics_token())
            .send()
            .await
            .unwrap();
        assert_eq!(sre.status(), 200, "{url}");
        assert!(
            sre.text()
                .await
                .unwrap()
                .contains("tcp_http_requests_total")
        );
        let scraper = scraper.expect("a metrics listener");
        assert_ne!(scraper, url);
        let open = s.http.get(&scraper).send().await.unwrap();
        assert_eq!(open.status(), 200, "{scraper}");
        assert!(
            open.text()
                .await
                .unwrap()
                .contains("tcp_http_requests_total")
        );
    }

    // A viewer naming 150 random ids (and another tenant's) makes no series
    // and counts nothing under the other tenant's name.
    let other = s.create_tenant("not-yours", "us-east-1").await;
    let other = other["id"].as_str().unwrap().to_owned();
    let before = e2e::stack::scrape(&s.url()).await;
    let read = "query($id: ID!) { tenant(id: $id) { id } }";
    for _ in 0..150 {
        let b = s.gql(&viewer, read, json!({ "id": TenantId::new() })).await;
        assert_eq!(code(&b), Some("NOT_FOUND"), "{b}");
    }
    let b = s.gql(&viewer, read, json!({ "id": other })).await;
    assert_eq!(code(&b), Some("NOT_FOUND"), "{b}");
    // Its own tenant is counted by name.
    let own = s.gql(&viewer, read, json!({ "id": tenant })).await;
    assert!(own.get("errors").is_none(), "{own}");
    let after = e2e::stack::scrape(&s.url()).await;
    let named = |text: &str| {
        let mut s = tenant_series(text);
        s.remove("other");
        s
    };
    assert_eq!(
        named(&after),
        named(&before),
        "the viewer's requests made new series"
    );
    assert_eq!(
        tenant_requests(&after, &other),
        tenant_requests(&before, &other),
        "the viewer's refused reads were counted under another tenant's id"
    );
    assert_eq!(
        tenant_requests(&after, &tenant.to_string()),
        tenant_requests(&before, &tenant.to_string()) + 1
    );
    assert!(tenant_requests(&after, "other") >= tenant_requests(&before, "other") + 151);
    s.stop().await;
}

#[tokio::test]
async fn a_runaway_caller_is_rate_limited_while_another_is_served() {
    let mut o = Options::new(Backend::Sqlite);
    o.limits.rate_limit_per_sec = 5;
    o.limits.rate_limit_burst = 10;
    let s = Stack::start_with(o).await;
    let greedy = s.token("greedy", &[Role::Sre], &[], None);
    let calm = s.token("calm", &[Role::Sre], &[], None);
    let service = s.token("global", &[Role::Service], &[], None);
    let cell = s.cell("us-east-1-a").url();
    for base in [s.url(), cell.clone()] {
        let mut limited = None;
        for _ in 0..40 {
            let resp = s
                .http
                .post(format!("{base}/graphql"))
                .bearer_auth(&greedy)
                .json(&json!({ "query": "{ __typename }" }))
                .send()
                .await
                .unwrap();
            if resp.status() == 429 {
                let retry_after = resp.headers()["retry-after"].to_str().unwrap().to_owned();
                limited = Some((retry_after, resp.json::<Value>().await.unwrap()));
                break;
            }
            assert_eq!(resp.status(), 200);
        }
        let (retry_after, body) = limited.expect("the runaway caller was never limited");
        assert_eq!(code(&body), Some("RATE_LIMITED"), "{body}");
        let ms = body["errors"][0]["extensions"]["retryAfterMs"]
            .as_u64()
            .unwrap_or_else(|| panic!("{body}"));
        assert!((1..=1000).contains(&ms), "retry after {ms} ms at 5/s");
        assert!(retry_after.parse::<u64>().unwrap() >= 1);
        // Another caller is served meanwhile; service identities are exempt.
        let (status, body) = s
            .gql_at(&base, Some(&calm), "{ __typename }", json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        for _ in 0..30 {
            let (status, body) = s
                .gql_at(&base, Some(&service), "{ __typename }", json!({}))
                .await;
            assert_eq!(status, 200, "{body}");
        }
        // The limited caller is served again once its rate allows.
        tokio::time::sleep(Duration::from_millis(ms + 50)).await;
        let (status, body) = s
            .gql_at(&base, Some(&greedy), "{ __typename }", json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    s.stop().await;
}
