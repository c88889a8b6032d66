//! The whole control plane in the test process: the real global tier and
//! real cells, each bound to port 0, talking over loopback HTTP.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};
use shared::ids::{CellId, Plan, Region, TenantId};
use shared::server::Limits;

use crate::backing;

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone)]
pub struct CellSpec {
    pub id: &'static str,
    pub region: &'static str,
    pub capacity: i64,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Backend,
    pub cells: Vec<CellSpec>,
    pub heartbeat_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub cell_timeout: Duration,
    pub limits: Limits,
    pub dev_mode: bool,
    pub introspection: bool,
    /// Anti-entropy pace of the global tier.
    pub sync: global::config::SyncSettings,
    /// Quota enforcement and metering of every cell.
    pub quota: cell::quota::Settings,
    pub provisioning: global::config::Provisioning,
    /// Impact queries and break-glass access at the global tier.
    pub ops: global::config::Ops,
}

impl Options {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            cells: vec![
                CellSpec {
                    id: "us-east-1-a",
                    region: "us-east-1",
                    capacity: 100,
                },
                CellSpec {
                    id: "eu-west-1-a",
                    region: "eu-west-1",
                    capacity: 100,
                },
            ],
            heartbeat_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(500),
            cell_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            dev_mode: false,
            introspection: false,
            sync: global::config::SyncSettings::default(),
            quota: cell::quota::Settings::default(),
            provisioning: global::config::Provisioning {
                deadline: Duration::from_secs(60),
                ..Default::default()
            },
            ops: global::config::Ops::default(),
        }
    }
}

pub struct Stack {
    pub global: global::App,
    pub cells: Vec<cell::App>,
    pub keys: Arc<Keys>,
    pub http: reqwest::Client,
    pub redis_prefix: String,
    pub global_database_url: String,
    /// Each cell's database, so a test can restart a cell on it.
    pub cell_database_urls: std::collections::HashMap<String, String>,
    pub options: Options,
    databases: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Stack {
    pub async fn start(backend: Backend) -> Stack {
        Self::start_with(Options::new(backend)).await
    }

    pub async fn start_with(o: Options) -> Stack {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = shared::telemetry::init("test", shared::telemetry::LogFormat::Text);
        }
        let keys =
            Arc::new(Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap());
        let redis_prefix = backing::redis_prefix().await;
        let tmp = (o.backend == Backend::Sqlite).then(|| tempfile::tempdir().unwrap());
        let mut databases = Vec::new();
        let db_url = |name: &str| {
            let tmp = tmp.as_ref().map(|t| t.path().join(format!("{name}.db")));
            async move {
                match tmp {
                    Some(path) => (None, shared::config::sqlite_url(&path)),
                    None => {
                        let (n, url) = backing::create_database().await;
                        (Some(n), url)
                    }
                }
            }
        };
        let (n, global_db) = db_url("global").await;
        databases.extend(n);
        let global = global::build(global_settings(&global_db, &keys, &o, &redis_prefix))
            .await
            .expect("global tier starts");
        let mut cells = Vec::new();
        let mut cell_database_urls = std::collections::HashMap::new();
        for spec in &o.cells {
            let (n, url) = db_url(spec.id).await;
            databases.extend(n);
            cell_database_urls.insert(spec.id.to_owned(), url.clone());
            cells.push(start_cell(spec, url, &global.url(), &keys, &o, &redis_prefix, None).await);
        }
        let stack = Stack {
            global,
            cells,
            keys,
            http: reqwest::Client::new(),
            redis_prefix,
            global_database_url: global_db,
            cell_database_urls,
            options: o.clone(),
            databases,
            _tmp: tmp,
        };
        stack.wait_cells_up(o.cells.len()).await;
        stack
    }

