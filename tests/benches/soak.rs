//! The sustained mixed-load run: the real `global` and three `cell`
//! processes (two regions) on PostgreSQL and Redis, under bounded request
//! loops on loopback for `--secs` (default 120): provisioning, config
//! writes, quota consumes, flag evaluations, tenant reads and impact
//! queries at once. Prints requests served, errors and latency per kind,
//! and each process's resident memory at the start and the end; exits
//! non-zero on any error (none is allowed: no fault is injected).
//!
//! cargo bench -p e2e --bench soak -- [--secs 120] [--tenants 30]

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::backing;
use e2e::process::{free_port, spawn_cell, spawn_global};
use e2e::stack::{CREATE, SECRET};
use serde_json::{Value, json};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};
use shared::ids::CellId;
use tokio::sync::Mutex;

const CELLS: [(&str, &str); 3] = [
    ("us-east-1-a", "us-east-1"),
    ("us-east-1-b", "us-east-1"),
    ("eu-west-1-a", "eu-west-1"),
];

fn args() -> (u64, usize) {
    let (mut secs, mut tenants) = (120, 30);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => secs = it.next().and_then(|v| v.parse().ok()).unwrap_or(secs),
            "--tenants" => tenants = it.next().and_then(|v| v.parse().ok()).unwrap_or(tenants),
            _ => {}
        }
    }
    (secs, tenants)
}

/// Resident memory of a process, in MiB (from /proc).
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_errors: Vec<String>,
    latencies: Vec<Duration>,
}

type Tallies = Arc<Mutex<BTreeMap<&'static str, Tally>>>;

async fn record(t: &Tallies, kind: &'static str, took: Duration, error: Option<String>) {
    let mut all = t.lock().await;
    let e = all.entry(kind).or_default();
    e.latencies.push(took);
    match error {
        None => e.ok += 1,
        Some(msg) => {
            e.errors += 1;
            if e.first_errors.len() < 3 {
                e.first_errors.push(msg);
            }
        }
    }
}

struct Ctx {
    http: reqwest::Client,
    global: String,
    admin: String,
    /// (tenant id, home cell url, data-plane token of that cell)
    tenants: Vec<(String, String, String)>,
    tallies: Tallies,
    until: Instant,
}

impl Ctx {
    async fn gql(&self, query: &str, vars: Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}/graphql", self.global))
            .bearer_auth(&self.admin)
            .json(&json!({ "query": query, "variables": vars }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        match v.get("errors") {
            Some(e) => Err(e.to_string()),
            None => Ok(v["data"].clone()),
        }
    }

    async fn hook(&self, url: &str, token: &str, path: &str, body: Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{url}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(format!("{status}: {v}"))
        }
    }
}

