//! The metric catalog and tenant quotas through the global API: plan
//! defaults, overrides that are versioned, idempotent, audited and routed
//! to the home cell, and bad input that changes nothing.

use e2e::quota::{CLEAR, QUOTAS, SET, define, wait_synced};
use e2e::stack::code;
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::auth::Role;
use shared::ids::TenantId;

fn find<'a>(quotas: &'a Value, metric: &str) -> &'a Value {
    quotas["data"]["quotas"]
        .as_array()
        .unwrap_or_else(|| panic!("no quotas: {quotas}"))
        .iter()
        .find(|q| q["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} in {quotas}"))
}

#[tokio::test]
async fn metrics_reach_every_cell_and_quotas_come_from_the_plan_or_an_override() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let m = define(&s, "api.requests", "RATE", "OPEN").await;
    assert_eq!(m["version"], 1);
    assert_eq!(m["failMode"], "OPEN");
    // The same definition again is a no-op.
    assert_eq!(
        define(&s, "api.requests", "RATE", "OPEN").await["version"],
        1
    );
    define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    define(&s, "seats", "GAUGE", "CLOSED").await;
    let list = s.gql(&admin, "{ metrics { name kind } }", json!({})).await;
    assert_eq!(
        list["data"]["metrics"].as_array().unwrap().len(),
        3,
        "{list}"
    );
    // Changing a metric needs its version; its kind never changes.
    let stale = s
        .gql(&admin, e2e::quota::DEFINE, json!({ "i": { "name": "seats", "kind": "GAUGE", "unit": "seat", "description": "x" } }))
        .await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let rekind = s
        .gql(&admin, e2e::quota::DEFINE, json!({ "i": { "name": "seats", "kind": "RATE", "unit": "unit", "expectedVersion": 1 } }))
        .await;
    assert_eq!(code(&rekind), Some("BAD_USER_INPUT"), "{rekind}");
    wait_synced(&s, &["api.requests", "api.calls", "seats"]).await;

    let t = s.create_tenant("quota-acme", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let q = s.gql(&admin, QUOTAS, json!({ "t": id })).await;
    let calls = find(&q, "api.calls");
    assert_eq!(calls["source"], "PLAN");
    assert_eq!(calls["limit"], 1_000_000, "pro plan default: {q}");
    assert_eq!(calls["period"], "MONTH");
    assert_eq!(calls["used"], 0);
    assert!(calls["resetAt"].is_string());
    assert_eq!(find(&q, "api.requests")["burst"], 200);

    let input = json!({ "tenantId": id, "metric": "api.calls", "limit": 5, "period": "DAY",
        "enforcement": "HARD", "expectedVersion": 0, "idempotencyKey": "set-1" });
    let set = s.gql(&admin, SET, json!({ "i": input })).await;
    assert_eq!(
        set["data"]["setQuota"],
        json!({ "metric": "api.calls", "version": 1, "source": "OVERRIDE" }),
        "{set}"
    );
    // A retry answers the same and changes nothing; the key with other input is a CONFLICT.
    let retry = s.gql(&admin, SET, json!({ "i": input })).await;
    assert_eq!(retry["data"]["setQuota"]["version"], 1, "{retry}");
    let mut other = input.clone();
    other["limit"] = json!(6);
    assert_eq!(
        code(&s.gql(&admin, SET, json!({ "i": other })).await),
        Some("CONFLICT")
    );
    // A stale version is a CONFLICT.
    let mut stale = other.clone();
    stale["idempotencyKey"] = json!("set-2");
    assert_eq!(
        code(&s.gql(&admin, SET, json!({ "i": stale })).await),
        Some("CONFLICT")
    );
    let q = s.gql(&admin, QUOTAS, json!({ "t": id })).await;
    let calls = find(&q, "api.calls");
    assert_eq!(
        (calls["limit"].as_i64(), calls["period"].as_str()),
        (Some(5), Some("DAY"))
    );
    assert_eq!(calls["source"], "OVERRIDE");
    assert_eq!(calls["version"], 1);

    let clear = s
        .gql(&admin, CLEAR, json!({ "i": { "tenantId": id, "metric": "api.calls", "expectedVersion": 1, "idempotencyKey": "clear-1" } }))
        .await;
    assert_eq!(
        clear["data"]["clearQuota"],
        json!({ "metric": "api.calls", "version": 2, "source": "PLAN" }),
        "{clear}"
    );
    let q = s.gql(&admin, QUOTAS, json!({ "t": id })).await;
    assert_eq!(find(&q, "api.calls")["limit"], 1_000_000);
    assert_eq!(find(&q, "api.calls")["version"], 2);

    // Audited at the global tier with the actor, and in the home cell.
    let log = shared::audit::list(
        &s.global.state.db,
        &shared::audit::Filter {
            action: Some("setQuota".into()),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert_eq!(log.len(), 4, "two accepted (one a retry), two refused");
    assert!(log.iter().all(|e| e.actor == "admin"));
    assert_eq!(log.iter().filter(|e| e.outcome == "REFUSED").count(), 2);
    let cell_log = shared::audit::list(
        &s.cell("eu-west-1-a").state.db,
        &shared::audit::Filter {
            action: Some("clearQuota".into()),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert_eq!(cell_log.len(), 1);
    assert_eq!(cell_log[0].target.as_deref(), Some("admin"));

    // A tenant viewer sees its own quotas and cannot change them.
    let tid: TenantId = id.parse().unwrap();
    let viewer = s.token("viewer", &[Role::TenantViewer], &[tid], None);
    assert!(
        s.gql(&viewer, QUOTAS, json!({ "t": id }))
            .await
            .get("errors")
            .is_none()
    );
    let mut denied = input.clone();
    denied["idempotencyKey"] = json!("viewer-1");
    denied["expectedVersion"] = json!(2);
    assert_eq!(
        code(&s.gql(&viewer, SET, json!({ "i": denied })).await),
        Some("FORBIDDEN")
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_quota_input_gets_a_clear_error_and_changes_nothing() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    define(&s, "api.requests", "RATE", "CLOSED").await;
    define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    wait_synced(&s, &["api.requests", "api.calls"]).await;
    let t = s.create_tenant("quota-bad", "us-east-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let base = json!({ "tenantId": id, "metric": "api.requests", "limit": 10,
        "enforcement": "HARD", "expectedVersion": 0, "idempotencyKey": "k" });
    let cases = [
        (json!({ "period": "DAY" }), "input.period"),
        (json!({ "limit": -1 }), "input.limit"),
        (json!({ "metric": "no.such.metric" }), "input.metric"),
        (json!({ "metric": "api.calls" }), "input.period"),
        (json!({ "burst": 0 }), "input.burst"),
        (json!({ "tenantId": "not-a-uuid" }), "tenantId"),
    ];
    for (patch, field) in cases {
        let mut i = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            i[k] = v.clone();
        }
        let v = s.gql(&admin, SET, json!({ "i": i })).await;
        assert_eq!(code(&v), Some("BAD_USER_INPUT"), "{patch}: {v}");
        assert_eq!(
            v.pointer("/errors/0/extensions/field")
                .and_then(|f| f.as_str()),
            Some(field),
            "{v}"
        );
    }
    let mut unknown = base.clone();
    unknown["tenantId"] = json!(TenantId::new().to_string());
    assert_eq!(
        code(&s.gql(&admin, SET, json!({ "i": unknown })).await),
        Some("NOT_FOUND")
    );

    // A DELETED tenant's quotas cannot change.
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let cell = s.cell("us-east-1-a");
    let row = cell::entity::tenant::Entity::find_by_id(id.parse::<uuid::Uuid>().unwrap())
        .one(&cell.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut am: cell::entity::tenant::ActiveModel = row.into();
    am.status = Set("DELETED".into());
    am.update(&cell.state.db).await.unwrap();
    let v = s.gql(&admin, SET, json!({ "i": base })).await;
    assert_eq!(code(&v), Some("BAD_USER_INPUT"), "{v}");
    assert!(e2e::stack::message(&v).contains("DELETED"), "{v}");
    let q = s.gql(&admin, QUOTAS, json!({ "t": id })).await;
    assert_eq!(
        find(&q, "api.requests")["source"],
        "PLAN",
        "nothing changed: {q}"
    );
    s.stop().await;
}
