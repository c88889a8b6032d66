//! `impactedTenants` over 100,000 tenants spread over three cells, on
//! PostgreSQL and Redis: p50/p99 for a directory scope (one cell), a
//! flag-variant scope and a config-value scope, each for the first page
//! (100 tenants with the full counts) and for the count alone (first: 0).
//!
//! cargo bench -p e2e --bench impact -- [--tenants N] [--iterations N]
//!
//! The tenants are written straight into the directory and the cells'
//! databases, with the versions cells record once they applied a tenant's
//! directory events (creating 100,000 through the saga would take an hour); the
//! flag and the config key are defined through the API, and each cell
//! recompiles its flag snapshot from its database as it does at start.

// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]

use std::time::Instant;

use e2e::{Backend, CellSpec, Options, Stack};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};

const CELLS: [(&str, &str); 3] = [
    ("us-east-1-a", "us-east-1"),
    ("us-east-1-b", "us-east-1"),
    ("eu-west-1-a", "eu-west-1"),
];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
const QUERY: &str = "query($s: ImpactScope!, $f: Int) { impactedTenants(scope: $s, first: $f) { totalCount complete byCell { cellId count } tenants { edges { node { tenant { id slug } reasons } } } } }";

fn arg(name: &str, default: usize) -> usize {
    let mut it = std::env::args();
    while let Some(a) = it.next() {
        if a == name {
            return it.next().and_then(|v| v.parse().ok()).unwrap_or(default);
        }
    }
    default
}

async fn exec(db: &DatabaseConnection, sql: String) {
    db.execute_unprepared(&sql).await.expect("bulk insert");
}

