//! Rollout cohorts by plan, judged exactly from the directory's plan
//! column, and exposure figures that converge as cells re-acknowledge when
//! their tenants change (not only when the plan changes).

use std::time::Duration;

use e2e::flags::*;
use e2e::stack::code;
use e2e::{Backend, Stack};
use serde_json::{Value, json};

fn start(stages: Value, idem: &str) -> Value {
    json!({ "i": { "flagKey": "by-plan", "environment": "prod", "variant": "on", "stages": stages,
        "ackDeadlineSeconds": 20, "idempotencyKey": idem } })
}

async fn change_plan(s: &Stack, id: &str, plan: &str) {
    let read = s
        .gql(
            &s.admin(),
            "query($id: ID!) { tenant(id: $id) { planDetails { version } } }",
            json!({ "id": id }),
        )
        .await;
    let v = &read["data"]["tenant"]["planDetails"]["version"];
    let changed = s
        .gql(
            &s.admin(),
            "mutation($i: ChangePlanInput!) { changePlan(input: $i) { plan } }",
            json!({ "i": { "tenantId": id, "plan": plan, "expectedVersion": v, "idempotencyKey": format!("plan-{id}-{plan}") } }),
        )
        .await;
    assert_eq!(changed["data"]["changePlan"]["plan"], plan, "{changed}");
}

/// Polls the rollout until `done` holds (20 s).
async fn until(s: &Stack, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last =
            s.gql(&s.admin(), &get_rollout(), json!({ "id": id })).await["data"]["rollout"].clone();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rollout never {what}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_cohorts_are_exact_and_exposure_converges_as_tenants_change() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let eu = s.create_tenant("cohort-eu", "eu-west-1").await;
    let us = s.create_tenant("cohort-us", "us-east-1").await;
    let (eu_id, us_id) = (eu["id"].as_str().unwrap(), us["id"].as_str().unwrap());
    boolean_flag(&s, "by-plan").await;
    let enterprise =
        json!([{ "name": "ent", "cohort": { "plans": ["enterprise"] }, "soakSeconds": 3600 }]);

    // No enterprise tenant yet: the cohort matches nobody and is refused.
    let refused = s
        .gql(&admin, &start_rollout(), start(enterprise.clone(), "ent-1"))
        .await;
    assert_eq!(code(&refused), Some("BAD_USER_INPUT"), "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("matches no tenant"),
        "{refused}"
    );
    // The directory learns the plan from changePlan: now it matches one.
    change_plan(&s, eu_id, "enterprise").await;
    let started = s
        .gql(&admin, &start_rollout(), start(enterprise, "ent-2"))
        .await;
    assert_eq!(
        started["data"]["startRollout"]["state"], "RUNNING",
        "{started}"
    );
    let id = started["data"]["startRollout"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let eu_cell = (s.cell("eu-west-1-a").url(), data_plane(&s, "eu-west-1-a"));
    let us_cell = (s.cell("us-east-1-a").url(), data_plane(&s, "us-east-1-a"));
    wait_variant(&eu_cell.0, &eu_cell.1, eu_id, "by-plan", "prod", "on").await;
    let (_, e) = evaluate(&us_cell.0, &us_cell.1, us_id, "by-plan", "prod").await;
    assert_eq!(e["variant"], "off", "{e}");
    until(&s, &id, "counted one exposed tenant", |r| {
        r["exposedTenants"] == 1 && r["cells"].as_array().is_some_and(|c| c.len() == 2)
    })
    .await;

    // The rollout's plan does not change, its cohort's members do: cells
    // acknowledge again and the global figures follow.
    change_plan(&s, us_id, "enterprise").await;
    wait_variant(&us_cell.0, &us_cell.1, us_id, "by-plan", "prod", "on").await;
    let more = s.create_tenant("cohort-eu-2", "eu-west-1").await;
    change_plan(&s, more["id"].as_str().unwrap(), "enterprise").await;
    let r = until(&s, &id, "counted three exposed tenants", |r| {
        r["exposedTenants"] == 3
    })
    .await;
    let cells: Vec<(String, i64, i64)> = r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["exposedTenants"].as_i64().unwrap(),
                c["tenants"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cells,
        [
            ("eu-west-1-a".to_owned(), 2, 2),
            ("us-east-1-a".to_owned(), 1, 1)
        ],
        "{r}"
    );
    // History records changes of exposure, not every re-acknowledgement.
    let acks = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "CELL_ACKNOWLEDGED")
        .count();
    assert!(acks <= 8, "{r}");
    assert_eq!(r["state"], "RUNNING", "{r}");
    s.stop().await;
}
