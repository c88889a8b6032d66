//! "Which tenants are impacted?" when a cell is gone, with the real
//! `global` and `cell` binaries on PostgreSQL and Redis: a cell killed
//! with SIGKILL, and a cell frozen with SIGSTOP (it accepts connections
//! and never answers). The answer still comes, with `complete: false`, the
//! cell named, its tenants listed from the directory as "cell
//! unreachable", and exact results from the other cells.

use std::process::Child;
use std::time::Duration;

use e2e::backing;
use e2e::process::{free_port, gql, spawn_cell, spawn_global, terminate};
use e2e::stack::{CREATE, SECRET};
use serde_json::{Value, json};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};

const IMPACT: &str = "query($s: ImpactScope!) { impactedTenants(scope: $s, first: 1000) { totalCount complete unreachableCells byCell { cellId count } tenants { edges { node { tenant { id } cell { id } reasons } } } } }";

struct Env {
    dbs: Vec<String>,
    urls: Vec<String>,
    prefix: String,
    gport: u16,
    ports: [u16; 3],
    admin: String,
}

const CELLS: [(&str, &str); 3] = [
    ("us-east-1-a", "us-east-1"),
    ("us-east-1-b", "us-east-1"),
    ("eu-west-1-a", "eu-west-1"),
];

impl Env {
    async fn new() -> Env {
        let mut dbs = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..4 {
            let (name, url) = backing::create_database().await;
            dbs.push(name);
            urls.push(url);
        }
        let keys = Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap();
        Env {
            dbs,
            urls,
            prefix: backing::redis_prefix().await,
            gport: free_port(),
            ports: [free_port(), free_port(), free_port()],
            admin: keys
                .mint(
                    "oncall",
                    vec![Role::Sre, Role::PlatformAdmin],
                    vec![],
                    None,
                    600,
                )
                .unwrap(),
        }
    }

