//! "Which tenants are impacted?" through the API, on PostgreSQL and Redis:
//! directory scopes (cell, region, plan, version), cell-owned facts (the
//! variant a flag serves, an effective config value), incidents and
//! maintenance windows, AND-combined, exact and stable under pagination.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::flags::{boolean_flag, set_targeting};
use e2e::stack::{CREATE, code};
use e2e::{Backend, CellSpec, Options, Stack};
use serde_json::{Value, json};
use shared::auth::Role;

pub const IMPACT: &str = "query($s: ImpactScope!, $f: Int, $a: String) { impactedTenants(scope: $s, first: $f, after: $a) { totalCount complete unreachableCells byCell { cellId count } byRegion { region count } tenants { pageInfo { hasNextPage endCursor } edges { cursor node { tenant { id slug } cell { id } reasons } } } } }";

/// A tenant as the test made it.
#[derive(Debug, Clone)]
struct Made {
    id: String,
    cell: String,
    region: String,
    plan: String,
}

async fn create(s: &Stack, slug: &str, region: &str, plan: &str) -> Made {
    let v = s
        .gql(
            &s.admin(),
            CREATE,
            json!({ "input": { "idempotencyKey": format!("key-{slug}"), "slug": slug,
                "name": slug, "region": region, "plan": plan } }),
        )
        .await;
    let t = &v["data"]["createTenant"];
    assert_eq!(t["status"], "ACTIVE", "{v}");
    let id = t["id"].as_str().unwrap().to_owned();
    let d = s
        .gql(
            &s.admin(),
            "query($id: ID!) { tenant(id: $id) { cell { id } } }",
            json!({ "id": id }),
        )
        .await;
    Made {
        id,
        cell: d["data"]["tenant"]["cell"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{d}"))
            .to_owned(),
        region: region.to_owned(),
        plan: plan.to_owned(),
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["data"]["impactedTenants"]["tenants"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| e["node"]["tenant"]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn select(all: &[Made], f: impl Fn(&Made) -> bool) -> Vec<String> {
    sorted(all.iter().filter(|t| f(t)).map(|t| t.id.clone()).collect())
}

async fn impacted(s: &Stack, scope: Value) -> Value {
    s.gql(&s.admin(), IMPACT, json!({ "s": scope, "f": 1000 }))
        .await
}

/// Asks until the answer's tenants are `want` (cells apply flag and config
/// changes through the sync streams), then returns it.
async fn until(s: &Stack, scope: Value, want: &[String]) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = impacted(s, scope.clone()).await;
        if last.get("errors").is_none() && ids(&last) == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("impactedTenants({scope}) never answered {want:?}: {last}");
}

fn counts(v: &Value, list: &str, key: &str) -> BTreeMap<String, i64> {
    v["data"]["impactedTenants"][list]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|c| {
            (
                c[key].as_str().unwrap().to_owned(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn three_cells() -> Options {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![
        CellSpec {
            id: "us-east-1-a",
            region: "us-east-1",
            capacity: 100,
        },
        CellSpec {
            id: "us-east-1-b",
            region: "us-east-1",
            capacity: 100,
        },
        CellSpec {
            id: "eu-west-1-a",
            region: "eu-west-1",
            capacity: 100,
        },
    ];
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn impact_is_exact_for_directory_flag_and_config_scopes() {
    let s = Stack::start_with(three_cells()).await;
    let admin = s.admin();
    let mut all = Vec::new();
    for i in 0..6 {
        let plan = if i % 2 == 0 { "free" } else { "pro" };
        all.push(create(&s, &format!("imp-us-{i}"), "us-east-1", plan).await);
    }
    for i in 0..3 {
        all.push(create(&s, &format!("imp-eu-{i}"), "eu-west-1", "enterprise").await);
    }
    let cells: BTreeSet<&str> = all.iter().map(|t| t.cell.as_str()).collect();
    assert_eq!(cells.len(), 3, "placement spread tenants over every cell");

    // Directory scopes.
    let a = impacted(&s, json!({ "cellIds": ["us-east-1-a"] })).await;
    assert_eq!(ids(&a), select(&all, |t| t.cell == "us-east-1-a"), "{a}");
    assert_eq!(a["data"]["impactedTenants"]["complete"], true, "{a}");
    assert_eq!(
        counts(&a, "byCell", "cellId"),
        BTreeMap::from([(
            "us-east-1-a".to_owned(),
            select(&all, |t| t.cell == "us-east-1-a").len() as i64
        )])
    );
    let free_us = impacted(&s, json!({ "regions": ["us-east-1"], "plans": ["free"] })).await;
    assert_eq!(
        ids(&free_us),
        select(&all, |t| t.region == "us-east-1" && t.plan == "free"),
        "{free_us}"
    );
    let reasons = &free_us["data"]["impactedTenants"]["tenants"]["edges"][0]["node"]["reasons"];
    assert_eq!(reasons, &json!(["in region us-east-1", "on plan free"]));

    // A plan change reaches the directory: the plan scope follows it.
    let moved = all[0].clone();
    let cp = s
        .gql(
            &admin,
            "mutation($i: ChangePlanInput!) { changePlan(input: $i) { plan version } }",
            json!({ "i": { "tenantId": moved.id, "plan": "pro", "expectedVersion": 1, "idempotencyKey": "move-pro" } }),
        )
        .await;
    assert_eq!(cp["data"]["changePlan"]["plan"], "pro", "{cp}");
    all[0].plan = "pro".into();
    let pro = impacted(&s, json!({ "plans": ["pro"] })).await;
    assert_eq!(ids(&pro), select(&all, |t| t.plan == "pro"), "{pro}");

    // A flag the cells evaluate: `on` for two tenants, `off` for the rest.
    boolean_flag(&s, "checkout").await;
    let on = [all[1].id.clone(), all[6].id.clone()];
    let t = s
        .gql(
            &admin,
            &set_targeting(),
            json!({ "i": { "key": "checkout", "environment": "prod", "enabled": true,
                "rules": [{ "variant": "on", "tenantIds": on }], "defaultVariant": "off",
                "expectedVersion": 1, "idempotencyKey": "target-checkout" } }),
        )
        .await;
    assert!(t.get("errors").is_none(), "{t}");
    let want_on = sorted(on.to_vec());
    let flagged = until(
        &s,
        json!({ "flagKey": "checkout", "flagVariant": "on" }),
        &want_on,
    )
    .await;
    assert_eq!(flagged["data"]["impactedTenants"]["totalCount"], 2);
    let off = impacted(&s, json!({ "flagKey": "checkout", "flagVariant": "off" })).await;
    assert_eq!(
        ids(&off),
        select(&all, |t| !on.contains(&t.id)),
        "the other variant is the complement: {off}"
    );
    // AND with a directory scope.
    let eu_on = impacted(
        &s,
        json!({ "flagKey": "checkout", "flagVariant": "on", "regions": ["eu-west-1"] }),
    )
    .await;
    assert_eq!(ids(&eu_on), vec![all[6].id.clone()], "{eu_on}");
    let any_on = impacted(&s, json!({ "flagKey": "checkout" })).await;
    assert_eq!(ids(&any_on), want_on, "no variant: any but the off variant");

    // A config value the cells hold.
    let def = s
        .gql(
            &admin,
            "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
            json!({ "i": { "key": "ui.mode", "type": "STRING", "default": "classic", "scopes": ["TENANT"] } }),
        )
        .await;
    assert!(def.get("errors").is_none(), "{def}");
    let target = all[2].id.clone();
    let mut set = Value::Null;
    for _ in 0..100 {
        set = s
            .gql(
                &admin,
                "mutation($i: UpdateTenantConfigInput!) { updateTenantConfig(input: $i) { version } }",
                json!({ "i": { "tenantId": target, "idempotencyKey": "mode-1", "expectedVersion": 0,
                    "set": [{ "key": "ui.mode", "value": "modern" }] } }),
            )
            .await;
        if set.get("errors").is_none() {
            break;
        }
        // The key has not reached the home cell yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(set.get("errors").is_none(), "{set}");
    let modern = until(
        &s,
        json!({ "configKey": "ui.mode", "configValue": "modern" }),
        std::slice::from_ref(&target),
    )
    .await;
    let r = &modern["data"]["impactedTenants"]["tenants"]["edges"][0]["node"]["reasons"];
    assert_eq!(r, &json!(["config ui.mode = \"modern\""]));
    let classic = until(
        &s,
        json!({ "configKey": "ui.mode", "configValue": "classic" }),
        &select(&all, |t| t.id != target),
    )
    .await;
    assert_eq!(
        counts(&classic, "byRegion", "region"),
        BTreeMap::from([("eu-west-1".to_owned(), 3), ("us-east-1".to_owned(), 5)])
    );

    // Pages of two walk the whole answer once, in order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let v = s
            .gql(
                &admin,
                IMPACT,
                json!({ "s": { "configKey": "ui.mode", "configValue": "classic" }, "f": 2, "a": after }),
            )
            .await;
        let page = ids(&v);
        assert!(page.len() <= 2, "{v}");
        assert_eq!(v["data"]["impactedTenants"]["totalCount"], 8, "{v}");
        seen.extend(page);
        let info = &v["data"]["impactedTenants"]["tenants"]["pageInfo"];
        if info["hasNextPage"] != true {
            break;
        }
        after = Some(info["endCursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, select(&all, |t| t.id != target));

    // Directory version: each version selects exactly the tenants at it.
    let mut versions: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for t in &all {
        let v = s
            .gql(
                &admin,
                "query($id: ID!) { tenant(id: $id) { version } }",
                json!({ "id": t.id }),
            )
            .await;
        let n = v["data"]["tenant"]["version"]
            .as_i64()
            .unwrap_or_else(|| panic!("{v}"));
        versions.entry(n).or_default().push(t.id.clone());
    }
    for (n, want) in versions {
        let v = impacted(&s, json!({ "tenantVersion": n })).await;
        assert_eq!(ids(&v), sorted(want), "{v}");
    }
    let none = impacted(&s, json!({ "tenantVersion": 1_000 })).await;
    assert_eq!(none["data"]["impactedTenants"]["totalCount"], 0, "{none}");

    // Only platform-admin and sre may ask.
    let viewer = s.token("v", &[Role::TenantViewer], &[], None);
    let denied = s
        .gql(
            &viewer,
            IMPACT,
            json!({ "s": { "cellIds": ["us-east-1-a"] } }),
        )
        .await;
    assert_eq!(code(&denied), Some("FORBIDDEN"), "{denied}");
    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let ok = s
        .gql(&sre, IMPACT, json!({ "s": { "cellIds": ["us-east-1-a"] } }))
        .await;
    assert!(ok.get("errors").is_none(), "{ok}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incidents_and_maintenance_windows_select_their_tenants() {
    let s = Stack::start_with(three_cells()).await;
    let admin = s.admin();
    let mut all = Vec::new();
    for i in 0..4 {
        all.push(create(&s, &format!("inc-us-{i}"), "us-east-1", "pro").await);
    }
    for i in 0..2 {
        all.push(create(&s, &format!("inc-eu-{i}"), "eu-west-1", "pro").await);
    }
    boolean_flag(&s, "search-v2").await;
    let flagged = all[0].id.clone();
    let t = s
        .gql(
            &admin,
            &set_targeting(),
            json!({ "i": { "key": "search-v2", "environment": "prod", "enabled": true,
                "rules": [{ "variant": "on", "tenantIds": [flagged] }], "defaultVariant": "off",
                "expectedVersion": 1, "idempotencyKey": "target-search" } }),
        )
        .await;
    assert!(t.get("errors").is_none(), "{t}");
    let want_flag = vec![flagged.clone()];
    until(&s, json!({ "flagKey": "search-v2" }), &want_flag).await;

    // An incident in the EU cell and on a flag: the union of both.
    let inc = s
        .gql(
            &admin,
            "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id status version timeline { status note actor } } }",
            json!({ "i": { "title": "EU latency", "severity": "SEV2", "idempotencyKey": "inc-1",
                "scope": { "cellIds": ["eu-west-1-a"], "flagKeys": ["search-v2"], "components": ["api"] } } }),
        )
        .await;
    let incident = &inc["data"]["createIncident"];
    assert_eq!(incident["status"], "INVESTIGATING", "{inc}");
    assert_eq!(incident["timeline"][0]["actor"], "admin");
    let id = incident["id"].as_str().unwrap().to_owned();
    let want = select(&all, |t| t.region == "eu-west-1" || t.id == flagged);
    let by_scope = until(&s, json!({ "incidentId": id }), &want).await;
    assert_eq!(by_scope["data"]["impactedTenants"]["totalCount"], 3);
    let field = s
        .gql(
            &admin,
            "query($id: ID!) { incident(id: $id) { impactedTenants { totalCount tenants { edges { node { tenant { id } } } } } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        field["data"]["incident"]["impactedTenants"]["totalCount"], 3,
        "{field}"
    );
    // AND with a region narrows it.
    let us_only = impacted(&s, json!({ "incidentId": id, "regions": ["us-east-1"] })).await;
    assert_eq!(ids(&us_only), want_flag, "{us_only}");

    // The incident moves on; a stale version is refused, a retry is the same answer.
    let upd = "mutation($i: UpdateIncidentInput!) { updateIncident(input: $i) { status version resolvedAt timeline { status note } } }";
    let input = json!({ "i": { "id": id, "status": "RESOLVED", "note": "rolled back", "expectedVersion": 1, "idempotencyKey": "inc-1-r" } });
    let r1 = s.gql(&admin, upd, input.clone()).await;
    assert_eq!(r1["data"]["updateIncident"]["status"], "RESOLVED", "{r1}");
    assert_eq!(r1["data"]["updateIncident"]["version"], 2);
    assert!(r1["data"]["updateIncident"]["resolvedAt"].is_string());
    let r2 = s.gql(&admin, upd, input).await;
    assert_eq!(r2["data"]["updateIncident"]["version"], 2, "a retry: {r2}");
    assert_eq!(
        r2["data"]["updateIncident"]["timeline"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "one entry for the two requests"
    );
    let stale = s
        .gql(
            &admin,
            upd,
            json!({ "i": { "id": id, "note": "again", "expectedVersion": 1, "idempotencyKey": "inc-1-s" } }),
        )
        .await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");

    // A maintenance window over one tenant and the EU region.
    let starts = chrono::Utc::now();
    let ends = starts + chrono::Duration::hours(1);
    let w = s
        .gql(
            &admin,
            "mutation($i: ScheduleMaintenanceInput!) { scheduleMaintenance(input: $i) { id status version } }",
            json!({ "i": { "scope": { "tenantIds": [all[1].id], "regions": ["eu-west-1"] },
                "startsAt": starts, "endsAt": ends, "description": "db upgrade", "idempotencyKey": "mw-1" } }),
        )
        .await;
    assert_eq!(
        w["data"]["scheduleMaintenance"]["status"], "IN_PROGRESS",
        "{w}"
    );
    let wid = w["data"]["scheduleMaintenance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let covered = impacted(&s, json!({ "maintenanceWindowId": wid })).await;
    assert_eq!(
        ids(&covered),
        select(&all, |t| t.region == "eu-west-1" || t.id == all[1].id),
        "{covered}"
    );
    let active = s
        .gql(
            &admin,
            "query($t: ID, $at: DateTime) { maintenanceWindows(tenantId: $t, activeAt: $at) { id } }",
            json!({ "t": all[4].id, "at": chrono::Utc::now() }),
        )
        .await;
    assert_eq!(
        active["data"]["maintenanceWindows"][0]["id"], wid,
        "{active}"
    );
    let none = s
        .gql(
            &admin,
            "query($t: ID) { maintenanceWindows(tenantId: $t) { id } }",
            json!({ "t": all[2].id }),
        )
        .await;
    assert_eq!(none["data"]["maintenanceWindows"], json!([]), "{none}");

    // While it is in progress, placement avoids the EU cell: EU is unavailable.
    let blocked = s
        .gql(
            &admin,
            CREATE,
            json!({ "input": { "idempotencyKey": "key-eu-late", "slug": "eu-late", "name": "late",
                "region": "eu-west-1", "plan": "pro" } }),
        )
        .await;
    assert_eq!(code(&blocked), Some("UNAVAILABLE"), "{blocked}");
    let preview = s
        .gql(
            &admin,
            "{ placementPreview(region: \"eu-west-1\", plan: \"pro\") { cell { id } rejected { cell { id } rule } } }",
            json!({}),
        )
        .await;
    let rules: Vec<(String, String)> = preview["data"]["placementPreview"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["cell"]["id"].as_str().unwrap().to_owned(),
                r["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        rules.contains(&("eu-west-1-a".into(), "MAINTENANCE".into())),
        "{preview}"
    );

    // Completing the window early lets placement back in.
    let end = s
        .gql(
            &admin,
            "mutation($i: EndMaintenanceInput!) { endMaintenance(input: $i) { status version } }",
            json!({ "i": { "id": wid, "expectedVersion": 1, "idempotencyKey": "mw-1-end" } }),
        )
        .await;
    assert_eq!(
        end["data"]["endMaintenance"]["status"], "COMPLETED",
        "{end}"
    );
    let again = s
        .gql(
            &admin,
            "mutation($i: EndMaintenanceInput!) { endMaintenance(input: $i) { status } }",
            json!({ "i": { "id": wid, "expectedVersion": 2, "idempotencyKey": "mw-1-end-2" } }),
        )
        .await;
    assert_eq!(code(&again), Some("CONFLICT"), "{again}");
    create(&s, "eu-after", "eu-west-1", "pro").await;

    // Every change is in the audit log with its actor.
    for a in [
        "createIncident",
        "updateIncident",
        "scheduleMaintenance",
        "endMaintenance",
    ] {
        let log = s
            .gql(
                &admin,
                "query($f: AuditFilter) { auditLog(filter: $f) { nodes { actor action outcome } } }",
                json!({ "f": { "action": a } }),
            )
            .await;
        let entries = log["data"]["auditLog"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            entries
                .iter()
                .any(|e| e["actor"] == "admin" && e["outcome"] == "OK"),
            "{a} audited: {log}"
        );
    }
    s.stop().await;
}
