//! A maintenance window with `freezeRollouts` holds every rollout whose
//! next stage would reach one of its tenants: the soak ends but the stage
//! does not advance, a rollout whose first stage would reach them does not
//! start, an operator's advance is refused, and the rollouts go on once
//! the window is over. Rollouts that do not reach the window's
//! tenants are not held.

use std::time::Duration;

use e2e::flags::*;
use e2e::stack::code;
use e2e::{Backend, Stack};
use serde_json::{Value, json};

async fn rollout(s: &Stack, id: &str) -> Value {
    let v = s.gql(&s.admin(), &get_rollout(), json!({ "id": id })).await;
    v["data"]["rollout"].clone()
}

/// Starts a rollout of `on` for `flag` in prod; returns its id.
async fn start(s: &Stack, flag: &str, stages: Value) -> String {
    let v = s
        .gql(
            &s.admin(),
            &start_rollout(),
            json!({ "i": { "flagKey": flag, "environment": "prod", "variant": "on", "stages": stages,
                "ackDeadlineSeconds": 20, "idempotencyKey": format!("start-{flag}") } }),
        )
        .await;
    v["data"]["startRollout"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

/// The rollout once it is COMPLETED (10 s at most).
async fn completed(s: &Stack, id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = rollout(s, id).await;
        if last["state"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["state"], "COMPLETED", "{last}");
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_freezing_window_holds_rollouts_that_would_reach_its_tenants() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let eu = s.create_tenant("frz-eu", "eu-west-1").await;
    let us = s.create_tenant("frz-us", "us-east-1").await;
    let (eu_id, us_id) = (eu["id"].as_str().unwrap(), us["id"].as_str().unwrap());

    // The window covers the US tenant only.
    let now = chrono::Utc::now();
    let w = s
        .gql(
            &admin,
            "mutation($i: ScheduleMaintenanceInput!) { scheduleMaintenance(input: $i) { id version status freezeRollouts } }",
            json!({ "i": { "scope": { "tenantIds": [us_id] }, "startsAt": now,
                "endsAt": now + chrono::Duration::hours(1), "description": "schema migration",
                "freezeRollouts": true, "idempotencyKey": "frz-window" } }),
        )
        .await;
    assert_eq!(
        w["data"]["scheduleMaintenance"]["freezeRollouts"], true,
        "{w}"
    );
    let wid = w["data"]["scheduleMaintenance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Held: its second stage reaches the US tenant.
    boolean_flag(&s, "held").await;
    let held_id = start(
        &s,
        "held",
        json!([
            { "name": "eu", "cohort": { "tenantIds": [eu_id] }, "soakSeconds": 0 },
            { "name": "us", "cohort": { "tenantIds": [us_id] }, "soakSeconds": 0 },
        ]),
    )
    .await;
    // Not held: both stages stay in the EU.
    boolean_flag(&s, "free").await;
    let free_id = start(
        &s,
        "free",
        json!([
            { "name": "eu", "cohort": { "tenantIds": [eu_id] }, "soakSeconds": 0 },
            { "name": "eu-all", "cohort": { "regions": ["eu-west-1"] }, "soakSeconds": 0 },
        ]),
    )
    .await;

    // Not started: its first stage reaches the US tenant.
    boolean_flag(&s, "unstarted").await;
    let unstarted_id = start(
        &s,
        "unstarted",
        json!([
            { "name": "us", "cohort": { "tenantIds": [us_id] }, "soakSeconds": 0 },
        ]),
    )
    .await;

    // The free rollout completes; the held one waits at stage 0, saying why.
    completed(&s, &free_id).await;
    let mut h = Value::Null;
    for _ in 0..200 {
        h = rollout(&s, &held_id).await;
        if h["history"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["event"] == "FROZEN"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (h["state"].as_str(), h["stage"].as_i64()),
        (Some("RUNNING"), Some(0)),
        "{h}"
    );
    let frozen: Vec<&Value> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "FROZEN")
        .collect();
    assert!(frozen[0]["detail"].as_str().unwrap().contains(&wid), "{h}");
    // Several ticks later still one FROZEN entry, still stage 0.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let h = rollout(&s, &held_id).await;
    assert_eq!(h["stage"], 0, "{h}");
    let n = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "FROZEN")
        .count();
    assert_eq!(n, 1, "the history says it once: {h}");
    let adv = s
        .gql(
            &admin,
            "mutation($id: ID!) { advanceRollout(id: $id) { stage } }",
            json!({ "id": held_id }),
        )
        .await;
    assert_eq!(code(&adv), Some("CONFLICT"), "{adv}");
    // The unstarted one is still PENDING, says why, and cannot be forced.
    let u = rollout(&s, &unstarted_id).await;
    assert_eq!(u["state"], "PENDING", "{u}");
    assert!(
        u["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "FROZEN" && e["detail"].as_str().unwrap().contains(&wid)),
        "{u}"
    );
    let adv = s
        .gql(
            &admin,
            "mutation($id: ID!) { advanceRollout(id: $id) { stage } }",
            json!({ "id": unstarted_id }),
        )
        .await;
    assert_eq!(code(&adv), Some("CONFLICT"), "{adv}");

    // The window ends early: the rollout goes on by itself.
    let end = s
        .gql(
            &admin,
            "mutation($i: EndMaintenanceInput!) { endMaintenance(input: $i) { status } }",
            json!({ "i": { "id": wid, "expectedVersion": 1, "idempotencyKey": "frz-end" } }),
        )
        .await;
    assert_eq!(
        end["data"]["endMaintenance"]["status"], "COMPLETED",
        "{end}"
    );
    completed(&s, &held_id).await;
    completed(&s, &unstarted_id).await;
    s.stop().await;
}
