//! Rollouts end to end: stages acknowledged by every cell, soaked and
//! advanced by themselves, followed over graphql-transport-ws; operator
//! actions; automatic rollback on a failing health gate; bad plans refused.

use std::time::Duration;

use e2e::flags::*;
use e2e::stack::code;
use e2e::ws::{connect, next_json, subscribe};
use e2e::{Backend, Stack};
use serde_json::{Value, json};

fn stage(name: &str, cohort: Value, soak: i64) -> Value {
    json!({ "name": name, "cohort": cohort, "soakSeconds": soak })
}

fn start(flag: &str, variant: &str, stages: Value, idem: &str) -> Value {
    json!({ "i": { "flagKey": flag, "environment": "prod", "variant": variant, "stages": stages,
        "ackDeadlineSeconds": 20, "idempotencyKey": idem } })
}

async fn op(s: &Stack, name: &str, id: &str) -> Value {
    s.gql(
        &s.admin(),
        &format!("mutation($id: ID!) {{ {name}(id: $id) {{ state stage }} }}"),
        json!({ "id": id }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_runs_stage_by_stage_to_completion_followed_over_websocket() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let mut tenants = Vec::new();
    for (i, region) in ["eu-west-1", "eu-west-1", "us-east-1", "us-east-1"]
        .iter()
        .enumerate()
    {
        let t = s.create_tenant(&format!("roll-{i}"), region).await;
        tenants.push((
            t["id"].as_str().unwrap().to_owned(),
            t["cell"]["id"].as_str().unwrap().to_owned(),
        ));
    }
    boolean_flag(&s, "checkout-v2").await;
    let stages = json!([
        stage("canary", json!({ "tenantIds": [tenants[0].0] }), 3600),
        stage("half", json!({ "percentage": 50 }), 1),
        stage("all", json!({ "percentage": 100 }), 0),
    ]);
    // Four random tenant ids: the 50 % stage matches none of them one time
    // in sixteen, which is not what this test is about.
    let mut input = start("checkout-v2", "on", stages.clone(), "r1");
    input["i"]["allowEmptyCohort"] = json!(true);
    let started = s.gql(&admin, &start_rollout(), input.clone()).await;
    let r = &started["data"]["startRollout"];
    assert_eq!(
        (r["state"].as_str(), r["stage"].as_i64()),
        (Some("RUNNING"), Some(0)),
        "{started}"
    );
    let id = r["id"].as_str().unwrap().to_owned();
    // A retry is the same rollout; a second rollout of the flag is refused.
    let again = s.gql(&admin, &start_rollout(), input).await;
    assert_eq!(again["data"]["startRollout"]["id"], id.as_str());
    let mut other = start("checkout-v2", "on", stages, "r2");
    other["i"]["allowEmptyCohort"] = json!(true);
    let second = s.gql(&admin, &start_rollout(), other).await;
    assert_eq!(code(&second), Some("CONFLICT"), "{second}");

    // The canary is served in its cell; nobody else is exposed.
    let (canary, canary_cell) = &tenants[0];
    let tok = |cell: &str| data_plane(&s, cell);
    let on = wait_variant(
        &s.cell(canary_cell).url(),
        &tok(canary_cell),
        canary,
        "checkout-v2",
        "prod",
        "on",
    )
    .await;
    assert_eq!(on["reason"], "TARGETING_MATCH");
    let (other, other_cell) = &tenants[2];
    let (_, e) = evaluate(
        &s.cell(other_cell).url(),
        &tok(other_cell),
        other,
        "checkout-v2",
        "prod",
    )
    .await;
    assert_eq!(e["variant"], "off");

    // Every cell acknowledges stage 0 with its exposure.
    let mut acked = Value::Null;
    for _ in 0..100 {
        acked = s.gql(&admin, &get_rollout(), json!({ "id": id })).await["data"]["rollout"].clone();
        if acked["cells"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["ackedStage"] == 0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(acked["exposedTenants"], 1, "{acked}");
    assert_eq!(acked["percentExposed"], 25.0, "{acked}");

    // Follow it over graphql-transport-ws: once the subscription is live
    // (a pause is heard), resume and skip the canary's long soak.
    let proto = "graphql-transport-ws";
    let (mut ws, ack) = connect(
        &s.url(),
        proto,
        json!({ "Authorization": format!("Bearer {admin}") }),
    )
    .await;
    assert_eq!(ack["type"], "connection_ack");
    subscribe(&mut ws, proto, "1", &format!("subscription {{ rolloutProgress(id: \"{id}\") {{ rolloutId event detail state stage }} }}")).await;
    let mut heard = Vec::new();
    'live: for _ in 0..20 {
        op(&s, "pauseRollout", &id).await;
        while let Ok(m) = tokio::time::timeout(Duration::from_millis(500), next_json(&mut ws)).await
        {
            heard.push(m["payload"]["data"]["rolloutProgress"].clone());
            if m["payload"]["data"]["rolloutProgress"]["event"] == "PAUSED" {
                break 'live;
            }
        }
        op(&s, "resumeRollout", &id).await;
    }
    assert!(heard.iter().any(|e| e["event"] == "PAUSED"), "{heard:?}");
    assert_eq!(
        op(&s, "resumeRollout", &id).await["data"]["resumeRollout"]["state"],
        "RUNNING"
    );
    assert_eq!(
        op(&s, "advanceRollout", &id).await["data"]["advanceRollout"]["stage"],
        1
    );
    loop {
        let m = next_json(&mut ws).await;
        assert_eq!(m["type"], "next", "{m}");
        let e = m["payload"]["data"]["rolloutProgress"].clone();
        assert_eq!(e["rolloutId"], id.as_str());
        heard.push(e.clone());
        if e["event"] == "COMPLETED" {
            break;
        }
    }
    let events: Vec<&str> = heard.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for want in [
        "RESUMED",
        "ADVANCED",
        "STAGE_STARTED",
        "CELL_ACKNOWLEDGED",
        "GATE_PASSED",
        "COMPLETED",
    ] {
        assert!(events.contains(&want), "no {want} in {events:?}");
    }
    let stage2 = heard
        .iter()
        .position(|e| e["event"] == "STAGE_STARTED" && e["stage"] == 2)
        .expect("stage 2 started");
    let passed1 = heard
        .iter()
        .position(|e| e["event"] == "GATE_PASSED" && e["stage"] == 1);
    assert!(passed1.is_none_or(|p| p < stage2), "{events:?}");

    // Completed: the exposure is now the flag's targeting; every tenant is served `on`.
    for (t, cell) in &tenants {
        wait_variant(
            &s.cell(cell).url(),
            &tok(cell),
            t,
            "checkout-v2",
            "prod",
            "on",
        )
        .await;
    }
    let done = wait_rollout(&s, &id, "COMPLETED", 5).await;
    let history: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(history.first(), Some(&"STARTED"));
    assert_eq!(history.last(), Some(&"COMPLETED"));
    let f = s.gql(&admin, "{ flag(key: \"checkout-v2\") { environments { name enabled rules { variant percentage } } } }", json!({})).await;
    assert_eq!(f["data"]["flag"]["environments"][0]["enabled"], true, "{f}");
    assert_eq!(
        f["data"]["flag"]["environments"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{f}"
    );

    // Operations that do not fit a completed rollout.
    let r = op(&s, "resumeRollout", &id).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let r = op(&s, "rollbackRollout", &id).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let list = s
        .gql(&admin, "{ rollouts(state: COMPLETED) { id } }", json!({}))
        .await;
    assert_eq!(list["data"]["rollouts"], json!([{ "id": id }]));
    let log = s
        .gql(
            &admin,
            "{ auditLog(filter: {action: \"advanceRollout\", source: \"global\"}) { nodes { actor outcome target } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        log["data"]["auditLog"]["nodes"][0],
        json!({ "actor": "admin", "outcome": "OK", "target": id }),
        "{log}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_gate_rolls_back_to_exactly_the_exposure_before() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let mut tenants = Vec::new();
    for (i, region) in ["eu-west-1", "eu-west-1", "us-east-1", "us-east-1"]
        .iter()
        .enumerate()
    {
        let t = s.create_tenant(&format!("gate-{i}"), region).await;
        tenants.push((
            t["id"].as_str().unwrap().to_owned(),
            t["cell"]["id"].as_str().unwrap().to_owned(),
        ));
    }
    let color = s
        .gql(&admin, &create_flag(), json!({ "i": { "key": "color", "kind": "STRING",
            "variants": [{ "name": "blue", "value": "blue" }, { "name": "green", "value": "green" }, { "name": "red", "value": "red" }],
            "offVariant": "green", "idempotencyKey": "color" } }))
        .await;
    assert!(color.get("errors").is_none(), "{color}");
    // Before: tenant 0 sees blue, everyone else green.
    let set = s
        .gql(&admin, &set_targeting(), json!({ "i": { "key": "color", "environment": "prod", "enabled": true,
            "rules": [{ "variant": "blue", "tenantIds": [tenants[0].0] }], "defaultVariant": "green",
            "expectedVersion": 1, "idempotencyKey": "color-1" } }))
        .await;
    assert!(set.get("errors").is_none(), "{set}");
    let before = |i: usize| if i == 0 { "blue" } else { "green" };
    for (i, (t, cell)) in tenants.iter().enumerate() {
        wait_variant(
            &s.cell(cell).url(),
            &data_plane(&s, cell),
            t,
            "color",
            "prod",
            before(i),
        )
        .await;
    }

    let stages = json!([{ "name": "everyone", "cohort": { "percentage": 100 }, "soakSeconds": 3600,
        "gates": { "maxErrorRate": 0.05, "minRequests": 20 } }]);
    let started = s
        .gql(
            &admin,
            &start_rollout(),
            start("color", "red", stages, "red"),
        )
        .await;
    let id = started["data"]["startRollout"]["id"]
        .as_str()
        .expect("started")
        .to_owned();
    for (t, cell) in &tenants {
        wait_variant(
            &s.cell(cell).url(),
            &data_plane(&s, cell),
            t,
            "color",
            "prod",
            "red",
        )
        .await;
    }
    // Health signals through each cell: red fails a third of its requests.
    for (t, cell) in &tenants {
        let (status, body) = signal(&s.cell(cell).url(), &data_plane(&s, cell), "prod",
            json!([{ "tenantId": t, "flagKey": "color", "variant": "red", "requests": 30, "errors": 10 }])).await;
        assert_eq!(status, 202, "{body}");
    }
    // A signal for a tenant of another cell, or with more errors than requests, is refused.
    let (t0, c0) = &tenants[0];
    let other = if c0 == "eu-west-1-a" {
        "us-east-1-a"
    } else {
        "eu-west-1-a"
    };
    let (status, _) = signal(&s.cell(other).url(), &data_plane(&s, other), "prod",
        json!([{ "tenantId": t0, "flagKey": "color", "variant": "red", "requests": 1, "errors": 0 }])).await;
    assert_eq!(status, 400);
    let (status, _) = signal(&s.cell(c0).url(), &data_plane(&s, c0), "prod",
        json!([{ "tenantId": t0, "flagKey": "color", "variant": "red", "requests": 1, "errors": 2 }])).await;
    assert_eq!(status, 400);

    let r = wait_rollout(&s, &id, "ROLLED_BACK", 20).await;
    let events: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"GATE_FAILED"), "{events:?}");
    // Every cell serves the pre-rollout variant again, tenant by tenant.
    for (i, (t, cell)) in tenants.iter().enumerate() {
        let e = wait_variant(
            &s.cell(cell).url(),
            &data_plane(&s, cell),
            t,
            "color",
            "prod",
            before(i),
        )
        .await;
        assert_eq!(e["value"], before(i));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_rollouts_are_refused_and_change_nothing() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    let t = s.create_tenant("bad-roll", "eu-west-1").await;
    let tid = t["id"].as_str().unwrap();
    boolean_flag(&s, "f").await;
    let one = |cohort: Value| json!([stage("s", cohort, 0)]);
    let cases = [
        (
            "nope",
            json!([stage("s", json!({ "percentage": 10 }), 0)]),
            None,
            "BAD_USER_INPUT",
        ),
        (
            "on",
            one(json!({ "percentage": 101 })),
            None,
            "BAD_USER_INPUT",
        ),
        (
            "on",
            json!([
                stage("a", json!({ "percentage": 50 }), 0),
                stage("b", json!({ "percentage": 10 }), 0)
            ]),
            None,
            "BAD_USER_INPUT",
        ),
        (
            "on",
            one(json!({ "tenantIds": [uuid::Uuid::now_v7()] })),
            None,
            "BAD_USER_INPUT",
        ),
        (
            "on",
            one(json!({ "regions": ["ap-south-1"] })),
            None,
            "BAD_USER_INPUT",
        ),
        (
            "on",
            one(json!({ "tenantIds": [tid] })),
            Some("not-a-range"),
            "BAD_USER_INPUT",
        ),
        ("on", json!([]), None, "BAD_USER_INPUT"),
    ];
    for (i, (variant, stages, req, want)) in cases.into_iter().enumerate() {
        let mut v = start("f", variant, stages.clone(), &format!("bad-{i}"));
        v["i"]["requiresTenantVersion"] = json!(req);
        let body = s.gql(&admin, &start_rollout(), v).await;
        assert_eq!(code(&body), Some(want), "{stages}: {body}");
    }
    let unknown = s
        .gql(
            &admin,
            &start_rollout(),
            start("ghost", "on", one(json!({})), "ghost"),
        )
        .await;
    assert_eq!(code(&unknown), Some("NOT_FOUND"));
    let list = s.gql(&admin, "{ rollouts { id } }", json!({})).await;
    assert_eq!(list["data"]["rollouts"], json!([]), "{list}");
    // An empty cohort is allowed when asked for.
    // A long soak keeps it RUNNING (a zero soak could complete it, making
    // the flag's targeting permanent, before the archive below).
    let mut v = start(
        "f",
        "on",
        json!([stage("s", json!({ "regions": ["ap-south-1"] }), 3600)]),
        "empty-ok",
    );
    v["i"]["allowEmptyCohort"] = json!(true);
    let ok = s.gql(&admin, &start_rollout(), v).await;
    assert_eq!(ok["data"]["startRollout"]["state"], "RUNNING", "{ok}");
    let rid = ok["data"]["startRollout"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Archiving the flag aborts its rollout; the flag then takes none.
    let arch = "mutation($i: ArchiveFlagInput!) { archiveFlag(input: $i) { archived } }";
    let a = s
        .gql(
            &admin,
            arch,
            json!({ "i": { "key": "f", "expectedVersion": 1, "idempotencyKey": "arch" } }),
        )
        .await;
    assert_eq!(a["data"]["archiveFlag"]["archived"], true, "{a}");
    assert_eq!(
        wait_rollout(&s, &rid, "ABORTED", 5).await["state"],
        "ABORTED"
    );
    let refused = s
        .gql(
            &admin,
            &start_rollout(),
            start("f", "on", one(json!({})), "after-archive"),
        )
        .await;
    assert_eq!(code(&refused), Some("CONFLICT"), "{refused}");
    let bad_id = op(&s, "pauseRollout", "not-an-id").await;
    assert_eq!(code(&bad_id), Some("BAD_USER_INPUT"));
    let missing = op(&s, "pauseRollout", &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(code(&missing), Some("NOT_FOUND"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stage_without_enough_signals_is_stuck_until_they_come() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let t = s.create_tenant("quiet", "eu-west-1").await;
    let (tid, cell) = (t["id"].as_str().unwrap(), "eu-west-1-a");
    boolean_flag(&s, "quiet").await;
    let stages = json!([{ "name": "all", "cohort": { "percentage": 100 }, "soakSeconds": 0,
        "gates": { "maxErrorRate": 0.5, "minRequests": 10 } }]);
    let started = s
        .gql(
            &admin,
            &start_rollout(),
            start("quiet", "on", stages, "quiet"),
        )
        .await;
    let id = started["data"]["startRollout"]["id"]
        .as_str()
        .expect("started")
        .to_owned();
    let stuck = wait_rollout(&s, &id, "STUCK", 20).await;
    assert!(
        stuck["stuckReason"]
            .as_str()
            .unwrap()
            .contains("cannot be judged"),
        "{stuck}"
    );
    let (status, _) = signal(&s.cell(cell).url(), &data_plane(&s, cell), "prod",
        json!([{ "tenantId": tid, "flagKey": "quiet", "variant": "on", "requests": 12, "errors": 1 }])).await;
    assert_eq!(status, 202);
    let done = wait_rollout(&s, &id, "COMPLETED", 20).await;
    assert_eq!(
        (done["requests"].as_i64(), done["errors"].as_i64()),
        (Some(12), Some(1)),
        "{done}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_outside_the_required_version_are_never_exposed_and_reported() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    let t = s.create_tenant("old-version", "eu-west-1").await;
    let tid = t["id"].as_str().unwrap();
    boolean_flag(&s, "needs-v2").await;
    let stages = json!([stage("all", json!({ "percentage": 100 }), 3600)]);
    let mut v = start("needs-v2", "on", stages.clone(), "v2");
    v["i"]["requiresTenantVersion"] = json!(">=2");
    // The only tenant is at version 1 (ACTIVE, never changed since) in the
    // directory and in its cell alike: the cohort matches nobody.
    let refused = s.gql(&admin, &start_rollout(), v.clone()).await;
    assert_eq!(code(&refused), Some("BAD_USER_INPUT"), "{refused}");
    v["i"]["allowEmptyCohort"] = json!(true);
    let started = s.gql(&admin, &start_rollout(), v).await;
    let id = started["data"]["startRollout"]["id"]
        .as_str()
        .expect("started")
        .to_owned();
    let mut r = Value::Null;
    for _ in 0..300 {
        r = s.gql(&admin, &get_rollout(), json!({ "id": id })).await["data"]["rollout"].clone();
        if r["excludedTenants"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (r["excludedTenants"].as_i64(), r["exposedTenants"].as_i64()),
        (Some(1), Some(0)),
        "{r}"
    );
    let (_, e) = evaluate(
        &s.cell("eu-west-1-a").url(),
        &data_plane(&s, "eu-west-1-a"),
        tid,
        "needs-v2",
        "prod",
    )
    .await;
    assert_eq!(e["variant"], "off", "{e}");
    s.stop().await;
}