async fn worker(c: Arc<Ctx>, kind: &'static str, n: usize) {
    let mut i = 0usize;
    let mut config_versions: BTreeMap<usize, i64> = BTreeMap::new();
    while Instant::now() < c.until {
        i += 1;
        let len = c.tenants.len();
        let pick = if kind == "config" {
            // Config writers keep to their own tenants: no two race on a
            // version (a CONFLICT here would be the test's own doing).
            (n + 2 * (i % (len / 2).max(1))) % len
        } else {
            (i * 7919 + n * 104_729) % len
        };
        let (tenant, cell, token) = &c.tenants[pick];
        let started = Instant::now();
        let result = match kind {
            "evaluate" => c
                .hook(cell, token, "/v1/flags/evaluate", json!({ "tenantId": tenant, "flagKey": "soak-flag", "environment": "prod", "context": {} }))
                .await
                .map(|_| ()),
            "consume" => c
                .hook(cell, token, "/v1/quota/consume", json!({ "tenantId": tenant, "metric": "api.calls", "amount": 1, "idempotencyKey": format!("soak-{n}-{i}") }))
                .await
                .and_then(|v| if v["allowed"] == true { Ok(()) } else { Err(format!("denied: {v}")) }),
            "read" => c
                .gql("query($id: ID!) { tenant(id: $id) { id status version cell { id } } }", json!({ "id": tenant }))
                .await
                .map(|_| ()),
            "impact" => c
                .gql("query($c: String!) { impactedTenants(scope: { cellIds: [$c] }, first: 50) { totalCount complete } }", json!({ "c": CELLS[i % 3].0 }))
                .await
                .and_then(|d| if d["impactedTenants"]["complete"] == true { Ok(()) } else { Err(format!("incomplete: {d}")) }),
            "config" => {
                let v = *config_versions.get(&pick).unwrap_or(&-1);
                let expected = if v < 0 {
                    // The tenant's config version, read once per tenant.
                    match c.gql("query($t: ID!) { configHistory(tenantId: $t) { version } }", json!({ "t": tenant })).await {
                        Ok(d) => d["configHistory"].as_array().and_then(|h| h.iter().filter_map(|e| e["version"].as_i64()).max()).unwrap_or(0),
                        Err(e) => { record(&c.tallies, kind, started.elapsed(), Some(e)).await; continue; }
                    }
                } else { v };
                let r = c
                    .gql("mutation($i: UpdateTenantConfigInput!) { updateTenantConfig(input: $i) { version } }",
                        json!({ "i": { "tenantId": tenant, "idempotencyKey": format!("soak-{n}-{i}"), "expectedVersion": expected,
                            "set": [{ "key": "limits.max_users", "value": (i % 900) + 1 }] } }))
                    .await;
                match r {
                    Ok(d) => { config_versions.insert(pick, d["updateTenantConfig"]["version"].as_i64().unwrap_or(-1)); Ok(()) }
                    Err(e) => { config_versions.remove(&pick); Err(e) }
                }
            }
            "provision" => c
                .gql(CREATE, json!({ "input": { "idempotencyKey": format!("soak-new-{n}-{i}"), "slug": format!("soak-new-{n}-{i}"),
                    "name": "Soak", "region": CELLS[i % 3].1, "plan": "pro" } }))
                .await
                .and_then(|d| if d["createTenant"]["status"] == "ACTIVE" { Ok(()) } else { Err(format!("not active: {d}")) }),
            other => unreachable!("{other}"),
        };
        record(&c.tallies, kind, started.elapsed(), result.err()).await;
        if kind == "provision" {
            // Provisioning at about 2/s: enough to keep the sagas busy.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let (secs, tenant_count) = args();
    let keys = Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap();
    let prefix = backing::redis_prefix().await;
    let mut dbs = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..4 {
        let (name, url) = backing::create_database().await;
        dbs.push(name);
        urls.push(url);
    }
    let gport = free_port();
    let global_url = format!("http://127.0.0.1:{gport}");
    let mut global = spawn_global(gport, &urls[0], &prefix, &[]).await;
    let mut cells: Vec<(Child, String)> = Vec::new();
    for (i, (id, region)) in CELLS.iter().enumerate() {
        let port = free_port();
        let child = spawn_cell(port, id, region, &urls[i + 1], &prefix, &global_url).await;
        cells.push((child, format!("http://127.0.0.1:{port}")));
    }
    let admin = keys
        .mint(
            "soak",
            vec![Role::PlatformAdmin, Role::Sre],
            vec![],
            None,
            7200,
        )
        .unwrap();
    let http = reqwest::Client::new();
    let setup = Ctx {
        http: http.clone(),
        global: global_url.clone(),
        admin: admin.clone(),
        tenants: vec![],
        tallies: Arc::default(),
        until: Instant::now(),
    };
    // Wait for every cell to be UP, then define what the load uses.
    for _ in 0..100 {
        let d = setup
            .gql("{ cells { id status } }", json!({}))
            .await
            .unwrap();
        if d["cells"]
            .as_array()
            .is_some_and(|c| c.iter().filter(|c| c["status"] == "UP").count() == 3)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (q, v) in [
        (
            "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
            json!({ "i": { "key": "limits.max_users", "type": "INT", "default": 10, "scopes": ["TENANT"], "min": 1, "max": 1000 } }),
        ),
        (
            "mutation($i: DefineMetricInput!) { defineMetric(input: $i) { version } }",
            json!({ "i": { "name": "api.calls", "kind": "PERIODIC", "unit": "call", "failMode": "CLOSED" } }),
        ),
        (
            e2e::flags::create_flag().leak(),
            json!({ "i": { "key": "soak-flag", "description": "soak", "kind": "BOOLEAN",
            "variants": [{ "name": "on", "value": true }, { "name": "off", "value": false }],
            "offVariant": "off", "idempotencyKey": "soak-flag" } }),
        ),
    ] {
        setup
            .gql(q, v)
            .await
            .unwrap_or_else(|e| panic!("setup: {e}"));
    }
    let mut tenants = Vec::new();
    for i in 0..tenant_count {
        let (_, region) = CELLS[i % 3];
        let d = setup
            .gql(CREATE, json!({ "input": { "idempotencyKey": format!("soak-{i}"), "slug": format!("soak-{i}"), "name": "Soak", "region": region, "plan": "pro" } }))
            .await
            .unwrap_or_else(|e| panic!("createTenant: {e}"));
        let id = d["createTenant"]["id"].as_str().unwrap().to_owned();
        let t = setup
            .gql(
                "query($id: ID!) { tenant(id: $id) { cell { id } } }",
                json!({ "id": id }),
            )
            .await
            .unwrap();
        let cell_id = t["tenant"]["cell"]["id"].as_str().unwrap().to_owned();
        let idx = CELLS.iter().position(|(c, _)| *c == cell_id).unwrap();
        let token = keys
            .mint(
                "edge",
                vec![Role::DataPlane],
                vec![],
                Some(CellId::parse(&cell_id).unwrap()),
                7200,
            )
            .unwrap();
        tenants.push((id, cells[idx].1.clone(), token));
    }
    // Let the cells take in the metric, the key and the flag.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pids: Vec<(String, u32)> = std::iter::once(("global".to_owned(), global.id()))
        .chain(
            cells
                .iter()
                .zip(CELLS)
                .map(|((c, _), (id, _))| (id.to_owned(), c.id())),
        )
        .collect();
    let before: Vec<f64> = pids.iter().map(|(_, p)| rss_mib(*p)).collect();
    let ctx = Arc::new(Ctx {
        http,
        global: global_url,
        admin,
        tenants,
        tallies: Arc::default(),
        until: Instant::now() + Duration::from_secs(secs),
    });
    let mix: [(&'static str, usize); 6] = [
        ("evaluate", 4),
        ("consume", 4),
        ("read", 2),
        ("config", 2),
        ("impact", 1),
        ("provision", 1),
    ];
    eprintln!(
        "soak: {secs} s of mixed load on {} tenants",
        ctx.tenants.len()
    );
    let started = Instant::now();
    let mut handles = Vec::new();
    for (kind, n) in mix {
        for w in 0..n {
            handles.push(tokio::spawn(worker(ctx.clone(), kind, w)));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after: Vec<f64> = pids.iter().map(|(_, p)| rss_mib(*p)).collect();

    let mut all = ctx.tallies.lock().await;
    println!("| kind | requests | errors | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (mut total, mut errors) = (0, 0);
    for (kind, t) in all.iter_mut() {
        t.latencies.sort();
        let n = t.ok + t.errors;
        total += n;
        errors += t.errors;
        println!(
            "| {kind} | {n} | {} | {:.0} | {:.1} | {:.1} |",
            t.errors,
            n as f64 / elapsed,
            pct(&t.latencies, 0.5),
            pct(&t.latencies, 0.99)
        );
    }
    println!(
        "| all | {total} | {errors} | {:.0} | | |",
        total as f64 / elapsed
    );
    println!();
    println!("| process | RSS at start MiB | RSS at end MiB |");
    println!("|---|---:|---:|");
    for (((name, _), b), a) in pids.iter().zip(&before).zip(&after) {
        println!("| {name} | {b:.1} | {a:.1} |");
    }
    println!("\nran {elapsed:.1} s");
    for (kind, t) in all.iter() {
        for e in &t.first_errors {
            eprintln!("{kind} error: {e}");
        }
    }
    let _ = global.kill();
    for (c, _) in cells.iter_mut() {
        let _ = c.kill();
    }
    backing::drop_databases(&dbs).await;
    if errors > 0 {
        eprintln!("soak: {errors} errors outside any injected fault");
        std::process::exit(1);
    }
}
