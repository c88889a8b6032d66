//! The chaos scenarios' stack: the real `global` binary and three real
//! `cell` processes (two in us-east-1, one in eu-west-1), each on its own
//! PostgreSQL database, sharing one Redis, plus the clients a scenario
//! drives them with and records what was acknowledged.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};
use shared::ids::CellId;
use shared::quota::client::HooksClient;
use shared::quota::hooks::{Status, UsageBatch, UsageEvent};

use crate::backing;
use crate::process::{free_port, gql, spawn_cell_with, spawn_global};
use crate::stack::{CREATE, SECRET, code};

/// `(cell id, region)` of the three cells, by index.
pub const CELLS: [(&str, &str); 3] = [
    ("us-east-1-a", "us-east-1"),
    ("us-east-1-b", "us-east-1"),
    ("eu-west-1-a", "eu-west-1"),
];

/// The tenant-scoped config key every scenario writes.
pub const KEY: &str = "chaos.level";
/// The metric consumed and metered (the plans' monthly `api.calls`).
pub const METRIC: &str = "api.calls";
/// The flag evaluated.
pub const FLAG: &str = "chaos-flag";

pub const UPDATE: &str =
    "mutation($i: UpdateTenantConfigInput!) { updateTenantConfig(input: $i) { version } }";
pub const IMPACT: &str = "query($s: ImpactScope!) { impactedTenants(scope: $s, first: 1000) { totalCount complete unreachableCells tenants { edges { node { tenant { id } cell { id } reasons } } } } }";
const TARGETING: &str =
    "mutation($i: SetFlagTargetingInput!) { setFlagTargeting(input: $i) { version } }";

pub struct Chaos {
    pub dbs: Vec<String>,
    /// `urls[0]` is the global database, `urls[i + 1]` cell `i`'s.
    pub urls: Vec<String>,
    pub prefix: String,
    pub redis_url: String,
    pub gport: u16,
    pub ports: [u16; 3],
    pub keys: Keys,
    pub admin: String,
    /// Extra environment of the global process.
    pub global_env: Vec<(String, String)>,
    /// Extra environment of every cell process.
    pub cell_env: Vec<(String, String)>,
    /// A cell's database URL other than its own (a proxy in front of it).
    pub cell_db_override: [Option<String>; 3],
    pub http: reqwest::Client,
    /// Every process this stack started, for the [`Reaper`].
    pids: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
}

/// Kills the stack's processes when the test panics, so a failed run
/// leaves no process holding database connections.
pub struct Reaper(std::sync::Arc<std::sync::Mutex<Vec<u32>>>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in self.0.lock().unwrap().iter() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// A tenant and its home cell's index.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub cell: usize,
}

impl Chaos {
    /// Databases, a Redis prefix and ports; `redis_url` defaults to the
    /// shared test Redis.
    pub async fn new(redis_url: Option<String>) -> Chaos {
        let mut dbs = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..4 {
            let (name, url) = backing::create_database().await;
            dbs.push(name);
            urls.push(url);
        }
        let keys = Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap();
        let admin = keys
            .mint(
                "chaos",
                vec![Role::Sre, Role::PlatformAdmin],
                vec![],
                None,
                3600,
            )
            .unwrap();
        Chaos {
            dbs,
            urls,
            prefix: backing::redis_prefix().await,
            redis_url: redis_url.unwrap_or_else(backing::redis_url),
            gport: free_port(),
            ports: [free_port(), free_port(), free_port()],
            keys,
            admin,
            global_env: vec![
                ("TENANT_GLOBAL_HEARTBEAT_TIMEOUT_SECS".into(), "3".into()),
                ("TENANT_GLOBAL_IMPACT_TIMEOUT_MS".into(), "700".into()),
                ("TENANT_GLOBAL_CELL_TIMEOUT_MS".into(), "2000".into()),
            ],
            cell_env: vec![("TENANT_CELL_SYNC_CLAIM_IDLE_MS".into(), "1000".into())],
            cell_db_override: [None, None, None],
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            pids: Default::default(),
        }
    }

    /// Hold it for the test's length: a panic kills every process started.
    pub fn reaper(&self) -> Reaper {
        Reaper(self.pids.clone())
    }

