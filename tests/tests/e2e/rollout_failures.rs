//! Rollouts through failures, with the `global` and `cell` binaries as real
//! processes on PostgreSQL and Redis: a cell killed mid-rollout makes it
//! STUCK naming the cell until the cell returns; with the global tier down
//! the cells keep serving the current stage and the rollout continues when
//! it returns.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::backing;
use e2e::flags::{ROLLOUT_FIELDS, evaluate, start_rollout};
use e2e::process::gql;
use e2e::stack::SECRET;
use serde_json::{Value, json};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(url: &str, child: &mut Child) {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("process exited early ({status}): {err}");
        }
        if let Ok(r) = reqwest::get(format!("{url}/readyz")).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

struct Plant {
    prefix: String,
    global_db: String,
    global_port: u16,
    cells: Vec<(&'static str, &'static str, u16, String)>,
    databases: Vec<String>,
    keys: Keys,
}

impl Plant {
    async fn new() -> Self {
        let prefix = backing::redis_prefix().await;
        let (gname, global_db) = backing::create_database().await;
        let mut databases = vec![gname];
        let mut cells = Vec::new();
        for (id, region) in [("eu-west-1-a", "eu-west-1"), ("us-east-1-a", "us-east-1")] {
            let (n, url) = backing::create_database().await;
            databases.push(n);
            cells.push((id, region, free_port(), url));
        }
        Self {
            prefix,
            global_db,
            global_port: free_port(),
            cells,
            databases,
            keys: Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap(),
        }
    }

