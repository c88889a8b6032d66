//! Every change, and every refused attempt at one, is audited with its actor.

use e2e::stack::{CREATE, code};
use e2e::{Backend, Stack};
use serde_json::json;
use shared::auth::Role;
use shared::ids::TenantId;

const LOG: &str = "query($f: AuditFilter) { auditLog(filter: $f) { nodes { actor roles action tenantId target outcome requestId detail source seq } } }";

#[tokio::test]
async fn mutations_are_audited_on_both_tiers() {
    let s = Stack::start(Backend::Postgres).await;
    let t = s.create_tenant("audited", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let viewer = s.token(
        "nosy",
        &[Role::TenantViewer],
        &[id.parse::<TenantId>().unwrap()],
        None,
    );
    let refused = s
        .gql(&viewer, CREATE, json!({ "input": { "idempotencyKey": "x", "slug": "sneaky", "name": "S", "region": "eu-west-1", "plan": "free" } }))
        .await;
    assert_eq!(code(&refused), Some("FORBIDDEN"));

    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let log = s
        .gql(
            &sre,
            LOG,
            json!({ "f": { "action": "createTenant", "source": "global" } }),
        )
        .await;
    let entries = log["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{log}"))
        .clone();
    assert_eq!(entries.len(), 2, "{log}");
    // Newest first.
    assert_eq!(entries[0]["actor"], "nosy");
    assert_eq!(entries[0]["outcome"], "REFUSED");
    assert!(entries[0]["detail"].as_str().unwrap().contains("FORBIDDEN"));
    assert_eq!(entries[1]["actor"], "admin");
    assert_eq!(entries[1]["roles"], json!(["platform-admin"]));
    assert_eq!(entries[1]["outcome"], "OK");
    assert_eq!(entries[1]["tenantId"], id);
    assert!(
        entries[1]["requestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    let by_tenant = s
        .gql(
            &sre,
            LOG,
            json!({ "f": { "tenantId": id, "source": "global" } }),
        )
        .await;
    assert_eq!(
        by_tenant["data"]["auditLog"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let regs = s
        .gql(&sre, LOG, json!({ "f": { "action": "registerCell" } }))
        .await;
    let regs = regs["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(regs.len(), 2);
    assert!(
        regs.iter()
            .any(|r| r["actor"] == "cell:us-east-1-a" && r["target"] == "us-east-1-a")
    );

    // A tenant principal sees its own tenant's entries only.
    let own = s.gql(&viewer, LOG, json!({})).await;
    let own = own["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{own}"))
        .clone();
    assert!(!own.is_empty());
    assert!(own.iter().all(|e| e["tenantId"] == id.as_str()));

    // The cell keeps its own audit of what the global tier asked of it.
    let cell_log = shared::audit::list(&s.cell("eu-west-1-a").state.db, &Default::default(), 10)
        .await
        .unwrap();
    // Newest first: the saga's create step, then its allocate step.
    assert_eq!(cell_log.len(), 2);
    assert_eq!(cell_log[1].actor, "global");
    assert_eq!(cell_log[1].action, "createTenant");
    assert_eq!(
        cell_log[1].tenant_id.map(|t| t.to_string()),
        Some(id.clone())
    );
    assert_eq!(cell_log[0].actor, "global");
    assert_eq!(cell_log[0].action, "allocateTenantResources");
    assert_eq!(cell_log[0].tenant_id.map(|t| t.to_string()), Some(id));
    s.stop().await;
}

const VERIFY: &str = "query($from: Int, $to: Int, $cell: String) { verifyAuditChain(from: $from, to: $to, cellId: $cell) { valid checked firstBroken { id seq reason } } }";
const VERIFY_CELL: &str = "{ verifyAuditChain { valid checked firstBroken { id seq reason } } }";

async fn exec(db: &sea_orm::DatabaseConnection, sql: &str) {
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Makes a few audit entries: refused createTenant attempts.
async fn refusals(s: &Stack, n: usize) {
    let viewer = s.token("nosy", &[Role::TenantViewer], &[], None);
    for i in 0..n {
        let r = s
            .gql(&viewer, CREATE, json!({ "input": { "idempotencyKey": format!("x{i}"), "slug": format!("s{i}"), "name": "S", "region": "eu-west-1", "plan": "free" } }))
            .await;
        assert_eq!(code(&r), Some("FORBIDDEN"));
    }
}

#[tokio::test]
async fn the_chain_check_finds_an_altered_and_a_removed_entry() {
    let s = Stack::start(Backend::Postgres).await;
    refusals(&s, 4).await;
    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let ok = s.gql(&sre, VERIFY, json!({})).await;
    let v = &ok["data"]["verifyAuditChain"];
    assert_eq!(v["valid"], true, "{ok}");
    // Two registerCell entries and four refusals at least.
    assert!(v["checked"].as_u64().unwrap() >= 6, "{ok}");
    assert!(v["firstBroken"].is_null());

    let db = &s.global.state.db;
    // Alter one field of entry 3 directly in the database.
    exec(
        db,
        "UPDATE audit_log SET actor = 'someone-else' WHERE source = '' AND seq = 3",
    )
    .await;
    let bad = s.gql(&sre, VERIFY, json!({})).await;
    let v = &bad["data"]["verifyAuditChain"];
    assert_eq!(v["valid"], false, "{bad}");
    assert_eq!(v["firstBroken"]["seq"], 3, "{bad}");
    assert_eq!(v["checked"], 2, "{bad}");
    assert!(
        v["firstBroken"]["reason"]
            .as_str()
            .unwrap()
            .contains("altered")
    );
    let id3 = v["firstBroken"]["id"].as_str().unwrap().to_owned();
    // A range that stops before it is still whole.
    let before = s.gql(&sre, VERIFY, json!({ "from": 1, "to": 2 })).await;
    assert_eq!(
        before["data"]["verifyAuditChain"]["valid"], true,
        "{before}"
    );

    // Put it back: whole again.
    exec(
        db,
        "UPDATE audit_log SET actor = 'nosy' WHERE source = '' AND seq = 3",
    )
    .await;
    let fixed = s.gql(&sre, VERIFY, json!({})).await;
    assert_eq!(fixed["data"]["verifyAuditChain"]["valid"], true, "{fixed}");

    // Remove a middle entry: the link after it is broken.
    exec(db, &format!("DELETE FROM audit_log WHERE id = '{id3}'")).await;
    let gap = s.gql(&sre, VERIFY, json!({})).await;
    let v = &gap["data"]["verifyAuditChain"];
    assert_eq!(v["valid"], false, "{gap}");
    assert_eq!(v["firstBroken"]["seq"], 4, "{gap}");
    assert!(
        v["firstBroken"]["reason"]
            .as_str()
            .unwrap()
            .contains("entry 3 is missing")
    );

    // Removing the newest entry is noticed too: the head remembers it.
    exec(db, "DELETE FROM audit_log WHERE source = '' AND seq = (SELECT MAX(seq) FROM audit_log WHERE source = '')").await;
    let tail = s.gql(&sre, VERIFY, json!({ "from": 5 })).await;
    let v = &tail["data"]["verifyAuditChain"];
    assert_eq!(v["valid"], false, "{tail}");
    assert!(v["firstBroken"]["id"].is_null(), "{tail}");

    // Tenant principals may not run the check.
    let viewer = s.token("nosy", &[Role::TenantViewer], &[], None);
    assert_eq!(
        code(&s.gql(&viewer, VERIFY, json!({})).await),
        Some("FORBIDDEN")
    );
    s.stop().await;
}

/// Polls the global audit log until `pred` holds for the entries of `f`.
async fn wait_for(
    s: &Stack,
    token: &str,
    f: serde_json::Value,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let log = s.gql(token, LOG, json!({ "f": f })).await;
        let nodes = log["data"]["auditLog"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{log}"))
            .clone();
        if pred(&nodes) {
            return nodes;
        }
        assert!(std::time::Instant::now() < deadline, "never held: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cells_keep_their_own_chain_and_ship_it_to_the_global_tier() {
    let s = Stack::start(Backend::Postgres).await;
    let t = s.create_tenant("shipped", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let sre = s.token("oncall", &[Role::Sre], &[], None);

    // The cell's entries reach the global log with their cell as source.
    let shipped = wait_for(&s, &sre, json!({ "source": "eu-west-1-a" }), |n| {
        n.len() >= 2
    })
    .await;
    assert_eq!(shipped[0]["action"], "allocateTenantResources");
    assert_eq!(shipped[0]["seq"], 2);
    assert_eq!(shipped[1]["action"], "createTenant");
    assert_eq!(shipped[1]["seq"], 1);
    assert_eq!(shipped[1]["tenantId"], id.as_str());
    // Both tiers in one log, newest first.
    let both = s.gql(&sre, LOG, json!({ "f": { "tenantId": id } })).await;
    let sources: std::collections::BTreeSet<String> = both["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec!["eu-west-1-a".to_owned(), "global".to_owned()],
        "{both}"
    );
    // The shipped copy verifies, as does the cell's own chain on its API.
    let copy = s.gql(&sre, VERIFY, json!({ "cell": "eu-west-1-a" })).await;
    assert_eq!(copy["data"]["verifyAuditChain"]["valid"], true, "{copy}");
    assert_eq!(copy["data"]["verifyAuditChain"]["checked"], 2, "{copy}");
    let cell = s.cell("eu-west-1-a");
    let (_, own) = s
        .gql_at(&cell.url(), Some(&sre), VERIFY_CELL, json!({}))
        .await;
    assert_eq!(own["data"]["verifyAuditChain"]["valid"], true, "{own}");

    // An entry altered in the cell's database: the cell's check finds it,
    // and the global tier's copy still holds what was shipped.
    exec(
        &cell.state.db,
        "UPDATE audit_log SET detail = '{}' WHERE source = '' AND seq = 1",
    )
    .await;
    let (_, bad) = s
        .gql_at(&cell.url(), Some(&sre), VERIFY_CELL, json!({}))
        .await;
    let v = &bad["data"]["verifyAuditChain"];
    assert_eq!(v["valid"], false, "{bad}");
    assert_eq!(v["firstBroken"]["seq"], 1, "{bad}");
    let copy = s.gql(&sre, VERIFY, json!({ "cell": "eu-west-1-a" })).await;
    assert_eq!(copy["data"]["verifyAuditChain"]["valid"], true, "{copy}");

    // Shipping is idempotent by (cell, seq): applying the same events again stores nothing.
    let entries = shared::audit::list(&cell.state.db, &Default::default(), 10)
        .await
        .unwrap();
    let events: Vec<_> = entries
        .into_iter()
        .map(|e| {
            shared::sync::Event::new(
                shared::audit::chain::SHIP_STREAM,
                &format!("audit:eu-west-1-a:{}", e.seq),
                e.seq,
                "eu-west-1-a",
                serde_json::to_value(&e).unwrap(),
            )
        })
        .collect();
    let again = global::service::audit::apply(&s.global.state.db, &events)
        .await
        .unwrap();
    assert_eq!(again, 0);
    s.stop().await;
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_without_overlap() {
    let s = Stack::start(Backend::Sqlite).await;
    refusals(&s, 5).await;
    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let q = "query($a: String) { auditLog(first: 2, after: $a, filter: {actor: \"nosy\"}) { pageInfo { hasNextPage endCursor } nodes { id seq } } }";
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let page = s.gql(&sre, q, json!({ "a": after })).await;
        let conn = &page["data"]["auditLog"];
        for n in conn["nodes"].as_array().unwrap_or_else(|| panic!("{page}")) {
            seen.push(n["seq"].as_i64().unwrap());
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    let bad = s
        .gql(
            &sre,
            "{ auditLog(after: \"nonsense\") { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"));
    let bad = s
        .gql(&sre, "{ auditLog(first: 0) { nodes { id } } }", json!({}))
        .await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"));
    s.stop().await;
}

const DIFFS: &str = "query($f: AuditFilter) { auditLog(filter: $f) { nodes { actor action tenantId target outcome diff requestId source changedFields detailAt } } }";

/// The global tier's own entries for `action`, newest first.
async fn global_entries(s: &Stack, action: &str) -> Vec<serde_json::Value> {
    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let log = s
        .gql(
            &sre,
            DIFFS,
            json!({ "f": { "action": action, "source": "global" } }),
        )
        .await;
    log["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{log}"))
        .clone()
}

/// The one OK entry of `action` at the global tier, and its diff.
async fn one_ok(s: &Stack, action: &str) -> (serde_json::Value, serde_json::Value) {
    let entries = global_entries(s, action).await;
    let ok: Vec<_> = entries.iter().filter(|e| e["outcome"] == "OK").collect();
    assert_eq!(ok.len(), 1, "{action}: {entries:?}");
    let e = ok[0].clone();
    assert_eq!(e["actor"], "admin", "{e}");
    let diff: serde_json::Value = serde_json::from_str(
        e["diff"]
            .as_str()
            .unwrap_or_else(|| panic!("{action} has no diff: {e}")),
    )
    .unwrap();
    (e, diff)
}

/// The cell's own entry of `action` (its only one), and its diff.
async fn cell_entry(s: &Stack, action: &str) -> (shared::audit::Entry, serde_json::Value) {
    let f = shared::audit::Filter {
        action: Some(action.into()),
        ..Default::default()
    };
    let mut rows = shared::audit::list(&s.cell("eu-west-1-a").state.db, &f, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{action}: {rows:?}");
    let e = rows.remove(0);
    let diff = serde_json::from_str(e.diff.as_deref().expect("a diff")).unwrap();
    (e, diff)
}

#[tokio::test]
async fn every_kind_of_mutation_records_its_before_and_after() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let key = s
        .gql(
            &admin,
            "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
            json!({ "i": { "key": "limits.max_users", "type": "INT", "default": 10, "scopes": ["TENANT"] } }),
        )
        .await;
    assert_eq!(key["data"]["defineConfigKey"]["version"], 1, "{key}");
    let (e, diff) = one_ok(&s, "defineConfigKey").await;
    assert_eq!(e["target"], "limits.max_users");
    assert!(diff["before"].is_null(), "a create has no before: {diff}");
    assert_eq!(diff["after"]["version"], 1);
    assert_eq!(diff["after"]["def"]["default"], 10);

    let t = s.create_tenant("diffed", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let (e, diff) = one_ok(&s, "createTenant").await;
    assert_eq!(e["tenantId"], id);
    assert!(diff["before"].is_null());
    assert_eq!(diff["after"]["slug"], "diffed");

    // A cell write (routed there by the global tier): the cell's entry
    // holds the document before and after.
    let mut written = json!(null);
    for _ in 0..100 {
        written = s
            .gql(
                &admin,
                "mutation($i: UpdateTenantConfigInput!) { updateTenantConfig(input: $i) { version } }",
                json!({ "i": { "tenantId": id, "idempotencyKey": "c1", "expectedVersion": 0, "set": [{ "key": "limits.max_users", "value": 50 }] } }),
            )
            .await;
        // The registry reaches the cell through the stream: retry until it has the key.
        if written.get("errors").is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        written["data"]["updateTenantConfig"]["version"], 1,
        "{written}"
    );
    let (e, diff) = cell_entry(&s, "updateTenantConfig").await;
    assert_eq!(
        (e.actor.as_str(), e.target.as_deref()),
        ("global", Some("admin"))
    );
    assert_eq!(e.tenant_id.map(|t| t.to_string()), Some(id.clone()));
    assert_eq!(diff["before"]["version"], 0);
    assert!(diff["before"]["doc"]["tenant"]["limits.max_users"].is_null());
    assert_eq!(diff["after"]["version"], 1);
    assert_eq!(diff["after"]["doc"]["tenant"]["limits.max_users"], 50);

    let plan = s
        .gql(
            &admin,
            "mutation($i: ChangePlanInput!) { changePlan(input: $i) { plan version } }",
            json!({ "i": { "tenantId": id, "plan": "enterprise", "expectedVersion": 1, "idempotencyKey": "audit-plan" } }),
        )
        .await;
    assert_eq!(plan["data"]["changePlan"]["plan"], "enterprise", "{plan}");
    let (e, diff) = cell_entry(&s, "changePlan").await;
    assert_eq!(e.tenant_id.map(|t| t.to_string()), Some(id.clone()));
    assert_eq!(e.target.as_deref(), Some("admin"));
    assert_eq!(
        (&diff["before"]["plan"], &diff["before"]["version"]),
        (&json!("pro"), &json!(1))
    );
    assert_eq!(
        (&diff["after"]["plan"], &diff["after"]["version"]),
        (&json!("enterprise"), &json!(2))
    );
    // The global tier's own entry of the routed write has no diff (the change
    // is the cell's); the cell's entry, shipped on `cell.audit`, is served
    // beside it with the same request id.
    let routed = global_entries(&s, "changePlan").await;
    assert_eq!(routed.len(), 1, "{routed:?}");
    assert!(routed[0]["diff"].is_null());
    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let mut shipped = json!(null);
    for _ in 0..100 {
        let log = s
            .gql(
                &sre,
                DIFFS,
                json!({ "f": { "action": "changePlan", "source": "eu-west-1-a" } }),
            )
            .await;
        shipped = log["data"]["auditLog"]["nodes"][0].clone();
        if !shipped.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(shipped["requestId"], routed[0]["requestId"], "{shipped}");
    // Residency: the shipped copy names the fields changed, not their
    // values; the cell's own log serves the diff.
    assert!(shipped["diff"].is_null(), "{shipped}");
    assert_eq!(shipped["detailAt"], "eu-west-1-a", "{shipped}");
    let fields = shipped["changedFields"].as_array().expect("changed fields");
    assert!(fields.contains(&json!("plan")), "{shipped}");
    assert!(fields.contains(&json!("version")), "{shipped}");

    let member = s
        .gql(
            &admin,
            "mutation($i: AddMemberInput!) { addMember(input: $i) { subject } }",
            json!({ "i": { "tenantId": id, "subject": "carol", "role": "member", "idempotencyKey": "m1" } }),
        )
        .await;
    assert_eq!(member["data"]["addMember"]["subject"], "carol", "{member}");
    let (e, diff) = one_ok(&s, "addMember").await;
    assert_eq!(
        (&e["tenantId"], &e["target"]),
        (&json!(id), &json!("carol"))
    );
    assert!(diff["before"].is_null());
    assert_eq!(diff["after"]["role"], "member");

    let inc = s
        .gql(
            &admin,
            "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id } }",
            json!({ "i": { "title": "EU latency", "severity": "SEV2", "idempotencyKey": "inc-1",
                "scope": { "cellIds": ["eu-west-1-a"] } } }),
        )
        .await;
    let inc_id = inc["data"]["createIncident"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{inc}"))
        .to_owned();
    let update_incident =
        "mutation($i: UpdateIncidentInput!) { updateIncident(input: $i) { status } }";
    let resolve = json!({ "i": { "id": inc_id, "status": "RESOLVED", "note": "rolled back", "expectedVersion": 1, "idempotencyKey": "inc-1-r" } });
    let upd = s.gql(&admin, update_incident, resolve.clone()).await;
    assert_eq!(upd["data"]["updateIncident"]["status"], "RESOLVED", "{upd}");
    let (e, diff) = one_ok(&s, "updateIncident").await;
    assert_eq!(e["target"], inc_id);
    assert_eq!(
        (&diff["before"]["status"], &diff["after"]["status"]),
        (&json!("INVESTIGATING"), &json!("RESOLVED"))
    );
    assert_eq!(
        (&diff["before"]["version"], &diff["after"]["version"]),
        (&json!(1), &json!(2))
    );
    // A retry with the same key changes nothing: recorded OK, without a diff.
    let again = s.gql(&admin, update_incident, resolve).await;
    assert_eq!(
        again["data"]["updateIncident"]["status"], "RESOLVED",
        "{again}"
    );
    let both = global_entries(&s, "updateIncident").await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(
        (&both[0]["outcome"], &both[0]["diff"]),
        (&json!("OK"), &json!(null))
    );

    let metric = s
        .gql(
            &admin,
            "mutation($i: DefineMetricInput!) { defineMetric(input: $i) { version } }",
            json!({ "i": { "name": "audit.calls", "kind": "RATE", "unit": "call" } }),
        )
        .await;
    assert_eq!(metric["data"]["defineMetric"]["version"], 1, "{metric}");
    let (e, diff) = one_ok(&s, "defineMetric").await;
    assert_eq!(e["target"], "audit.calls");
    assert!(diff["before"].is_null());
    assert_eq!(diff["after"]["def"]["name"], "audit.calls");

    let now = chrono::Utc::now();
    let w = s
        .gql(
            &admin,
            "mutation($i: ScheduleMaintenanceInput!) { scheduleMaintenance(input: $i) { id } }",
            json!({ "i": { "scope": { "tenantIds": [id] }, "startsAt": now + chrono::Duration::hours(1),
                "endsAt": now + chrono::Duration::hours(2), "description": "disk swap",
                "freezeRollouts": false, "idempotencyKey": "w1" } }),
        )
        .await;
    let wid = w["data"]["scheduleMaintenance"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{w}"))
        .to_owned();
    let (e, diff) = one_ok(&s, "scheduleMaintenance").await;
    assert_eq!((&e["tenantId"], &e["target"]), (&json!(id), &json!(wid)));
    assert!(diff["before"].is_null());
    assert_eq!(diff["after"]["description"], "disk swap");

    let suspended = s
        .gql(
            &admin,
            "mutation($i: ChangeTenantStatusInput!) { suspendTenant(input: $i) { status } }",
            json!({ "i": { "tenantId": id, "expectedVersion": 1, "idempotencyKey": "s1" } }),
        )
        .await;
    assert_eq!(
        suspended["data"]["suspendTenant"]["status"], "SUSPENDED",
        "{suspended}"
    );
    let (e, diff) = one_ok(&s, "suspendTenant").await;
    assert_eq!(e["tenantId"], id);
    assert_eq!(
        (&diff["before"]["status"], &diff["before"]["version"]),
        (&json!("ACTIVE"), &json!(1))
    );
    assert_eq!(
        (&diff["after"]["status"], &diff["after"]["version"]),
        (&json!("SUSPENDED"), &json!(2))
    );

    // A refused change is audited too, without a diff; the accepted one
    // after it has one.
    let set_state = "mutation($c: ID!, $s: CellState!, $v: Int!, $k: String!) { setCellState(cellId: $c, state: $s, expectedVersion: $v, idempotencyKey: $k) { version } }";
    let stale = s
        .gql(
            &admin,
            set_state,
            json!({ "c": "us-east-1-a", "s": "DRAINING", "v": 7, "k": "stale" }),
        )
        .await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let drained = s
        .gql(
            &admin,
            set_state,
            json!({ "c": "us-east-1-a", "s": "DRAINING", "v": 1, "k": "drain" }),
        )
        .await;
    assert_eq!(drained["data"]["setCellState"]["version"], 2, "{drained}");
    let entries = global_entries(&s, "setCellState").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[1]["outcome"], "REFUSED");
    assert!(entries[1]["diff"].is_null());
    let (e, diff) = one_ok(&s, "setCellState").await;
    assert_eq!(e["target"], "us-east-1-a");
    assert_eq!(
        (&diff["before"]["state"], &diff["after"]["state"]),
        (&json!("ACCEPTING"), &json!("DRAINING"))
    );
    assert_eq!(diff["after"]["version"], 2);

    // Written in the changes' transactions, the chain still holds.
    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let v = s.gql(&sre, VERIFY, json!({})).await;
    assert_eq!(v["data"]["verifyAuditChain"]["valid"], true, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn cell_writes_record_the_entity_before_and_after() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    e2e::quota::define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    e2e::quota::wait_synced(&s, &["api.calls"]).await;
    let t = s.create_tenant("cellwrites", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let ok = |v: &serde_json::Value| assert!(v.get("errors").is_none(), "{v}");

    ok(&s
        .gql(
            &admin,
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }",
            json!({ "i": { "tenantId": id, "name": "web", "idempotencyKey": "p1" } }),
        )
        .await);
    let (e, diff) = cell_entry(&s, "createProject").await;
    assert_eq!(e.tenant_id.map(|t| t.to_string()), Some(id.clone()));
    assert!(diff["before"].is_null());
    assert_eq!(diff["after"]["name"], "web");
    assert_eq!(diff["after"]["version"], 1);

    ok(&s
        .gql(
            &admin,
            "mutation($i: CreateEnvironmentInput!) { createEnvironment(input: $i) { id } }",
            json!({ "i": { "tenantId": id, "projectId": "web", "name": "qa", "idempotencyKey": "e1", "expectedVersion": 1 } }),
        )
        .await);
    let (_, diff) = cell_entry(&s, "createEnvironment").await;
    let envs = |v: &serde_json::Value| -> Vec<String> {
        let mut e: Vec<String> = serde_json::from_value(v["environments"].clone()).unwrap();
        e.sort();
        e
    };
    assert_eq!(envs(&diff["before"]), ["dev", "prod", "stage"]);
    assert_eq!(envs(&diff["after"]), ["dev", "prod", "qa", "stage"]);
    assert_eq!(
        (&diff["before"]["version"], &diff["after"]["version"]),
        (&json!(1), &json!(2))
    );

    let secret = "mutation($i: SetSecretRefInput!) { setSecretRef(input: $i) { version } }";
    ok(&s
        .gql(&admin, secret, json!({ "i": { "tenantId": id, "name": "db.password", "ref": "vault://secret/data/a#password" } }))
        .await);
    // The same reference again changes nothing: no second diff.
    ok(&s
        .gql(&admin, secret, json!({ "i": { "tenantId": id, "name": "db.password", "ref": "vault://secret/data/a#password" } }))
        .await);
    ok(&s
        .gql(&admin, secret, json!({ "i": { "tenantId": id, "name": "db.password", "ref": "vault://secret/data/b#password", "expectedVersion": 1 } }))
        .await);
    let f = shared::audit::Filter {
        action: Some("setSecretRef".into()),
        ..Default::default()
    };
    let rows = shared::audit::list(&s.cell("eu-west-1-a").state.db, &f, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let diffs: Vec<Option<serde_json::Value>> = rows
        .iter()
        .map(|r| r.diff.as_deref().map(|d| serde_json::from_str(d).unwrap()))
        .collect();
    // Newest first: the change, the no-op, the create.
    let change = diffs[0].as_ref().expect("the change's diff");
    assert_eq!(
        change["before"]["reference"],
        "vault://secret/data/a#password"
    );
    assert_eq!(
        change["after"]["reference"],
        "vault://secret/data/b#password"
    );
    assert!(diffs[1].is_none(), "a no-op has no diff: {rows:?}");
    let create = diffs[2].as_ref().expect("the create's diff");
    assert!(create["before"].is_null());
    assert_eq!(create["after"]["version"], 1);

    ok(&s
        .gql(
            &admin,
            e2e::quota::SET,
            json!({ "i": { "tenantId": id, "metric": "api.calls", "limit": 5, "period": "DAY",
                "enforcement": "HARD", "expectedVersion": 0, "idempotencyKey": "q1" } }),
        )
        .await);
    let (e, diff) = cell_entry(&s, "setQuota").await;
    assert_eq!(e.tenant_id.map(|t| t.to_string()), Some(id.clone()));
    assert!(diff["before"].is_null());
    assert_eq!(diff["after"]["metric"], "api.calls");
    let rule: serde_json::Value =
        serde_json::from_str(diff["after"]["rule"].as_str().expect("the rule")).unwrap();
    assert_eq!(rule["limit"], 5, "{rule}");
    s.stop().await;
}