    pub fn global_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gport)
    }

    pub fn cell_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// Starts the global process (waits for /readyz).
    pub async fn spawn_global(&self) -> Child {
        let mut env: Vec<(&str, &str)> = vec![("TENANT_GLOBAL_REDIS_URL", &self.redis_url)];
        env.extend(
            self.global_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        self.track(spawn_global(self.gport, &self.urls[0], &self.prefix, &env).await)
    }

    /// Starts cell `i` (waits for /readyz).
    pub async fn spawn_cell(&self, i: usize) -> Child {
        let (id, region) = CELLS[i];
        let mut env: Vec<(&str, &str)> = vec![("TENANT_CELL_REDIS_URL", &self.redis_url)];
        env.extend(self.cell_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let db = self.cell_db_override[i]
            .clone()
            .unwrap_or_else(|| self.urls[i + 1].clone());
        self.track(
            spawn_cell_with(
                self.ports[i],
                id,
                region,
                &db,
                &self.prefix,
                &self.global_url(),
                &env,
            )
            .await,
        )
    }

    /// Remembers the pid of a process the test started itself.
    pub fn track_pid(&self, pid: u32) -> u32 {
        self.pids.lock().unwrap().push(pid);
        pid
    }

    /// Remembers a started process for the [`Reaper`].
    pub fn track(&self, child: Child) -> Child {
        self.pids.lock().unwrap().push(child.id());
        child
    }

    /// The global process and the three cells, once all are UP.
    pub async fn start(&self) -> (Child, Vec<Child>) {
        let global = self.spawn_global().await;
        let mut cells = Vec::new();
        for i in 0..3 {
            cells.push(self.spawn_cell(i).await);
        }
        self.wait_status(&[0, 1, 2], "UP", Duration::from_secs(20))
            .await;
        (global, cells)
    }

    pub async fn gql(&self, q: &str, vars: Value) -> Value {
        gql(&self.global_url(), &self.admin, q, vars).await
    }

    /// As [`gql`](Self::gql), but a transport failure is an `Err` (the
    /// global process may be dead).
    pub async fn try_gql(&self, q: &str, vars: Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}/graphql", self.global_url()))
            .bearer_auth(&self.admin)
            .json(&json!({ "query": q, "variables": vars }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        r.json().await.map_err(|e| e.to_string())
    }

    /// `cell id → status` as the global tier lists them.
    pub async fn statuses(&self) -> std::collections::HashMap<String, String> {
        let v = self.gql("{ cells { id status } }", json!({})).await;
        v["data"]["cells"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Waits until cells `which` all have `status`; returns how long it took.
    pub async fn wait_status(&self, which: &[usize], status: &str, within: Duration) -> Duration {
        let at = Instant::now();
        let mut last = Default::default();
        while at.elapsed() < within {
            last = self.statuses().await;
            if which
                .iter()
                .all(|i| last.get(CELLS[*i].0).is_some_and(|s| s == status))
            {
                return at.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cells {which:?} never became {status}: {last:?}");
    }

    /// Creates an ACTIVE `pro` tenant in `region`.
    pub async fn create(&self, slug: &str, region: &str) -> Tenant {
        let v = self
            .gql(
                CREATE,
                json!({ "input": { "idempotencyKey": slug, "slug": slug, "name": slug, "region": region, "plan": "pro" } }),
            )
            .await;
        assert_eq!(v["data"]["createTenant"]["status"], "ACTIVE", "{v}");
        let cell = v["data"]["createTenant"]["cell"]["id"].as_str().unwrap();
        Tenant {
            id: v["data"]["createTenant"]["id"].as_str().unwrap().to_owned(),
            cell: CELLS.iter().position(|c| c.0 == cell).unwrap(),
        }
    }

    /// The config key, the metric (with `fail_mode`) and a boolean flag
    /// `on` in prod for `on_for`, every cell holding all three.
    pub async fn catalog(&self, on_for: &[&Tenant]) {
        let v = self
            .gql(
                "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
                json!({ "i": { "key": KEY, "type": "INT", "default": 0, "scopes": ["TENANT"] } }),
            )
            .await;
        assert!(v.get("errors").is_none(), "{v}");
        let v = self
            .gql(
                crate::quota::DEFINE,
                json!({ "i": { "name": METRIC, "kind": "PERIODIC", "unit": "call", "failMode": "OPEN" } }),
            )
            .await;
        assert!(v.get("errors").is_none(), "{v}");
        let v = self
            .gql(
                "mutation($i: CreateFlagInput!) { createFlag(input: $i) { version } }",
                json!({ "i": { "key": FLAG, "description": "chaos", "kind": "BOOLEAN",
                    "variants": [{ "name": "on", "value": true }, { "name": "off", "value": false }],
                    "offVariant": "off", "idempotencyKey": "create-chaos-flag" } }),
            )
            .await;
        assert!(v.get("errors").is_none(), "{v}");
        self.target(on_for, 1, "target-1").await;
    }

    /// Sets the flag `on` in prod for exactly `on_for` (under `expected`).
    pub async fn target(&self, on_for: &[&Tenant], expected: i64, key: &str) -> Value {
        let ids: Vec<&str> = on_for.iter().map(|t| t.id.as_str()).collect();
        self.gql(
            TARGETING,
            json!({ "i": { "key": FLAG, "environment": "prod", "enabled": true,
                "rules": [{ "variant": "on", "tenantIds": ids }], "defaultVariant": "off",
                "expectedVersion": expected, "idempotencyKey": key } }),
        )
        .await
    }

    /// A data-plane token bound to cell `i`.
    pub fn data_plane(&self, i: usize) -> String {
        self.keys
            .mint(
                "edge",
                vec![Role::DataPlane],
                vec![],
                Some(CellId::parse(CELLS[i].0).unwrap()),
                3600,
            )
            .unwrap()
    }

    /// A hooks client of cell `i`.
    pub fn hooks(&self, i: usize) -> HooksClient {
        HooksClient::new(&self.cell_url(i), &self.data_plane(i))
    }

    /// `POST /v1/flags/evaluate` of `FLAG` in prod: the variant, or why not.
    pub async fn evaluate(&self, i: usize, tenant: &str) -> Result<String, String> {
        let r = self
            .http
            .post(format!("{}/v1/flags/evaluate", self.cell_url(i)))
            .bearer_auth(self.data_plane(i))
            .json(&json!({ "tenantId": tenant, "flagKey": FLAG, "environment": "prod", "context": {} }))
            .send()
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        match (status, body["variant"].as_str()) {
            (200, Some(v)) => Ok(v.to_owned()),
            _ => Err(format!("{status}: {body}")),
        }
    }

    /// Waits until cell `i` serves `variant` to `tenant`.
    pub async fn wait_variant(&self, i: usize, tenant: &str, variant: &str, within: Duration) {
        let at = Instant::now();
        let mut last = Err(String::new());
        while at.elapsed() < within {
            last = self.evaluate(i, tenant).await;
            if last.as_deref() == Ok(variant) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cell {i} never served {variant} to {tenant}: {last:?}");
    }

    /// One config write through the global API: the new version, or the
    /// error code (`TRANSPORT` when the global tier did not answer).
    pub async fn write_config(
        &self,
        tenant: &str,
        expected: i64,
        value: i64,
        key: &str,
    ) -> Result<i64, String> {
        let v = self
            .try_gql(
                UPDATE,
                json!({ "i": { "tenantId": tenant, "idempotencyKey": key, "expectedVersion": expected,
                    "set": [{ "key": KEY, "value": value }] } }),
            )
            .await
            .map_err(|_| "TRANSPORT".to_owned())?;
        match v["data"]["updateTenantConfig"]["version"].as_i64() {
            Some(n) => Ok(n),
            None => Err(code(&v).unwrap_or("NO_CODE").to_owned()),
        }
    }

    /// The tenant's config value of `KEY` and its history's versions.
    pub async fn config(&self, tenant: &str) -> (Value, Vec<i64>) {
        let v = self
            .gql(
                "query($t: ID!) { effectiveConfig(tenantId: $t) { key value } configHistory(tenantId: $t, first: 500) { version } }",
                json!({ "t": tenant }),
            )
            .await;
        let value = v["data"]["effectiveConfig"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .find(|e| e["key"] == KEY)
            .map(|e| e["value"].clone())
            .unwrap_or(Value::Null);
        let mut versions: Vec<i64> = v["data"]["configHistory"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|c| c["version"].as_i64().unwrap())
            .collect();
        versions.sort();
        (value, versions)
    }

    /// `used` of `METRIC` for the tenant, read from its cell through the global API.
    pub async fn used(&self, tenant: &str) -> i64 {
        let v = self
            .gql(
                "query($t: ID!) { quotas(tenantId: $t) { metric used } }",
                json!({ "t": tenant }),
            )
            .await;
        v["data"]["quotas"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .find(|q| q["metric"] == METRIC)
            .and_then(|q| q["used"].as_i64())
            .unwrap_or_else(|| panic!("{v}"))
    }

    /// The tenant's metered usage of `METRIC` the global tier holds (rollups).
    pub async fn usage_at_global(&self, tenant: &str) -> i64 {
        let now = chrono::Utc::now();
        let v = self
            .gql(
                "query($t: ID!, $m: String!, $f: DateTime!, $to: DateTime!) { usage(tenantId: $t, metric: $m, from: $f, to: $to) { amount } }",
                json!({ "t": tenant, "m": METRIC, "f": now - chrono::Duration::hours(3), "to": now + chrono::Duration::hours(3) }),
            )
            .await;
        v["data"]["usage"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|p| p["amount"].as_i64().unwrap())
            .sum()
    }

    /// Waits until the global tier holds `want` of the tenant's usage.
    pub async fn wait_usage(&self, tenant: &str, want: i64, within: Duration) -> Duration {
        let at = Instant::now();
        let mut got = 0;
        while at.elapsed() < within {
            got = self.usage_at_global(tenant).await;
            if got == want {
                return at.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("usage of {tenant} at the global tier is {got}, not {want}");
    }

    pub async fn drop_databases(&self) {
        backing::drop_databases(&self.dbs).await;
    }
}

/// One usage event of `amount` with key `key`: accepted (or a duplicate of
/// an earlier accepted one), or why not.
pub async fn meter(h: &HooksClient, tenant: &str, amount: i64, key: &str) -> Result<(), String> {
    let answer = h
        .usage(&UsageBatch {
            events: vec![UsageEvent {
                tenant_id: tenant.to_owned(),
                metric: METRIC.into(),
                amount,
                idempotency_key: Some(key.to_owned()),
                timestamp: chrono::Utc::now(),
            }],
        })
        .await
        .map_err(|e| format!("{:?}", e.code()))?;
    match answer.results.first().map(|r| r.status) {
        Some(Status::Accepted | Status::Duplicate) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// SIGKILL and reap.
pub fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends `signal` (`STOP`, `CONT`, …) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// Milliseconds, for the printed figures.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}
