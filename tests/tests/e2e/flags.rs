//! Feature flags end to end: defined at the global tier (versioned,
//! idempotent, audited), carried to every cell, evaluated there through the
//! data-plane hooks; the kill switch; bad input refused without changes.

use e2e::flags::*;
use e2e::stack::code;
use e2e::{Backend, Stack};
use serde_json::{Value, json};

fn targeting(key: &str, expected: i64, idem: &str, rules: Value) -> Value {
    json!({ "i": { "key": key, "environment": "prod", "enabled": true, "rules": rules,
        "defaultVariant": "off", "expectedVersion": expected, "idempotencyKey": idem } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flags_are_defined_globally_and_evaluated_in_every_cell() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let eu = s.create_tenant("flag-eu-a", "eu-west-1").await;
    let us = s.create_tenant("flag-us-a", "us-east-1").await;
    let (eu_id, us_id) = (eu["id"].as_str().unwrap(), us["id"].as_str().unwrap());
    let eu_cell = s.cell("eu-west-1-a").url();
    let us_cell = s.cell("us-east-1-a").url();
    let (eu_tok, us_tok) = (data_plane(&s, "eu-west-1-a"), data_plane(&s, "us-east-1-a"));

    let f = boolean_flag(&s, "new-checkout").await;
    assert_eq!(f["version"], 1);
    assert_eq!(f["salt"], "new-checkout");
    assert_eq!(f["environments"], json!([]));
    // A retry with the same key and input is the same flag; other input is a conflict.
    assert_eq!(boolean_flag(&s, "new-checkout").await["version"], 1);
    let other = s
        .gql(
            &admin,
            &create_flag(),
            json!({ "i": { "key": "other", "kind": "BOOLEAN",
            "variants": [{ "name": "on", "value": true }], "offVariant": "on",
            "idempotencyKey": "create-new-checkout" } }),
        )
        .await;
    assert_eq!(code(&other), Some("CONFLICT"), "{other}");

    // Off by default in every cell.
    let off = wait_variant(&eu_cell, &eu_tok, eu_id, "new-checkout", "prod", "off").await;
    assert_eq!(
        off,
        json!({ "flagKey": "new-checkout", "value": false, "variant": "off", "reason": "DISABLED", "errorCode": null })
    );

    // Targeting: the EU tenant by list, US tenants by region constraint.
    let rules = json!([
        { "variant": "on", "tenantIds": [eu_id] },
        { "variant": "on", "constraints": [{ "attribute": "region", "operator": "PREFIX", "values": ["us-"] }] }
    ]);
    let stale = s
        .gql(
            &admin,
            &set_targeting(),
            targeting("new-checkout", 7, "t1", rules.clone()),
        )
        .await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let v2 = s
        .gql(
            &admin,
            &set_targeting(),
            targeting("new-checkout", 1, "t1", rules.clone()),
        )
        .await;
    assert_eq!(v2["data"]["setFlagTargeting"]["version"], 2, "{v2}");
    // The same request again (a retry) returns the flag without a new version.
    let retry = s
        .gql(
            &admin,
            &set_targeting(),
            targeting("new-checkout", 1, "t1", rules),
        )
        .await;
    assert_eq!(retry["data"]["setFlagTargeting"]["version"], 2, "{retry}");

    let on = wait_variant(&eu_cell, &eu_tok, eu_id, "new-checkout", "prod", "on").await;
    assert_eq!(on["reason"], "TARGETING_MATCH");
    let on = wait_variant(&us_cell, &us_tok, us_id, "new-checkout", "prod", "on").await;
    assert_eq!(on["value"], true);
    // Another environment is still off.
    let (_, dev) = evaluate(&us_cell, &us_tok, us_id, "new-checkout", "dev").await;
    assert_eq!(dev["reason"], "DISABLED");
    let (_, missing) = evaluate(&us_cell, &us_tok, us_id, "no-such-flag", "prod").await;
    assert_eq!(
        (missing["reason"].as_str(), missing["errorCode"].as_str()),
        (Some("ERROR"), Some("FLAG_NOT_FOUND"))
    );

    // Every flag of a tenant.
    let all: Value = reqwest::Client::new()
        .get(format!(
            "{us_cell}/v1/tenants/{us_id}/flags?environment=prod"
        ))
        .bearer_auth(&us_tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["flags"][0]["flagKey"], "new-checkout", "{all}");
    assert_eq!(all["flags"][0]["variant"], "on");

    // Data-plane auth: a token of another cell, none, and a tenant of another cell.
    assert_eq!(
        evaluate(&us_cell, &eu_tok, us_id, "new-checkout", "prod")
            .await
            .0,
        403
    );
    assert_eq!(
        evaluate(&us_cell, "nope", us_id, "new-checkout", "prod")
            .await
            .0,
        401
    );
    let (status, body) = evaluate(&us_cell, &us_tok, eu_id, "new-checkout", "prod").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, body) = evaluate(&us_cell, &us_tok, us_id, "new-checkout", "Not_An_Env").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BAD_USER_INPUT"))
    );

    // The kill switch reaches every cell; killing again changes nothing.
    let killed = s
        .gql(
            &admin,
            &kill_flag(),
            json!({ "k": "new-checkout", "e": "prod" }),
        )
        .await;
    assert_eq!(killed["data"]["killFlag"]["version"], 3, "{killed}");
    assert_eq!(
        killed["data"]["killFlag"]["environments"][0]["killed"],
        true
    );
    let again = s
        .gql(
            &admin,
            &kill_flag(),
            json!({ "k": "new-checkout", "e": "prod" }),
        )
        .await;
    assert_eq!(again["data"]["killFlag"]["version"], 3);
    for (url, tok, id) in [(&eu_cell, &eu_tok, eu_id), (&us_cell, &us_tok, us_id)] {
        let e = wait_variant(url, tok, id, "new-checkout", "prod", "off").await;
        assert_eq!(e["reason"], "DISABLED");
    }

    // Every change is audited with its actor.
    let log = s
        .gql(
            &admin,
            "{ auditLog(filter: {action: \"killFlag\", source: \"global\"}) { nodes { actor target outcome } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        log["data"]["auditLog"]["nodes"][0],
        json!({ "actor": "admin", "target": "new-checkout", "outcome": "OK" }),
        "{log}"
    );
    let log = s
        .gql(
            &admin,
            "{ auditLog(filter: {action: \"setFlagTargeting\", source: \"global\"}) { nodes { outcome } } }",
            json!({}),
        )
        .await;
    let outcomes: Vec<&str> = log["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"OK") && outcomes.contains(&"REFUSED"),
        "{log}"
    );

    // Only platform-admin writes flags; data-plane tokens do not reach the global API.
    let sre = s.token("sre", &[shared::auth::Role::Sre], &[], None);
    let refused = s
        .gql(
            &sre,
            &set_targeting(),
            targeting("new-checkout", 3, "t2", json!([])),
        )
        .await;
    assert_eq!(code(&refused), Some("FORBIDDEN"));
    let refused = s.gql(&eu_tok, "{ flags { key } }", json!({})).await;
    assert_eq!(code(&refused), Some("FORBIDDEN"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_and_changes_nothing() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    boolean_flag(&s, "base").await;
    let create = |i: Value| {
        let mut i = i;
        i["idempotencyKey"] = json!(uuid::Uuid::new_v4().to_string());
        json!({ "i": i })
    };
    let cases = [
        json!({ "key": "Bad Key", "kind": "BOOLEAN", "variants": [{ "name": "on", "value": true }], "offVariant": "on" }),
        json!({ "key": "k", "kind": "BOOLEAN", "variants": [{ "name": "on", "value": "yes" }], "offVariant": "on" }),
        json!({ "key": "k", "kind": "BOOLEAN", "variants": [{ "name": "on", "value": true }], "offVariant": "nope" }),
        json!({ "key": "k", "kind": "JSON", "variants": [{ "name": "on", "value": "{not json" }], "offVariant": "on" }),
        json!({ "key": "k", "kind": "STRING", "variants": [], "offVariant": "on" }),
    ];
    for c in cases {
        let body = s.gql(&admin, &create_flag(), create(c.clone())).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{c}: {body}");
    }
    let bad_rules = [
        json!([{ "variant": "nope" }]),
        json!([{ "variant": "on", "percentage": 100.5 }]),
        json!([{ "variant": "on", "percentage": -1 }]),
        json!([{ "variant": "on", "constraints": [{ "attribute": "version", "operator": "SEMVER", "values": [">=1.2.x.y"] }] }]),
        json!([{ "variant": "on", "constraints": [{ "attribute": "version", "operator": "GT", "values": ["ten"] }] }]),
        json!([{ "variant": "on", "prerequisites": [{ "flagKey": "missing", "variant": "on" }] }]),
        json!([{ "variant": "on", "prerequisites": [{ "flagKey": "base", "variant": "maybe" }] }]),
    ];
    for (i, rules) in bad_rules.iter().enumerate() {
        let body = s
            .gql(
                &admin,
                &set_targeting(),
                targeting("base", 1, &format!("bad-{i}"), rules.clone()),
            )
            .await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{rules}: {body}");
    }
    let env = s.gql(&admin, &set_targeting(), json!({ "i": { "key": "base", "environment": "Prod!", "enabled": true, "expectedVersion": 1, "idempotencyKey": "env" } })).await;
    assert_eq!(code(&env), Some("BAD_USER_INPUT"));
    let unknown = s
        .gql(
            &admin,
            &set_targeting(),
            targeting("ghost", 1, "ghost", json!([])),
        )
        .await;
    assert_eq!(code(&unknown), Some("NOT_FOUND"));
    let unknown = s
        .gql(&admin, &kill_flag(), json!({ "k": "ghost", "e": "prod" }))
        .await;
    assert_eq!(code(&unknown), Some("NOT_FOUND"));

    // A prerequisite cycle: child needs base, then base needs child.
    boolean_flag(&s, "child").await;
    let needs = |flag: &str| json!([{ "variant": "on", "prerequisites": [{ "flagKey": flag, "variant": "on" }] }]);
    let ok = s
        .gql(
            &admin,
            &set_targeting(),
            targeting("child", 1, "c1", needs("base")),
        )
        .await;
    assert_eq!(ok["data"]["setFlagTargeting"]["version"], 2, "{ok}");
    let cycle = s
        .gql(
            &admin,
            &set_targeting(),
            targeting("base", 1, "cycle", needs("child")),
        )
        .await;
    assert_eq!(code(&cycle), Some("BAD_USER_INPUT"), "{cycle}");
    assert!(cycle.to_string().contains("cycle"), "{cycle}");

    // Nothing above changed `base`.
    let base = s
        .gql(
            &admin,
            &format!("{{ flag(key: \"base\") {{ {FLAG_FIELDS} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(base["data"]["flag"]["version"], 1, "{base}");
    assert_eq!(base["data"]["flag"]["environments"], json!([]));
    let all = s.gql(&admin, "{ flags { key } }", json!({})).await;
    assert_eq!(all["data"]["flags"].as_array().unwrap().len(), 2, "{all}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_flags_and_archiving() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    boolean_flag(&s, "always-off").await;
    boolean_flag(&s, "mixed").await;
    boolean_flag(&s, "everyone-on").await;
    let split = json!([{ "variant": "on", "percentage": 50 }]);
    s.gql(&admin, &set_targeting(), targeting("mixed", 1, "m", split))
        .await;
    // Enabled with one rule for everyone and the default off still can serve two variants;
    // a default of `on` with no rules serves one.
    let one = json!({ "i": { "key": "everyone-on", "environment": "prod", "enabled": true, "rules": [],
        "defaultVariant": "on", "expectedVersion": 1, "idempotencyKey": "e" } });
    s.gql(&admin, &set_targeting(), one).await;
    let stale = s
        .gql(
            &admin,
            "{ flags(stale: true, staleDays: 0) { key } }",
            json!({}),
        )
        .await;
    let keys: Vec<&str> = stale["data"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["always-off"], "{stale}");
    // Unchanged for 30 days: none yet.
    let recent = s
        .gql(&admin, "{ flags(stale: true) { key } }", json!({}))
        .await;
    assert_eq!(recent["data"]["flags"], json!([]));

    let arch =
        "mutation($i: ArchiveFlagInput!) { archiveFlag(input: $i) { key archived version } }";
    let a = s
        .gql(
            &admin,
            arch,
            json!({ "i": { "key": "mixed", "expectedVersion": 1, "idempotencyKey": "a" } }),
        )
        .await;
    assert_eq!(code(&a), Some("CONFLICT"), "{a}");
    let a = s
        .gql(
            &admin,
            arch,
            json!({ "i": { "key": "mixed", "expectedVersion": 2, "idempotencyKey": "a" } }),
        )
        .await;
    assert_eq!(
        a["data"]["archiveFlag"],
        json!({ "key": "mixed", "archived": true, "version": 3 }),
        "{a}"
    );
    let live = s
        .gql(
            &admin,
            "{ flags(includeArchived: false) { key } }",
            json!({}),
        )
        .await;
    assert_eq!(live["data"]["flags"].as_array().unwrap().len(), 2, "{live}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_flag_is_versioned_and_checked_and_anti_entropy_sees_every_flag() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    boolean_flag(&s, "upd").await;
    let on = json!([{ "variant": "on" }]);
    s.gql(&admin, &set_targeting(), targeting("upd", 1, "u-t", on))
        .await;
    let update =
        format!("mutation($i: UpdateFlagInput!) {{ updateFlag(input: $i) {{ {FLAG_FIELDS} }} }}");
    let change = |expected: i64, idem: &str, variants: Value| {
        json!({ "i": { "key": "upd", "description": "new words", "variants": variants,
            "expectedVersion": expected, "idempotencyKey": idem } })
    };
    let both = json!([{ "name": "on", "value": true }, { "name": "off", "value": false }]);
    let stale = s.gql(&admin, &update, change(1, "u1", both.clone())).await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    // Dropping a variant the targeting still serves is refused.
    let dropped = s
        .gql(
            &admin,
            &update,
            change(2, "u2", json!([{ "name": "off", "value": false }])),
        )
        .await;
    assert_eq!(code(&dropped), Some("BAD_USER_INPUT"), "{dropped}");
    let ok = s.gql(&admin, &update, change(2, "u3", both.clone())).await;
    assert_eq!(ok["data"]["updateFlag"]["version"], 3, "{ok}");
    assert_eq!(ok["data"]["updateFlag"]["description"], "new words");
    let retry = s.gql(&admin, &update, change(2, "u3", both)).await;
    assert_eq!(
        retry["data"]["updateFlag"]["version"], 3,
        "a retry is not a new version: {retry}"
    );

    // What the lead's repair pass compares, and re-sends.
    let st = &s.global.state;
    let versions = global::service::flags::entity_versions(st).await.unwrap();
    assert_eq!(versions, vec![("flag:upd".to_owned(), 3)]);
    assert!(
        global::service::flags::republish(st, "flag:upd")
            .await
            .unwrap()
    );
    assert!(
        !global::service::flags::republish(st, "flag:ghost")
            .await
            .unwrap()
    );
    assert!(
        global::service::rollouts::entity_versions(st)
            .await
            .unwrap()
            .is_empty()
    );
    s.stop().await;
}

/// The tenant version flags target is the directory's: a status change at
/// the global tier reaches the cell's evaluation with its new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tenant_version_flags_see_follows_the_directory() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let t = s.create_tenant("versioned", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["version"], 1, "{t}");
    boolean_flag(&s, "v-gated").await;
    let rules = json!([{ "variant": "on", "constraints": [{ "attribute": "version", "operator": "SEMVER", "values": ["=3"] }] }]);
    let set = s
        .gql(
            &admin,
            &set_targeting(),
            targeting("v-gated", 1, "vg", rules),
        )
        .await;
    assert!(set.get("errors").is_none(), "{set}");
    let (cell, tok) = (s.cell("eu-west-1-a").url(), data_plane(&s, "eu-west-1-a"));
    wait_variant(&cell, &tok, &id, "v-gated", "prod", "off").await;
    for (m, expected) in [("suspendTenant", 1), ("resumeTenant", 2)] {
        let q =
            format!("mutation($i: ChangeTenantStatusInput!) {{ {m}(input: $i) {{ version }} }}");
        let r = s
            .gql(
                &admin,
                &q,
                json!({ "i": { "tenantId": id, "expectedVersion": expected, "idempotencyKey": format!("{m}-{expected}") } }),
            )
            .await;
        assert_eq!(r["data"][m]["version"], expected + 1, "{r}");
    }
    // Version 3 in the directory, so in the cell: the rule now matches.
    let on = wait_variant(&cell, &tok, &id, "v-gated", "prod", "on").await;
    assert_eq!(on["reason"], "TARGETING_MATCH", "{on}");
    s.stop().await;
}

/// Provisioning allocates the tenant's flag state in its cell: the moment
/// createTenant answers ACTIVE, the cell evaluates flags for it (no wait).
#[tokio::test]
async fn a_freshly_provisioned_tenant_evaluates_flags_at_once() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    let (cell, tok) = (s.cell("eu-west-1-a").url(), data_plane(&s, "eu-west-1-a"));
    let first = s.create_tenant("flag-first", "eu-west-1").await;
    boolean_flag(&s, "for-pro").await;
    let rules = json!([{ "variant": "on", "constraints": [{ "attribute": "plan", "operator": "IN", "values": ["pro"] }] }]);
    let set = s
        .gql(
            &admin,
            &set_targeting(),
            targeting("for-pro", 1, "fp", rules),
        )
        .await;
    assert!(set.get("errors").is_none(), "{set}");
    // The cell has the targeting (an existing tenant is served by it) ...
    wait_variant(
        &cell,
        &tok,
        first["id"].as_str().unwrap(),
        "for-pro",
        "prod",
        "on",
    )
    .await;
    // ... and each new tenant is evaluated on its first request.
    for i in 0..3 {
        let t = s.create_tenant(&format!("flag-new-{i}"), "eu-west-1").await;
        assert_eq!(t["status"], "ACTIVE", "{t}");
        let (status, e) = evaluate(&cell, &tok, t["id"].as_str().unwrap(), "for-pro", "prod").await;
        assert_eq!(status, 200, "{e}");
        assert_eq!(e["variant"], "on", "{e}");
        assert_eq!(e["reason"], "TARGETING_MATCH", "{e}");
    }
    s.stop().await;
}