/// Writes `n` tenants: directory rows in the global database, records
/// (and a config value for every tenth) in their cells' databases.
async fn seed(s: &Stack, n: usize) {
    let global = &s.global.state.db;
    let mut per_cell: Vec<Vec<(uuid::Uuid, usize)>> = vec![Vec::new(); CELLS.len()];
    for i in 0..n {
        per_cell[i % CELLS.len()].push((uuid::Uuid::now_v7(), i));
    }
    for (c, rows) in per_cell.iter().enumerate() {
        let (cell, region) = CELLS[c];
        let db = &s.cell(cell).state.db;
        for chunk in rows.chunks(1000) {
            let dir: Vec<String> = chunk
                .iter()
                .map(|(id, i)| {
                    format!(
                        "('{id}', 'bench-{i}', '{region}', '{cell}', 'ACTIVE', 2, now(), now(), NULL, '{}', 0)",
                        PLANS[i % 3]
                    )
                })
                .collect();
            exec(
                global,
                format!(
                    "INSERT INTO tenants (id, slug, region, cell_id, status, version, created_at, updated_at, purge_at, plan, plan_version) VALUES {}",
                    dir.join(",")
                ),
            )
            .await;
            let rec: Vec<String> = chunk
                .iter()
                .map(|(id, i)| {
                    format!(
                        "('{id}', 'bench-{i}', 'Bench {i}', '{region}', '{}', 'ACTIVE', 2, now(), now(), NULL, 0)",
                        PLANS[i % 3]
                    )
                })
                .collect();
            exec(
                db,
                format!(
                    "INSERT INTO tenants (id, slug, name, region, plan, status, version, created_at, updated_at, purge_at, plan_version) VALUES {}",
                    rec.join(",")
                ),
            )
            .await;
            // What the cell records once it applied the tenant's directory
            // events: without it the global tier's anti-entropy would find
            // every seeded tenant behind and send its events again.
            let applied: Vec<String> = chunk
                .iter()
                .map(|(id, _)| format!("('tenant:{id}', 2)"))
                .collect();
            exec(
                db,
                format!(
                    "INSERT INTO sync_applied (entity, version) VALUES {}",
                    applied.join(",")
                ),
            )
            .await;
            let cfg: Vec<String> = chunk
                .iter()
                .filter(|(_, i)| i % 10 == 0)
                .map(|(id, _)| {
                    format!(
                        "('{id}', 1, '{{\"tenant\":{{\"bench.mode\":\"fast\"}},\"projects\":{{}},\"environments\":{{}}}}', now())"
                    )
                })
                .collect();
            if !cfg.is_empty() {
                exec(
                    db,
                    format!(
                        "INSERT INTO tenant_config (tenant_id, version, doc, updated_at) VALUES {}",
                        cfg.join(",")
                    ),
                )
                .await;
            }
        }
        s.cell(cell)
            .state
            .flags
            .rebuild(db, cell)
            .await
            .expect("snapshot rebuilt");
    }
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

async fn measure(s: &Stack, token: &str, name: &str, scope: Value, iterations: usize) {
    for first in [100, 0] {
        let vars = json!({ "s": scope, "f": first });
        // Warm-up, and the figures the answer must show.
        let v = s.gql(token, QUERY, vars.clone()).await;
        assert!(v.get("errors").is_none(), "{v}");
        let total = v["data"]["impactedTenants"]["totalCount"].clone();
        assert_eq!(v["data"]["impactedTenants"]["complete"], true, "{v}");
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            let v = s.gql(token, QUERY, vars.clone()).await;
            times.push(t.elapsed().as_micros());
            assert_eq!(v["data"]["impactedTenants"]["totalCount"], total);
        }
        times.sort_unstable();
        println!(
            "{name:<28} first={first:<3} total={total:<6} p50={:>7.2} ms p99={:>7.2} ms max={:>7.2} ms",
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            percentile(&times, 1.0),
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let tenants = arg("--tenants", 100_000);
    let iterations = arg("--iterations", 200);
    let mut o = Options::new(Backend::Postgres);
    o.cells = CELLS
        .iter()
        .map(|(id, region)| CellSpec {
            id,
            region,
            capacity: 1_000_000,
        })
        .collect();
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    let flag = s
        .gql(
            &admin,
            "mutation($i: CreateFlagInput!) { createFlag(input: $i) { version } }",
            json!({ "i": { "key": "bench-flag", "description": "bench", "kind": "BOOLEAN",
                "variants": [{ "name": "on", "value": true }, { "name": "off", "value": false }],
                "offVariant": "off", "idempotencyKey": "bench-flag" } }),
        )
        .await;
    assert!(flag.get("errors").is_none(), "{flag}");
    let target = s
        .gql(
            &admin,
            "mutation($i: SetFlagTargetingInput!) { setFlagTargeting(input: $i) { version } }",
            json!({ "i": { "key": "bench-flag", "environment": "prod", "enabled": true,
                "rules": [{ "variant": "on", "percentage": 30.0 }], "defaultVariant": "off",
                "expectedVersion": 1, "idempotencyKey": "bench-target" } }),
        )
        .await;
    assert!(target.get("errors").is_none(), "{target}");
    let key = s
        .gql(
            &admin,
            "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
            json!({ "i": { "key": "bench.mode", "type": "STRING", "default": "normal", "scopes": ["TENANT"] } }),
        )
        .await;
    assert!(key.get("errors").is_none(), "{key}");
    // Let the flag and the key reach every cell before the snapshot rebuild.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let t = Instant::now();
    seed(&s, tenants).await;
    println!(
        "seeded {tenants} tenants over {} cells in {:.1} s; {iterations} iterations each",
        CELLS.len(),
        t.elapsed().as_secs_f64()
    );
    let sre = s.token("bench", &[shared::auth::Role::Sre], &[], None);
    measure(
        &s,
        &sre,
        "directory (one cell)",
        json!({ "cellIds": ["us-east-1-a"] }),
        iterations,
    )
    .await;
    measure(
        &s,
        &sre,
        "flag variant (30% on)",
        json!({ "flagKey": "bench-flag", "flagVariant": "on" }),
        iterations,
    )
    .await;
    measure(
        &s,
        &sre,
        "config value (10%)",
        json!({ "configKey": "bench.mode", "configValue": "fast" }),
        iterations,
    )
    .await;
    s.stop().await;
}