    fn global_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gport)
    }

    async fn start(&self) -> (Child, Vec<Child>) {
        let global = spawn_global(
            self.gport,
            &self.urls[0],
            &self.prefix,
            &[("TENANT_GLOBAL_IMPACT_TIMEOUT_MS", "700")],
        )
        .await;
        let mut cells = Vec::new();
        for (i, (id, region)) in CELLS.iter().enumerate() {
            cells.push(
                spawn_cell(
                    self.ports[i],
                    id,
                    region,
                    &self.urls[i + 1],
                    &self.prefix,
                    &self.global_url(),
                )
                .await,
            );
        }
        for _ in 0..100 {
            let v = self.gql("{ cells { status } }", json!({})).await;
            if v["data"]["cells"]
                .as_array()
                .is_some_and(|c| c.len() == 3 && c.iter().all(|c| c["status"] == "UP"))
            {
                return (global, cells);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cells never registered");
    }

    async fn gql(&self, q: &str, vars: Value) -> Value {
        gql(&self.global_url(), &self.admin, q, vars).await
    }

    async fn create(&self, slug: &str, region: &str) -> (String, String) {
        let v = self
            .gql(
                CREATE,
                json!({ "input": { "idempotencyKey": slug, "slug": slug, "name": slug, "region": region, "plan": "pro" } }),
            )
            .await;
        assert_eq!(v["data"]["createTenant"]["status"], "ACTIVE", "{v}");
        let id = v["data"]["createTenant"]["id"].as_str().unwrap().to_owned();
        let c = self
            .gql(
                "query($id: ID!) { tenant(id: $id) { cell { id } } }",
                json!({ "id": id }),
            )
            .await;
        (
            id,
            c["data"]["tenant"]["cell"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }
}

/// `tenant id → (cell, reasons)` of an answer.
fn rows(v: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<_> = v["data"]["impactedTenants"]["tenants"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| {
            let n = &e["node"];
            (
                n["tenant"]["id"].as_str().unwrap().to_owned(),
                n["cell"]["id"].as_str().unwrap().to_owned(),
                n["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_or_frozen_cell_makes_the_answer_incomplete_and_names_it() {
    let env = Env::new().await;
    let (global, mut cells) = env.start().await;
    let mut tenants = Vec::new();
    for i in 0..4 {
        tenants.push(env.create(&format!("proc-us-{i}"), "us-east-1").await);
    }
    for i in 0..2 {
        tenants.push(env.create(&format!("proc-eu-{i}"), "eu-west-1").await);
    }
    // A flag `on` for one tenant in each region.
    let us_on = tenants[0].clone();
    let eu_on = tenants[4].clone();
    let create = env
        .gql(
            "mutation($i: CreateFlagInput!) { createFlag(input: $i) { version } }",
            json!({ "i": { "key": "dark-mode", "description": "d", "kind": "BOOLEAN",
                "variants": [{ "name": "on", "value": true }, { "name": "off", "value": false }],
                "offVariant": "off", "idempotencyKey": "create-dark" } }),
        )
        .await;
    assert!(create.get("errors").is_none(), "{create}");
    let target = env
        .gql(
            "mutation($i: SetFlagTargetingInput!) { setFlagTargeting(input: $i) { version } }",
            json!({ "i": { "key": "dark-mode", "environment": "prod", "enabled": true,
                "rules": [{ "variant": "on", "tenantIds": [us_on.0, eu_on.0] }], "defaultVariant": "off",
                "expectedVersion": 1, "idempotencyKey": "target-dark" } }),
        )
        .await;
    assert!(target.get("errors").is_none(), "{target}");
    let scope = json!({ "s": { "flagKey": "dark-mode", "flagVariant": "on" } });
    let mut full = Value::Null;
    for _ in 0..100 {
        full = env.gql(IMPACT, scope.clone()).await;
        if full["data"]["impactedTenants"]["totalCount"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(full["data"]["impactedTenants"]["complete"], true, "{full}");
    assert_eq!(full["data"]["impactedTenants"]["totalCount"], 2, "{full}");

    // SIGKILL the EU cell.
    let mut eu = cells.pop().unwrap();
    eu.kill().unwrap();
    eu.wait().unwrap();
    let v = env.gql(IMPACT, scope.clone()).await;
    let answer = &v["data"]["impactedTenants"];
    assert_eq!(answer["complete"], false, "{v}");
    assert_eq!(answer["unreachableCells"], json!(["eu-west-1-a"]), "{v}");
    let eu_tenants: Vec<&(String, String)> =
        tenants.iter().filter(|t| t.1 == "eu-west-1-a").collect();
    let mut want: Vec<(String, String, Vec<String>)> = eu_tenants
        .iter()
        .map(|t| {
            (
                t.0.clone(),
                t.1.clone(),
                vec!["cell unreachable".to_owned()],
            )
        })
        .collect();
    want.push((
        us_on.0.clone(),
        us_on.1.clone(),
        vec!["flag dark-mode serves on in prod".to_owned()],
    ));
    want.sort();
    assert_eq!(
        rows(&v),
        want,
        "exact elsewhere, listed from the directory there"
    );
    // A directory-only scope needs no cell: still complete.
    let dir = env
        .gql(IMPACT, json!({ "s": { "regions": ["eu-west-1"] } }))
        .await;
    assert_eq!(dir["data"]["impactedTenants"]["complete"], true, "{dir}");
    assert_eq!(
        dir["data"]["impactedTenants"]["totalCount"],
        eu_tenants.len(),
        "{dir}"
    );

    // SIGSTOP a US cell: it holds connections and never answers; the
    // answer comes after the impact timeout without it.
    let frozen = &cells[1];
    let pid = frozen.id().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    let v = env.gql(IMPACT, scope.clone()).await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    let answer = &v["data"]["impactedTenants"];
    assert_eq!(answer["complete"], false, "{v}");
    let mut unreachable: Vec<String> = answer["unreachableCells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    unreachable.sort();
    assert_eq!(unreachable, vec!["eu-west-1-a", "us-east-1-b"], "{v}");
    let listed = rows(&v);
    for (id, cell) in &tenants {
        let row = listed.iter().find(|r| &r.0 == id);
        match cell.as_str() {
            "us-east-1-a" if id == &us_on.0 => {
                assert!(
                    row.is_some_and(|r| r.2 == ["flag dark-mode serves on in prod"]),
                    "{v}"
                )
            }
            "us-east-1-a" => assert!(row.is_none(), "{id} is off: {v}"),
            _ => assert!(
                row.is_some_and(|r| r.2 == ["cell unreachable"]),
                "{id} in {cell}: {v}"
            ),
        }
    }

    for c in cells {
        terminate(c);
    }
    terminate(global);
    backing::drop_databases(&env.dbs).await;
}