    fn global_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.global_port)
    }

    fn cell_url(&self, id: &str) -> String {
        let c = self.cells.iter().find(|c| c.0 == id).unwrap();
        format!("http://127.0.0.1:{}", c.2)
    }

    async fn global(&self) -> Child {
        let mut child = Command::new(e2e::process::binary("global"))
            .env(
                "TENANT_GLOBAL_LISTEN",
                format!("127.0.0.1:{}", self.global_port),
            )
            .env("TENANT_GLOBAL_DATABASE_URL", &self.global_db)
            .env("TENANT_GLOBAL_REDIS_URL", backing::redis_url())
            .env("TENANT_GLOBAL_REDIS_PREFIX", &self.prefix)
            .env("TENANT_GLOBAL_JWT_SECRET", SECRET)
            .env("TENANT_GLOBAL_DB_POOL_SIZE", "6")
            .env("TENANT_GLOBAL_HEARTBEAT_TIMEOUT_SECS", "3")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_ready(&self.global_url(), &mut child).await;
        child
    }

    async fn cell(&self, id: &str) -> Child {
        let (id, region, port, db) = self.cells.iter().find(|c| c.0 == id).unwrap();
        let mut child = Command::new(e2e::process::binary("cell"))
            .args(["--heartbeat-interval-secs", "1"])
            .env("TENANT_CELL_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANT_CELL_ID", id)
            .env("TENANT_CELL_REGION", region)
            .env("TENANT_CELL_DATABASE_URL", db)
            .env("TENANT_CELL_REDIS_URL", backing::redis_url())
            .env("TENANT_CELL_REDIS_PREFIX", &self.prefix)
            .env("TENANT_CELL_GLOBAL_URL", self.global_url())
            .env("TENANT_CELL_JWT_SECRET", SECRET)
            .env("TENANT_CELL_DB_POOL_SIZE", "6")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_ready(&self.cell_url(id), &mut child).await;
        child
    }

    fn admin(&self) -> String {
        self.keys
            .mint("ops", vec![Role::PlatformAdmin], vec![], None, 600)
            .unwrap()
    }

    fn data_plane(&self, cell: &str) -> String {
        let id = shared::ids::CellId::parse(cell).unwrap();
        self.keys
            .mint("edge", vec![Role::DataPlane], vec![], Some(id), 600)
            .unwrap()
    }

    async fn gql(&self, query: &str, vars: Value) -> Value {
        gql(&self.global_url(), &self.admin(), query, vars).await
    }

    /// Two cells UP, one tenant in each; a boolean flag `key`. Returns (eu, us) tenant ids.
    async fn setup(&self, key: &str) -> (String, String) {
        for _ in 0..100 {
            let c = self.gql("{ cells { id status } }", json!({})).await;
            if c["data"]["cells"]
                .as_array()
                .is_some_and(|c| c.iter().filter(|c| c["status"] == "UP").count() == 2)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut ids = Vec::new();
        for region in ["eu-west-1", "us-east-1"] {
            let t = self
                .gql(
                    e2e::stack::CREATE,
                    json!({ "input": { "idempotencyKey": region, "slug": format!("t-{region}"),
                    "name": "T", "region": region, "plan": "pro" } }),
                )
                .await;
            ids.push(
                t["data"]["createTenant"]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{t}"))
                    .to_owned(),
            );
        }
        let f = self
            .gql(
                &e2e::flags::create_flag(),
                json!({ "i": { "key": key, "kind": "BOOLEAN",
                "variants": [{ "name": "on", "value": true }, { "name": "off", "value": false }],
                "offVariant": "off", "idempotencyKey": key } }),
            )
            .await;
        assert!(f.get("errors").is_none(), "{f}");
        (ids[0].clone(), ids[1].clone())
    }

    async fn rollout(&self, id: &str) -> Value {
        let q = format!("query($id: ID!) {{ rollout(id: $id) {{ {ROLLOUT_FIELDS} }} }}");
        self.gql(&q, json!({ "id": id })).await["data"]["rollout"].clone()
    }

    async fn wait(&self, id: &str, what: &str, ok: impl Fn(&Value) -> bool, secs: u64) -> Value {
        let mut last = Value::Null;
        for _ in 0..secs * 10 {
            last = self.rollout(id).await;
            if ok(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("rollout {id} never {what}: {last}");
    }

    async fn variant(&self, cell: &str, tenant: &str, flag: &str) -> Value {
        evaluate(
            &self.cell_url(cell),
            &self.data_plane(cell),
            tenant,
            flag,
            "prod",
        )
        .await
        .1["variant"]
            .clone()
    }

    async fn drop(self) {
        backing::drop_databases(&self.databases).await;
    }
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn both_acked(stage: i64) -> impl Fn(&Value) -> bool {
    move |r: &Value| {
        r["cells"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["ackedStage"] == stage))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_cell_makes_the_rollout_stuck_until_it_returns() {
    let p = Plant::new().await;
    let global = p.global().await;
    let eu_cell = p.cell("eu-west-1-a").await;
    let us_cell = p.cell("us-east-1-a").await;
    let (eu, us) = p.setup("kill-test").await;
    let started = p
        .gql(
            &start_rollout(),
            json!({ "i": { "flagKey": "kill-test", "environment": "prod", "variant": "on",
            "stages": [
                { "name": "canary", "cohort": { "tenantIds": [eu] }, "soakSeconds": 3600 },
                { "name": "all", "cohort": { "percentage": 100 }, "soakSeconds": 1 }
            ],
            "ackDeadlineSeconds": 2, "idempotencyKey": "kill-test" } }),
        )
        .await;
    let id = started["data"]["startRollout"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_owned();
    p.wait(&id, "was acknowledged by both cells", both_acked(0), 20)
        .await;

    // The US cell dies; the operator moves on to the next stage.
    kill(us_cell);
    let adv = p
        .gql(
            "mutation($id: ID!) { advanceRollout(id: $id) { stage } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(adv["data"]["advanceRollout"]["stage"], 1, "{adv}");
    let stuck = p
        .wait(&id, "turned STUCK", |r| r["state"] == "STUCK", 20)
        .await;
    assert_eq!(stuck["stuckCells"], json!(["us-east-1-a"]), "{stuck}");
    assert!(
        stuck["stuckReason"]
            .as_str()
            .unwrap()
            .contains("not acknowledged"),
        "{stuck}"
    );
    // The live cell serves the new stage meanwhile.
    assert_eq!(p.variant("eu-west-1-a", &eu, "kill-test").await, "on");

    // The cell returns, catches up from the stream, acknowledges: the rollout completes.
    let us_cell = p.cell("us-east-1-a").await;
    let done = p
        .wait(&id, "completed", |r| r["state"] == "COMPLETED", 30)
        .await;
    let events: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"STUCK") && events.contains(&"RESUMED"),
        "{events:?}"
    );
    assert_eq!(p.variant("us-east-1-a", &us, "kill-test").await, "on");
    kill(us_cell);
    kill(eu_cell);
    kill(global);
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_global_tier_down_cells_keep_the_stage_and_the_rollout_continues() {
    let p = Plant::new().await;
    let global = p.global().await;
    let eu_cell = p.cell("eu-west-1-a").await;
    let us_cell = p.cell("us-east-1-a").await;
    let (eu, us) = p.setup("down-test").await;
    let started = p
        .gql(
            &start_rollout(),
            json!({ "i": { "flagKey": "down-test", "environment": "prod", "variant": "on",
            "stages": [
                { "name": "canary", "cohort": { "tenantIds": [eu] }, "soakSeconds": 4 },
                { "name": "all", "cohort": { "percentage": 100 }, "soakSeconds": 1 }
            ],
            "ackDeadlineSeconds": 10, "idempotencyKey": "down-test" } }),
        )
        .await;
    let id = started["data"]["startRollout"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_owned();
    p.wait(&id, "was acknowledged by both cells", both_acked(0), 20)
        .await;

    kill(global);
    // Past the soak, with the global tier gone: the cells keep serving stage 0.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(p.variant("eu-west-1-a", &eu, "down-test").await, "on");
    assert_eq!(p.variant("us-east-1-a", &us, "down-test").await, "off");

    let global = p.global().await;
    let done = p
        .wait(&id, "completed", |r| r["state"] == "COMPLETED", 30)
        .await;
    assert_eq!(done["stage"], 1);
    for _ in 0..300 {
        if p.variant("us-east-1-a", &us, "down-test").await == "on" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flag = p.gql("{ flag(key: \"down-test\") { version environments { name enabled rules { variant percentage } } } }", json!({})).await;
    assert_eq!(
        p.variant("us-east-1-a", &us, "down-test").await,
        "on",
        "the completed rollout's targeting: {flag}"
    );
    kill(us_cell);
    kill(eu_cell);
    kill(global);
    p.drop().await;
}
