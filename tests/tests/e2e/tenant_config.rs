//! Tenant configuration: layered values written in the tenant's home cell
//! through the global API, all or nothing, versioned, with history and rollback.

use std::time::Duration;

use e2e::stack::{code, message};
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::auth::Role;
use shared::ids::TenantId;

const DEFINE: &str =
    "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }";
const UPDATE: &str =
    "mutation($i: UpdateTenantConfigInput!) { updateTenantConfig(input: $i) { version } }";
const EFFECTIVE: &str = "query($t: ID!, $p: String, $e: String) { effectiveConfig(tenantId: $t, projectId: $p, environment: $e) { key value source } }";

async fn setup() -> (Stack, String) {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    for def in [
        json!({ "key": "limits.max_users", "type": "INT", "default": 10, "scopes": ["TENANT", "PROJECT", "ENVIRONMENT"], "min": 1, "max": 1000 }),
        json!({ "key": "ui.theme", "type": "STRING", "default": "light", "scopes": ["TENANT"], "enum": ["light", "dark"] }),
        json!({ "key": "feature.beta", "type": "BOOL", "default": false, "scopes": ["ENVIRONMENT"] }),
    ] {
        let v = s.gql(&admin, DEFINE, json!({ "i": def })).await;
        assert_eq!(v["data"]["defineConfigKey"]["version"], 1, "{v}");
    }
    let t = s.create_tenant("configured", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    // Wait until the home cell holds the whole registry.
    for _ in 0..100 {
        let v = s.gql(&admin, EFFECTIVE, json!({ "t": id })).await;
        if v["data"]["effectiveConfig"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
        {
            return (s, id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the registry never reached the cell");
}

fn update(
    id: &str,
    key: &str,
    expected: i64,
    env: Option<&str>,
    project: Option<&str>,
    set: Value,
) -> Value {
    json!({ "i": { "tenantId": id, "idempotencyKey": key, "expectedVersion": expected, "environment": env, "projectId": project, "set": set } })
}

/// `key → (value, source)` of an effectiveConfig answer.
fn values(v: &Value) -> std::collections::HashMap<String, (Value, String)> {
    v["data"]["effectiveConfig"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                (e["value"].clone(), e["source"].as_str().unwrap().to_owned()),
            )
        })
        .collect()
}

#[tokio::test]
async fn layered_values_history_and_rollback() {
    let (s, id) = setup().await;
    let admin = s.admin();
    // Config targets must exist: the project `web` is made first.
    let web = s
        .gql(
            &admin,
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }",
            json!({ "i": { "tenantId": id, "name": "web", "idempotencyKey": "web" } }),
        )
        .await;
    assert!(web.get("errors").is_none(), "{web}");
    let eff = values(&s.gql(&admin, EFFECTIVE, json!({ "t": id })).await);
    assert_eq!(eff["limits.max_users"], (json!(10), "DEFAULT".into()));

    let v1 = s
        .gql(
            &admin,
            UPDATE,
            update(
                &id,
                "u1",
                0,
                None,
                None,
                json!([{ "key": "limits.max_users", "value": 50 }]),
            ),
        )
        .await;
    assert_eq!(v1["data"]["updateTenantConfig"]["version"], 1, "{v1}");
    let v2 = s
        .gql(&admin, UPDATE, update(&id, "u2", 1, Some("prod"), None, json!([{ "key": "limits.max_users", "value": 200 }, { "key": "feature.beta", "value": true }])))
        .await;
    assert_eq!(v2["data"]["updateTenantConfig"]["version"], 2, "{v2}");
    let v3 = s
        .gql(
            &admin,
            UPDATE,
            update(
                &id,
                "u3",
                2,
                None,
                Some("web"),
                json!([{ "key": "limits.max_users", "value": 70 }]),
            ),
        )
        .await;
    assert_eq!(v3["data"]["updateTenantConfig"]["version"], 3, "{v3}");

    let plain = values(&s.gql(&admin, EFFECTIVE, json!({ "t": id })).await);
    assert_eq!(plain["limits.max_users"], (json!(50), "TENANT".into()));
    assert_eq!(plain["feature.beta"], (json!(false), "DEFAULT".into()));
    let prod = values(
        &s.gql(&admin, EFFECTIVE, json!({ "t": id, "e": "prod" }))
            .await,
    );
    assert_eq!(prod["limits.max_users"], (json!(200), "ENVIRONMENT".into()));
    assert_eq!(prod["feature.beta"], (json!(true), "ENVIRONMENT".into()));
    let web = values(
        &s.gql(
            &admin,
            EFFECTIVE,
            json!({ "t": id, "p": "web", "e": "prod" }),
        )
        .await,
    );
    assert_eq!(web["limits.max_users"], (json!(70), "PROJECT".into()));

    // Every violation in one error; nothing applied.
    let bad = s
        .gql(
            &admin,
            UPDATE,
            update(
                &id,
                "u4",
                3,
                None,
                None,
                json!([
                    { "key": "ui.theme", "value": "blue" },
                    { "key": "nope", "value": 1 },
                    { "key": "feature.beta", "value": true },
                    { "key": "limits.max_users", "value": 0 }
                ]),
            ),
        )
        .await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    for problem in [
        "must be one of light, dark",
        "nope: no such config key",
        "may not be set at Tenant scope",
        "at least 1",
    ] {
        assert!(message(&bad).contains(problem), "{problem}: {bad}");
    }
    let stale = s
        .gql(
            &admin,
            UPDATE,
            update(
                &id,
                "u5",
                1,
                None,
                None,
                json!([{ "key": "ui.theme", "value": "dark" }]),
            ),
        )
        .await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");

    // Retries: same key and input → same version; other input → CONFLICT.
    let again = s
        .gql(
            &admin,
            UPDATE,
            update(
                &id,
                "u3",
                2,
                None,
                Some("web"),
                json!([{ "key": "limits.max_users", "value": 70 }]),
            ),
        )
        .await;
    assert_eq!(again["data"]["updateTenantConfig"]["version"], 3, "{again}");
    let reused = s
        .gql(
            &admin,
            UPDATE,
            update(
                &id,
                "u3",
                3,
                None,
                None,
                json!([{ "key": "ui.theme", "value": "dark" }]),
            ),
        )
        .await;
    assert_eq!(code(&reused), Some("CONFLICT"));

    let hist = s
        .gql(
            &admin,
            "query($t: ID!) { configHistory(tenantId: $t) { version actor diff } }",
            json!({ "t": id }),
        )
        .await;
    let hist = hist["data"]["configHistory"].as_array().unwrap().clone();
    assert_eq!(
        hist.iter()
            .map(|h| h["version"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert_eq!(hist[2]["actor"], "admin");
    assert_eq!(
        hist[2]["diff"][0],
        json!({ "scope": "TENANT", "key": "limits.max_users", "before": null, "after": 50 })
    );

    let rb = s
        .gql(
            &admin,
            "mutation($i: RollbackTenantConfigInput!) { rollbackTenantConfig(input: $i) { version } }",
            json!({ "i": { "tenantId": id, "toVersion": 1, "expectedVersion": 3, "idempotencyKey": "rb1" } }),
        )
        .await;
    assert_eq!(rb["data"]["rollbackTenantConfig"]["version"], 4, "{rb}");
    let after = values(
        &s.gql(&admin, EFFECTIVE, json!({ "t": id, "e": "prod" }))
            .await,
    );
    assert_eq!(after["limits.max_users"], (json!(50), "TENANT".into()));
    assert_eq!(after["feature.beta"], (json!(false), "DEFAULT".into()));

    // Audited at both tiers, with the end user as actor.
    let log = s
        .gql(
            &admin,
            "{ auditLog(filter: {action: \"updateTenantConfig\", source: \"global\"}) { nodes { outcome } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        log["data"]["auditLog"]["nodes"].as_array().unwrap().len(),
        7,
        "{log}"
    );
    let cell_log = shared::audit::list(
        &s.cell("eu-west-1-a").state.db,
        &shared::audit::Filter {
            action: Some("updateTenantConfig".into()),
            ..Default::default()
        },
        50,
    )
    .await
    .unwrap();
    assert!(
        cell_log
            .iter()
            .all(|e| e.target.as_deref() == Some("admin"))
    );
    s.stop().await;
}

#[tokio::test]
async fn racing_writers_with_one_expected_version_one_wins() {
    let (s, id) = setup().await;
    let admin = s.admin();
    let a = s.gql(
        &admin,
        UPDATE,
        update(
            &id,
            "race-a",
            0,
            None,
            None,
            json!([{ "key": "ui.theme", "value": "dark" }]),
        ),
    );
    let b = s.gql(
        &admin,
        UPDATE,
        update(
            &id,
            "race-b",
            0,
            None,
            None,
            json!([{ "key": "limits.max_users", "value": 99 }]),
        ),
    );
    let (a, b) = tokio::join!(a, b);
    let outcomes = [code(&a), code(&b)];
    assert!(
        outcomes.contains(&None) && outcomes.contains(&Some("CONFLICT")),
        "{a} {b}"
    );
    let winner = if code(&a).is_none() {
        "ui.theme"
    } else {
        "limits.max_users"
    };
    let eff = values(&s.gql(&admin, EFFECTIVE, json!({ "t": id })).await);
    assert_eq!(eff[winner].1, "TENANT", "the winner's write is kept");
    s.stop().await;
}

#[tokio::test]
async fn tenant_principals_read_their_own_config_only() {
    let (s, id) = setup().await;
    let other = s.create_tenant("other", "us-east-1").await;
    let tid: TenantId = id.parse().unwrap();
    let viewer = s.token("v", &[Role::TenantViewer], &[tid], None);
    let own = s.gql(&viewer, EFFECTIVE, json!({ "t": id })).await;
    assert_eq!(own["data"]["effectiveConfig"].as_array().unwrap().len(), 3);
    let theirs = s.gql(&viewer, EFFECTIVE, json!({ "t": other["id"] })).await;
    assert_eq!(code(&theirs), Some("NOT_FOUND"));
    let write = s
        .gql(
            &viewer,
            UPDATE,
            update(
                &id,
                "v1",
                0,
                None,
                None,
                json!([{ "key": "ui.theme", "value": "dark" }]),
            ),
        )
        .await;
    assert_eq!(code(&write), Some("FORBIDDEN"));
    let tenant_admin = s.token("ta", &[Role::TenantAdmin], &[tid], None);
    let ok = s
        .gql(
            &tenant_admin,
            UPDATE,
            update(
                &id,
                "ta1",
                0,
                None,
                None,
                json!([{ "key": "ui.theme", "value": "dark" }]),
            ),
        )
        .await;
    assert_eq!(ok["data"]["updateTenantConfig"]["version"], 1, "{ok}");
    s.stop().await;
}

#[tokio::test]
async fn json_values_are_checked_against_the_key_schema_in_the_cell() {
    let (s, id) = setup().await;
    let admin = s.admin();
    let schema = json!({
        "type": "object",
        "properties": {
            "retries": { "type": "integer", "minimum": 0, "maximum": 10 },
            "endpoint": { "type": "string", "format": "uri" }
        },
        "required": ["retries"],
        "additionalProperties": false
    });
    let bad_default = s
        .gql(
            &admin,
            DEFINE,
            json!({ "i": { "key": "client.policy", "type": "JSON", "default": { "retries": "x" }, "scopes": ["TENANT"], "jsonSchema": schema } }),
        )
        .await;
    assert_eq!(code(&bad_default), Some("BAD_USER_INPUT"), "{bad_default}");
    let not_a_schema = s
        .gql(
            &admin,
            DEFINE,
            json!({ "i": { "key": "client.policy", "type": "JSON", "default": {}, "scopes": ["TENANT"], "jsonSchema": { "type": 12 } } }),
        )
        .await;
    assert!(
        message(&not_a_schema).contains("not a valid JSON Schema"),
        "{not_a_schema}"
    );
    let v = s
        .gql(
            &admin,
            DEFINE,
            json!({ "i": { "key": "client.policy", "type": "JSON", "default": { "retries": 3 }, "scopes": ["TENANT"], "jsonSchema": schema } }),
        )
        .await;
    assert_eq!(v["data"]["defineConfigKey"]["version"], 1, "{v}");
    // The cell checks values with its synced copy of the schema.
    let mut last = Value::Null;
    for _ in 0..100 {
        last = s
            .gql(
                &admin,
                UPDATE,
                update(
                    &id,
                    "json-bad",
                    0,
                    None,
                    None,
                    json!([{ "key": "client.policy", "value": { "retries": 11, "extra": true } }]),
                ),
            )
            .await;
        if message(&last).contains("JSON Schema") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code(&last), Some("BAD_USER_INPUT"), "{last}");
    let msg = message(&last);
    assert!(
        msg.contains("/retries") && msg.contains("extra"),
        "every violation is named: {msg}"
    );
    let eff = values(&s.gql(&admin, EFFECTIVE, json!({ "t": id })).await);
    assert_eq!(
        eff["client.policy"],
        (json!({ "retries": 3 }), "DEFAULT".into()),
        "nothing changed"
    );
    let ok = s
        .gql(
            &admin,
            UPDATE,
            update(
                &id,
                "json-ok",
                0,
                None,
                None,
                json!([{ "key": "client.policy", "value": { "retries": 5 } }]),
            ),
        )
        .await;
    assert_eq!(ok["data"]["updateTenantConfig"]["version"], 1, "{ok}");
    let keys = s
        .gql(&admin, "{ configKeys { key jsonSchema } }", json!({}))
        .await;
    let k = keys["data"]["configKeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "client.policy")
        .cloned()
        .unwrap();
    assert_eq!(k["jsonSchema"], schema);
}