    /// Waits until `n` cells are UP in the global registry.
    pub async fn wait_cells_up(&self, n: usize) {
        for _ in 0..200 {
            let up = self
                .global
                .state
                .cells
                .all()
                .iter()
                .filter(|c| c.status == "UP")
                .count();
            if up >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("cells did not register with the global tier");
    }

    pub fn url(&self) -> String {
        self.global.url()
    }

    pub fn token(
        &self,
        sub: &str,
        roles: &[Role],
        tenants: &[TenantId],
        cell: Option<&str>,
    ) -> String {
        self.keys
            .mint(
                sub,
                roles.to_vec(),
                tenants.to_vec(),
                cell.map(|c| CellId::parse(c).unwrap()),
                600,
            )
            .unwrap()
    }

    pub fn admin(&self) -> String {
        self.token("admin", &[Role::PlatformAdmin], &[], None)
    }

    /// POSTs a GraphQL request to `base` (a tier's URL) with an optional token.
    pub async fn gql_at(
        &self,
        base: &str,
        token: Option<&str>,
        query: &str,
        vars: Value,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": query, "variables": vars }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let body = resp.json().await.expect("JSON answer");
        (status, body)
    }

    /// A GraphQL request to the global tier.
    pub async fn gql(&self, token: &str, query: &str, vars: Value) -> Value {
        self.gql_at(&self.url(), Some(token), query, vars).await.1
    }

    /// Creates a tenant as platform-admin and returns the `createTenant` answer (or panics with the errors).
    pub async fn create_tenant(&self, slug: &str, region: &str) -> Value {
        let body = self
            .gql(&self.admin(), CREATE, json!({ "input": {
                "idempotencyKey": format!("key-{slug}"), "slug": slug, "name": format!("Tenant {slug}"),
                "region": region, "plan": "pro" } }))
            .await;
        assert!(body.get("errors").is_none(), "createTenant failed: {body}");
        body["data"]["createTenant"].clone()
    }

    pub fn cell(&self, id: &str) -> &cell::App {
        self.cells
            .iter()
            .find(|c| c.state.cell_id.as_str() == id)
            .expect("cell in stack")
    }

    /// Stops every server and drops the test's databases.
    pub async fn stop(self) {
        for c in self.cells {
            c.stop().await;
        }
        self.global.stop().await;
        backing::drop_databases(&self.databases).await;
    }
}

/// Settings of a global tier replica on `database_url`.
pub fn global_settings(
    database_url: &str,
    keys: &Arc<Keys>,
    o: &Options,
    redis_prefix: &str,
) -> global::Settings {
    global::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: database_url.to_owned(),
        redis_url: Some(backing::redis_url()),
        redis_prefix: redis_prefix.to_owned(),
        heartbeat_timeout: o.heartbeat_timeout,
        cell_timeout: o.cell_timeout,
        plans: ["free", "pro", "enterprise"]
            .iter()
            .map(|p| Plan::parse(p).unwrap())
            .collect(),
        keys: keys.clone(),
        dev_mode: o.dev_mode,
        introspection: o.introspection,
        limits: o.limits,
        transport: None,
        db_pool_size: 8,
        sync: o.sync,
        provisioning: o.provisioning.clone(),
        ops: o.ops.clone(),
    }
}

pub async fn start_cell(
    spec: &CellSpec,
    database_url: String,
    global_url: &str,
    keys: &Arc<Keys>,
    o: &Options,
    redis_prefix: &str,
    transport: Option<Arc<dyn shared::sync::Transport>>,
) -> cell::App {
    cell::build(cell::Settings {
        listen: "127.0.0.1:0".into(),
        cell_id: CellId::parse(spec.id).unwrap(),
        region: Region::parse(spec.region).unwrap(),
        endpoint: None,
        capacity: spec.capacity,
        database_url,
        redis_url: Some(backing::redis_url()),
        redis_prefix: redis_prefix.to_owned(),
        global_url: Some(global_url.to_owned()),
        heartbeat_interval: o.heartbeat_interval,
        keys: keys.clone(),
        dev_mode: o.dev_mode,
        introspection: o.introspection,
        limits: o.limits,
        transport,
        db_pool_size: 6,
        sync: cell::config::SyncSettings::default(),
        quota: cell::quota::Settings {
            redis_url: o.quota.redis_url.clone().or(Some(backing::redis_url())),
            redis_prefix: redis_prefix.to_owned(),
            ..o.quota.clone()
        },
    })
    .await
    .expect("cell starts")
}

pub const TENANT_FIELDS: &str =
    "id slug name region plan status version createdAt cell { id region status }";

pub const CREATE: &str = "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id slug name region plan status version cell { id region status } } }";

/// The `extensions.code` of the first error, if any.
pub fn code(body: &Value) -> Option<&str> {
    body.pointer("/errors/0/extensions/code")
        .and_then(|c| c.as_str())
}

/// The message of the first error.
pub fn message(body: &Value) -> &str {
    body.pointer("/errors/0/message")
        .and_then(|c| c.as_str())
        .unwrap_or("")
}

/// A token that may read `/metrics` on a tier's API port (an SRE's).
pub fn metrics_token() -> String {
    Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE)
        .unwrap()
        .mint("metrics-reader", vec![Role::Sre], vec![], None, 600)
        .unwrap()
}

/// `GET {base}/metrics` on a tier's API port, with [`metrics_token`].
pub fn metrics_request(http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    http.get(format!("{base}/metrics"))
        .bearer_auth(metrics_token())
}

/// The text of `{base}/metrics` on a tier's API port.
pub async fn scrape(base: &str) -> String {
    let resp = metrics_request(&reqwest::Client::new(), base)
        .send()
        .await
        .expect("metrics request sent");
    assert_eq!(resp.status(), 200, "GET {base}/metrics");
    resp.text().await.expect("metrics text")
}
