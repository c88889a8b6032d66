//! Helpers for the flag and rollout tests: GraphQL documents, the cells'
//! data-plane hooks, and waiting for a cell to serve something.

use std::time::Duration;

use serde_json::{Value, json};
use shared::auth::Role;

use crate::Stack;

pub const FLAG_FIELDS: &str = "key description kind variants { name value } offVariant salt archived version environments { name enabled killed defaultVariant rules { variant tenantIds percentage constraints { attribute operator values } prerequisites { flagKey variant } } }";

pub fn create_flag() -> String {
    format!("mutation($i: CreateFlagInput!) {{ createFlag(input: $i) {{ {FLAG_FIELDS} }} }}")
}

pub fn set_targeting() -> String {
    format!(
        "mutation($i: SetFlagTargetingInput!) {{ setFlagTargeting(input: $i) {{ {FLAG_FIELDS} }} }}"
    )
}

pub fn kill_flag() -> String {
    format!(
        "mutation($k: String!, $e: String!) {{ killFlag(key: $k, environment: $e) {{ {FLAG_FIELDS} }} }}"
    )
}

pub const ROLLOUT_FIELDS: &str = "id flagKey environment variant state stage stageName percentExposed exposedTenants excludedTenants stuckReason stuckCells requests errors version cells { id ackedStage exposedTenants excludedTenants tenants } history { at event detail }";

pub fn start_rollout() -> String {
    format!("mutation($i: StartRolloutInput!) {{ startRollout(input: $i) {{ {ROLLOUT_FIELDS} }} }}")
}

pub fn get_rollout() -> String {
    format!("query($id: ID!) {{ rollout(id: $id) {{ {ROLLOUT_FIELDS} }} }}")
}

/// A boolean flag `key` with variants `on` / `off` (off by default).
pub async fn boolean_flag(s: &Stack, key: &str) -> Value {
    let body = s
        .gql(
            &s.admin(),
            &create_flag(),
            json!({ "i": { "key": key, "description": "test flag", "kind": "BOOLEAN",
                "variants": [{ "name": "on", "value": true }, { "name": "off", "value": false }],
                "offVariant": "off", "idempotencyKey": format!("create-{key}") } }),
        )
        .await;
    assert!(body.get("errors").is_none(), "createFlag: {body}");
    body["data"]["createFlag"].clone()
}

/// A data-plane token bound to `cell`.
pub fn data_plane(s: &Stack, cell: &str) -> String {
    s.token("edge", &[Role::DataPlane], &[], Some(cell))
}

/// `POST /v1/flags/evaluate` on the cell at `url`: (status, body).
pub async fn evaluate(url: &str, token: &str, tenant: &str, flag: &str, env: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/flags/evaluate"))
        .bearer_auth(token)
        .json(&json!({ "tenantId": tenant, "flagKey": flag, "environment": env, "context": {} }))
        .send()
        .await
        .expect("evaluate request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}

/// Waits until the cell at `url` serves `variant` of `flag` to `tenant`;
/// returns the evaluation.
pub async fn wait_variant(
    url: &str,
    token: &str,
    tenant: &str,
    flag: &str,
    env: &str,
    variant: &str,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let (status, body) = evaluate(url, token, tenant, flag, env).await;
        if status == 200 && body["variant"] == variant {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never served {flag}={variant} to {tenant}: {last}");
}

/// Waits until the rollout is in `state`; returns it.
pub async fn wait_rollout(s: &Stack, id: &str, state: &str, secs: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..secs * 10 {
        let body = s.gql(&s.admin(), &get_rollout(), json!({ "id": id })).await;
        if body["data"]["rollout"]["state"] == state {
            return body["data"]["rollout"].clone();
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rollout {id} never reached {state}: {last}");
}

/// `POST /v1/signals` on the cell at `url`.
pub async fn signal(url: &str, token: &str, env: &str, signals: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/signals"))
        .bearer_auth(token)
        .json(&json!({ "environment": env, "signals": signals }))
        .send()
        .await
        .expect("signals request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}
