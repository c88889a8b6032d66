//! A rollout with a start time in the future is PENDING: cells hear of it
//! but expose nobody until the start time, when it starts its canary by
//! itself; an operator may start it at once or cancel it.

use std::time::Duration;

use e2e::flags::*;
use e2e::stack::code;
use e2e::{Backend, Stack};
use serde_json::{Value, json};

fn start(flag: &str, start_at: chrono::DateTime<chrono::Utc>, idem: &str, tenant: &str) -> Value {
    json!({ "i": { "flagKey": flag, "environment": "prod", "variant": "on",
        "stages": [{ "name": "canary", "cohort": { "tenantIds": [tenant] }, "soakSeconds": 3600 }],
        "ackDeadlineSeconds": 20, "startAt": start_at.to_rfc3339(), "idempotencyKey": idem } })
}

async fn op(s: &Stack, name: &str, id: &str) -> Value {
    s.gql(
        &s.admin(),
        &format!("mutation($id: ID!) {{ {name}(id: $id) {{ state stage startAt }} }}"),
        json!({ "id": id }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_rollout_exposes_nobody_until_its_start_time() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    let t = s.create_tenant("later", "eu-west-1").await;
    let tid = t["id"].as_str().unwrap();
    let (cell, tok) = (s.cell("eu-west-1-a").url(), data_plane(&s, "eu-west-1-a"));
    boolean_flag(&s, "timed").await;

    let at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let started = s
        .gql(&admin, &start_rollout(), start("timed", at, "timed-1", tid))
        .await;
    let r = &started["data"]["startRollout"];
    assert_eq!(r["state"], "PENDING", "{started}");
    let id = r["id"].as_str().unwrap().to_owned();
    let listed = s
        .gql(&admin, "{ rollouts(state: PENDING) { id } }", json!({}))
        .await;
    assert_eq!(listed["data"]["rollouts"][0]["id"], id.as_str(), "{listed}");
    // Not started: pausing or resuming it makes no sense; a second rollout
    // of the flag is refused as for a running one.
    for name in ["pauseRollout", "resumeRollout"] {
        let refused = op(&s, name, &id).await;
        assert_eq!(code(&refused), Some("CONFLICT"), "{name}: {refused}");
    }
    let second = s
        .gql(&admin, &start_rollout(), start("timed", at, "timed-2", tid))
        .await;
    assert_eq!(code(&second), Some("CONFLICT"), "{second}");
    // The cells have the plan and serve the flag as before it.
    let off = wait_variant(&cell, &tok, tid, "timed", "prod", "off").await;
    assert_eq!(off["reason"], "DISABLED", "{off}");
    let pending = s.gql(&admin, &get_rollout(), json!({ "id": id })).await;
    assert_eq!(pending["data"]["rollout"]["state"], "PENDING", "{pending}");

    // At the start time it starts its canary by itself.
    let running = wait_rollout(&s, &id, "RUNNING", 20).await;
    assert!(
        chrono::Utc::now() >= at,
        "started before its time: {running}"
    );
    let events: Vec<&str> = running["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .filter(|e| *e != "CELL_ACKNOWLEDGED")
        .collect();
    assert_eq!(
        &events[..3],
        ["PENDING", "STARTED", "STAGE_STARTED"],
        "{running}"
    );
    let on = wait_variant(&cell, &tok, tid, "timed", "prod", "on").await;
    assert_eq!(on["reason"], "TARGETING_MATCH", "{on}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_rollout_can_be_started_now_or_cancelled() {
    let s = Stack::start(Backend::Sqlite).await;
    let t = s.create_tenant("soon", "us-east-1").await;
    let tid = t["id"].as_str().unwrap();
    let (cell, tok) = (s.cell("us-east-1-a").url(), data_plane(&s, "us-east-1-a"));
    boolean_flag(&s, "now").await;
    boolean_flag(&s, "never").await;
    let at = chrono::Utc::now() + chrono::Duration::hours(1);

    let r = s
        .gql(&s.admin(), &start_rollout(), start("now", at, "now-1", tid))
        .await;
    let id = r["data"]["startRollout"]["id"].as_str().unwrap().to_owned();
    let advanced = op(&s, "advanceRollout", &id).await;
    assert_eq!(
        advanced["data"]["advanceRollout"],
        json!({ "state": "RUNNING", "stage": 0, "startAt": null }),
        "{advanced}"
    );
    wait_variant(&cell, &tok, tid, "now", "prod", "on").await;

    let r = s
        .gql(
            &s.admin(),
            &start_rollout(),
            start("never", at, "never-1", tid),
        )
        .await;
    let id = r["data"]["startRollout"]["id"].as_str().unwrap().to_owned();
    let cancelled = op(&s, "rollbackRollout", &id).await;
    assert_eq!(
        cancelled["data"]["rollbackRollout"]["state"], "ROLLED_BACK",
        "{cancelled}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, e) = evaluate(&cell, &tok, tid, "never", "prod").await;
    assert_eq!(e["variant"], "off", "{e}");
    s.stop().await;
}
