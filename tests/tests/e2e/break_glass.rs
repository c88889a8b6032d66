//! Break-glass access: request, approval by someone else, a token scoped to
//! one tenant that never outlives the grant, revocation that reaches the
//! cells within a second, and the audit trail of what was done with it.

use std::time::{Duration, Instant};

use e2e::stack::{Options, code, message};
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::auth::Role;
use shared::ids::TenantId;

const REQUEST: &str = "mutation($i: RequestBreakGlassInput!) { requestBreakGlass(input: $i) { id status version scope durationSeconds requester tenantId } }";
const APPROVE: &str =
    "mutation($id: ID!) { approveBreakGlass(id: $id) { id status version decidedBy expiresAt } }";
const DENY: &str =
    "mutation($id: ID!, $r: String!) { denyBreakGlass(id: $id, reason: $r) { status version } }";
const ACTIVATE: &str = "mutation($id: ID!) { activateBreakGlass(id: $id) { token expiresAt } }";
const REVOKE: &str =
    "mutation($id: ID!) { revokeBreakGlass(id: $id) { status version revokedBy } }";
const GET: &str = "query($id: ID!) { breakGlassRequest(id: $id) { status version } }";
const LIST: &str = "{ breakGlassRequests { id status } }";
const ACTIVITY: &str = "query($id: ID!) { breakGlassActivity(id: $id) { nodes { action source actor breakGlassId tenantId } } }";

fn input(tenant: &str, key: &str, scope: &str, secs: i64) -> Value {
    json!({ "i": { "tenantId": tenant, "reason": "SEV1: data fix", "scope": scope,
                   "durationSeconds": secs, "idempotencyKey": key } })
}

struct People {
    alice: String,
    bob: String,
}

fn people(s: &Stack) -> People {
    People {
        alice: s.token("alice", &[Role::Sre], &[], None),
        bob: s.token("bob", &[Role::Sre], &[], None),
    }
}

