//! Disaster recovery of the directory, with the real `global` and `cell`
//! binaries on PostgreSQL and Redis: the global tier's database is lost
//! (a new global process starts on an empty database), the cells register
//! with it again, and every tenant's directory row comes back from the
//! cells' records with its cell, status, version and plan. An explicit
//! `rebuildDirectory` then finds nothing left to do.

use std::time::Duration;

use e2e::backing;
use e2e::process::{free_port, gql, spawn_cell, spawn_global, terminate};
use e2e::stack::{CREATE, SECRET};
use serde_json::{Value, json};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};

const LIST: &str =
    "{ tenants(first: 100) { edges { node { id slug region status version plan cell { id } } } } }";

fn listing(v: &Value) -> Vec<Value> {
    let mut rows: Vec<Value> = v["data"]["tenants"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_directory_is_rebuilt_from_the_cells() {
    let mut dbs = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..4 {
        let (name, url) = backing::create_database().await;
        dbs.push(name);
        urls.push(url);
    }
    let prefix = backing::redis_prefix().await;
    let gport = free_port();
    let global_url = format!("http://127.0.0.1:{gport}");
    let keys = Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap();
    let admin = keys
        .mint("dr", vec![Role::PlatformAdmin], vec![], None, 600)
        .unwrap();
    let q = |query: &'static str, vars: Value| {
        let (url, admin) = (global_url.clone(), admin.clone());
        async move { gql(&url, &admin, query, vars).await }
    };

    let global = spawn_global(gport, &urls[0], &prefix, &[]).await;
    let mut cells = Vec::new();
    for (i, (id, region)) in [("us-east-1-a", "us-east-1"), ("eu-west-1-a", "eu-west-1")]
        .iter()
        .enumerate()
    {
        cells.push(spawn_cell(free_port(), id, region, &urls[i + 1], &prefix, &global_url).await);
    }
    let wait_cells = || async {
        for _ in 0..200 {
            let v = q("{ cells { status } }", json!({})).await;
            if v["data"]["cells"]
                .as_array()
                .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["status"] == "UP"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cells never registered");
    };
    wait_cells().await;
    let mut ids = Vec::new();
    for (slug, region) in [
        ("dr-us-1", "us-east-1"),
        ("dr-us-2", "us-east-1"),
        ("dr-eu-1", "eu-west-1"),
        ("dr-eu-2", "eu-west-1"),
    ] {
        let v = q(
            CREATE,
            json!({ "input": { "idempotencyKey": slug, "slug": slug, "name": slug, "region": region, "plan": "free" } }),
        )
        .await;
        assert_eq!(v["data"]["createTenant"]["status"], "ACTIVE", "{v}");
        ids.push((
            v["data"]["createTenant"]["id"].as_str().unwrap().to_owned(),
            v["data"]["createTenant"]["version"].as_i64().unwrap(),
        ));
    }
    // History worth keeping: a suspension and a plan change.
    let s = q(
        "mutation($i: ChangeTenantStatusInput!) { suspendTenant(input: $i) { status } }",
        json!({ "i": { "tenantId": ids[1].0, "expectedVersion": ids[1].1, "idempotencyKey": "dr-suspend" } }),
    )
    .await;
    assert_eq!(s["data"]["suspendTenant"]["status"], "SUSPENDED", "{s}");
    let p = q(
        "mutation($i: ChangePlanInput!) { changePlan(input: $i) { plan } }",
        json!({ "i": { "tenantId": ids[2].0, "plan": "pro", "expectedVersion": 1, "idempotencyKey": "dr-plan" } }),
    )
    .await;
    assert_eq!(p["data"]["changePlan"]["plan"], "pro", "{p}");
    // The suspension reaches the home cell (its record carries the version).
    let before = listing(&q(LIST, json!({})).await);
    assert_eq!(before.len(), 4);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The global database is lost: a new global tier on an empty one.
    terminate(global);
    let global = spawn_global(gport, &urls[3], &prefix, &[]).await;
    let empty = listing(&q(LIST, json!({})).await);
    assert!(
        empty.len() < 4,
        "the new database starts without the tenants"
    );
    let mut after = Vec::new();
    for _ in 0..300 {
        after = listing(&q(LIST, json!({})).await);
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        after, before,
        "every row, status, version and plan came back"
    );

    let r = q(
        "mutation { rebuildDirectory { restored updated complete cells { cellId seen error } } }",
        json!({}),
    )
    .await;
    let r = &r["data"]["rebuildDirectory"];
    assert_eq!(r["complete"], true, "{r}");
    assert_eq!(
        (r["restored"].as_i64(), r["updated"].as_i64()),
        (Some(0), Some(0)),
        "{r}"
    );
    let seen: i64 = r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seen"].as_i64().unwrap())
        .sum();
    assert_eq!(seen, 4, "{r}");
    // Not for everyone.
    let sre = keys
        .mint("sre", vec![Role::Sre], vec![], None, 600)
        .unwrap();
    let denied = gql(
        &global_url,
        &sre,
        "mutation { rebuildDirectory { complete } }",
        json!({}),
    )
    .await;
    assert_eq!(
        denied["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{denied}"
    );

    for c in cells {
        terminate(c);
    }
    terminate(global);
    backing::drop_databases(&dbs).await;
}