/// Requests (alice), approves (bob) and activates (alice): the token.
async fn granted(
    s: &Stack,
    pp: &People,
    tenant: &str,
    key: &str,
    scope: &str,
    secs: i64,
) -> (String, String) {
    let r = s
        .gql(&pp.alice, REQUEST, input(tenant, key, scope, secs))
        .await;
    let id = r["data"]["requestBreakGlass"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let a = s.gql(&pp.bob, APPROVE, json!({ "id": id })).await;
    assert_eq!(a["data"]["approveBreakGlass"]["status"], "APPROVED", "{a}");
    let t = s.gql(&pp.alice, ACTIVATE, json!({ "id": id })).await;
    let token = t["data"]["activateBreakGlass"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_owned();
    (id, token)
}

#[tokio::test]
async fn break_glass_is_approved_by_someone_else_and_scoped_to_one_tenant() {
    let s = Stack::start(Backend::Postgres).await;
    let pp = people(&s);
    let t = s.create_tenant("glass", "eu-west-1").await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let other = s.create_tenant("other", "eu-west-1").await;
    let other = other["id"].as_str().unwrap().to_owned();

    let r = s
        .gql(&pp.alice, REQUEST, input(&tenant, "bg-1", "WRITE", 600))
        .await;
    let req = &r["data"]["requestBreakGlass"];
    assert_eq!(req["status"], "PENDING", "{r}");
    assert_eq!(req["version"], 1);
    assert_eq!(req["requester"], "alice");
    let id = req["id"].as_str().unwrap().to_owned();
    // The same key again is the same request.
    let again = s
        .gql(&pp.alice, REQUEST, input(&tenant, "bg-1", "WRITE", 600))
        .await;
    assert_eq!(
        again["data"]["requestBreakGlass"]["id"],
        id.as_str(),
        "{again}"
    );

    // Self-approval is refused; so is a tenant admin's approval, and
    // activation before approval.
    let own = s.gql(&pp.alice, APPROVE, json!({ "id": id })).await;
    assert_eq!(code(&own), Some("FORBIDDEN"), "{own}");
    let tid: TenantId = tenant.parse().unwrap();
    let tadmin = s.token("carol", &[Role::TenantAdmin], &[tid], None);
    assert_eq!(
        code(&s.gql(&tadmin, APPROVE, json!({ "id": id })).await),
        Some("FORBIDDEN")
    );
    assert_eq!(
        code(&s.gql(&pp.alice, ACTIVATE, json!({ "id": id })).await),
        Some("CONFLICT")
    );
    let still = s.gql(&pp.bob, GET, json!({ "id": id })).await;
    assert_eq!(still["data"]["breakGlassRequest"]["status"], "PENDING");
    assert_eq!(still["data"]["breakGlassRequest"]["version"], 1);

    let before = chrono::Utc::now();
    let a = s.gql(&pp.bob, APPROVE, json!({ "id": id })).await;
    let a = &a["data"]["approveBreakGlass"];
    assert_eq!(a["status"], "APPROVED");
    assert_eq!(a["decidedBy"], "bob");
    assert_eq!(a["version"], 2);
    let window: chrono::DateTime<chrono::Utc> = a["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!(window <= chrono::Utc::now() + chrono::Duration::seconds(600));
    assert!(window >= before + chrono::Duration::seconds(599));

    // Only the requester activates.
    assert_eq!(
        code(&s.gql(&pp.bob, ACTIVATE, json!({ "id": id })).await),
        Some("FORBIDDEN")
    );
    let act = s.gql(&pp.alice, ACTIVATE, json!({ "id": id })).await;
    let token = act["data"]["activateBreakGlass"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let exp: chrono::DateTime<chrono::Utc> = act["data"]["activateBreakGlass"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        exp <= window,
        "the token outlives the grant: {exp} > {window}"
    );
    let p = s.keys.verify(&token).unwrap();
    assert_eq!(p.break_glass.map(|b| b.to_string()), Some(id.clone()));
    assert_eq!(p.roles, vec![Role::TenantAdmin]);
    assert_eq!(p.tenants, vec![tid]);

    // The token writes to its tenant (routed to the cell) and sees no other.
    let proj = s
        .gql(
            &token,
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }",
            json!({ "i": { "tenantId": tenant, "name": "hotfix", "idempotencyKey": "hotfix-1" } }),
        )
        .await;
    assert!(proj.get("errors").is_none(), "{proj}");
    let q = "query($id: ID!) { tenant(id: $id) { id } }";
    assert_eq!(
        code(&s.gql(&token, q, json!({ "id": other })).await),
        Some("NOT_FOUND")
    );
    // A break-glass token does not approve anything.
    assert_eq!(
        code(&s.gql(&token, APPROVE, json!({ "id": id })).await),
        Some("FORBIDDEN")
    );

    // What was done with it, on both tiers: the global tier's entry at once,
    // the cell's once it has shipped.
    let deadline = Instant::now() + Duration::from_secs(15);
    let acts = loop {
        let a = s.gql(&pp.bob, ACTIVITY, json!({ "id": id })).await;
        let nodes = a["data"]["breakGlassActivity"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{a}"))
            .clone();
        let cell = nodes.iter().any(|n| n["source"] == "eu-west-1-a");
        if cell {
            break nodes;
        }
        assert!(
            Instant::now() < deadline,
            "the cell's entry never arrived: {a}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(acts.iter().all(|n| n["breakGlassId"] == id.as_str()));
    assert!(acts.iter().any(|n| n["source"] == "global"
        && n["action"] == "createProject"
        && n["actor"] == "alice"));
    assert!(
        acts.iter()
            .any(|n| n["source"] == "eu-west-1-a" && n["action"] == "createProject")
    );
    assert!(acts.iter().any(|n| n["action"] == "approveBreakGlass"));

    // Revoked: refused at once by the global tier.
    let rv = s.gql(&pp.bob, REVOKE, json!({ "id": id })).await;
    assert_eq!(rv["data"]["revokeBreakGlass"]["status"], "REVOKED", "{rv}");
    let (status, body) = s
        .gql_at(&s.url(), Some(&token), q, json!({ "id": tenant }))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body), Some("UNAUTHENTICATED"));

    // Approving a revoked request is refused with a clear message.
    let late = s.gql(&pp.bob, APPROVE, json!({ "id": id })).await;
    assert_eq!(code(&late), Some("CONFLICT"));
    assert!(message(&late).contains("revoked"), "{late}");
    s.stop().await;
}

#[tokio::test]
async fn bad_break_glass_input_is_refused_and_changes_nothing() {
    let mut o = Options::new(Backend::Sqlite);
    o.ops.break_glass_request_expiry = Duration::from_secs(1);
    let s = Stack::start_with(o).await;
    let pp = people(&s);
    let t = s.create_tenant("glassy", "us-east-1").await;
    let tenant = t["id"].as_str().unwrap().to_owned();

    let over = s
        .gql(
            &pp.alice,
            REQUEST,
            input(&tenant, "k1", "READ", 4 * 3600 + 1),
        )
        .await;
    assert_eq!(code(&over), Some("BAD_USER_INPUT"), "{over}");
    assert_eq!(
        over["errors"][0]["extensions"]["field"],
        "input.durationSeconds"
    );
    assert!(message(&over).contains("14400"), "{over}");
    for secs in [0, -5] {
        let r = s
            .gql(&pp.alice, REQUEST, input(&tenant, "k2", "READ", secs))
            .await;
        assert_eq!(code(&r), Some("BAD_USER_INPUT"), "{r}");
    }
    let unknown = TenantId::new().to_string();
    let r = s
        .gql(&pp.alice, REQUEST, input(&unknown, "k3", "READ", 60))
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let r = s
        .gql(&pp.alice, REQUEST, input("not-an-id", "k4", "READ", 60))
        .await;
    assert_eq!(code(&r), Some("BAD_USER_INPUT"), "{r}");
    // Tenant roles do not ask for break-glass access.
    let tid: TenantId = tenant.parse().unwrap();
    let tadmin = s.token("carol", &[Role::TenantAdmin], &[tid], None);
    let r = s
        .gql(&tadmin, REQUEST, input(&tenant, "k5", "READ", 60))
        .await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    assert_eq!(
        code(&s.gql(&tadmin, LIST, json!({})).await),
        Some("FORBIDDEN")
    );
    // Nothing was made.
    let list = s.gql(&pp.bob, LIST, json!({})).await;
    assert_eq!(list["data"]["breakGlassRequests"], json!([]), "{list}");
    // The refusals are audited.
    let log = s
        .gql(
            &pp.bob,
            "{ auditLog(filter: {action: \"requestBreakGlass\"}) { nodes { outcome } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        log["data"]["auditLog"]["nodes"].as_array().unwrap().len(),
        6,
        "{log}"
    );

    // A denied request cannot be approved.
    let r = s
        .gql(&pp.alice, REQUEST, input(&tenant, "d1", "READ", 60))
        .await;
    let denied = r["data"]["requestBreakGlass"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = s
        .gql(&pp.bob, DENY, json!({ "id": denied, "r": "not now" }))
        .await;
    assert_eq!(d["data"]["denyBreakGlass"]["status"], "DENIED", "{d}");
    let a = s.gql(&pp.bob, APPROVE, json!({ "id": denied })).await;
    assert_eq!(code(&a), Some("CONFLICT"));
    assert!(message(&a).contains("denied"), "{a}");

    // An unapproved request expires (after 1 s here) and cannot be approved.
    let r = s
        .gql(&pp.alice, REQUEST, input(&tenant, "e1", "READ", 60))
        .await;
    let stale = r["data"]["requestBreakGlass"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = s.gql(&pp.bob, GET, json!({ "id": stale })).await;
        if g["data"]["breakGlassRequest"]["status"] == "EXPIRED" {
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {g}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let a = s.gql(&pp.bob, APPROVE, json!({ "id": stale })).await;
    assert_eq!(code(&a), Some("CONFLICT"));
    assert!(message(&a).contains("expired"), "{a}");
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        code(&s.gql(&pp.bob, APPROVE, json!({ "id": unknown })).await),
        Some("NOT_FOUND")
    );
    s.stop().await;
}

/// A READ token against the cell's own API: 200 with data, or refused.
async fn cell_reads(s: &Stack, cell: &str, token: &str, tenant: &str) -> (u16, Value) {
    let (status, body) = s
        .gql_at(
            cell,
            Some(token),
            "query($id: ID!) { tenant(id: $id) { id } }",
            json!({ "id": tenant }),
        )
        .await;
    (status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_is_refused_by_the_cell_within_a_second() {
    let s = Stack::start(Backend::Postgres).await;
    let pp = people(&s);
    let t = s.create_tenant("revoked", "us-east-1").await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (id, token) = granted(&s, &pp, &tenant, "r1", "WRITE", 600).await;
    let cell = s.cell("us-east-1-a").url();

    let (status, body) = cell_reads(&s, &cell, &token, &tenant).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["tenant"]["id"], tenant.as_str(), "{body}");
    let hook = |tok: String| {
        let http = s.http.clone();
        let url = format!("{cell}/v1/quota/check");
        let tenant = tenant.clone();
        async move {
            http.post(url)
                .bearer_auth(tok)
                .json(&json!({ "tenantId": tenant, "metric": "no.such.metric", "amount": 1 }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_ne!(hook(token.clone()).await, 401);

    let rv = s.gql(&pp.alice, REVOKE, json!({ "id": id })).await;
    assert_eq!(rv["data"]["revokeBreakGlass"]["status"], "REVOKED", "{rv}");
    let revoked_at = Instant::now();
    // The propagation path's bound: the cell refuses within a second.
    let deadline = revoked_at + Duration::from_secs(1);
    loop {
        let (status, body) = cell_reads(&s, &cell, &token, &tenant).await;
        if status == 401 {
            assert_eq!(code(&body), Some("UNAUTHENTICATED"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cell still accepts the revoked token after {:?}: {body}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hook(token.clone()).await, 401);

    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cell_started_after_a_revocation_refuses_the_token_from_its_first_request() {
    let mut s = Stack::start(Backend::Postgres).await;
    let pp = people(&s);
    let t = s.create_tenant("restarted", "us-east-1").await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (id, revoked) = granted(&s, &pp, &tenant, "rs1", "READ", 600).await;
    let (_, kept) = granted(&s, &pp, &tenant, "rs2", "READ", 600).await;
    let (status, body) = cell_reads(&s, &s.cell("us-east-1-a").url(), &revoked, &tenant).await;
    assert_eq!(status, 200, "{body}");

    // The cell is down while the grant is revoked.
    let at = s
        .cells
        .iter()
        .position(|c| c.state.cell_id.as_str() == "us-east-1-a")
        .unwrap();
    s.cells.remove(at).stop().await;
    let rv = s.gql(&pp.alice, REVOKE, json!({ "id": id })).await;
    assert_eq!(rv["data"]["revokeBreakGlass"]["status"], "REVOKED", "{rv}");

    // It comes back on its own database, but on a Redis prefix of its own:
    // its break-glass stream is empty, so only the list it loads from the
    // global tier at start can tell it about the revocation.
    let spec = s
        .options
        .cells
        .iter()
        .find(|c| c.id == "us-east-1-a")
        .unwrap()
        .clone();
    let cell = e2e::stack::start_cell(
        &spec,
        s.cell_database_urls["us-east-1-a"].clone(),
        &s.url(),
        &s.keys,
        &s.options,
        &e2e::backing::redis_prefix().await,
        None,
    )
    .await;
    let url = cell.url();
    s.cells.push(cell);
    // Its very first request with the revoked token is refused...
    let (status, body) = cell_reads(&s, &url, &revoked, &tenant).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body), Some("UNAUTHENTICATED"), "{body}");
    // (The client is told nothing of why: the reason is in the log.)
    assert_eq!(message(&body), shared::auth::REFUSED, "{body}");
    // ...while a live grant's token works: the list was loaded, not guessed.
    let (status, body) = cell_reads(&s, &url, &kept, &tenant).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["tenant"]["id"], tenant.as_str(), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn an_expired_break_glass_token_is_refused() {
    let s = Stack::start(Backend::Sqlite).await;
    let pp = people(&s);
    let t = s.create_tenant("brief", "us-east-1").await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (id, token) = granted(&s, &pp, &tenant, "x1", "READ", 2).await;
    let cell = s.cell("us-east-1-a").url();
    let (status, body) = cell_reads(&s, &cell, &token, &tenant).await;
    assert_eq!(status, 200, "{body}");
    // A READ token does not write.
    let w = s
        .gql(
            &token,
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }",
            json!({ "i": { "tenantId": tenant, "name": "nope", "idempotencyKey": "nope-1" } }),
        )
        .await;
    assert_eq!(code(&w), Some("FORBIDDEN"), "{w}");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, body) = cell_reads(&s, &cell, &token, &tenant).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = s
        .gql_at(
            &s.url(),
            Some(&token),
            "query($id: ID!) { tenant(id: $id) { id } }",
            json!({ "id": tenant }),
        )
        .await;
    assert_eq!(status, 401);
    // The grant itself expires, and activating it again is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = s.gql(&pp.bob, GET, json!({ "id": id })).await;
        if g["data"]["breakGlassRequest"]["status"] == "EXPIRED" {
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {g}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        code(&s.gql(&pp.alice, ACTIVATE, json!({ "id": id })).await),
        Some("CONFLICT")
    );
    s.stop().await;
}
