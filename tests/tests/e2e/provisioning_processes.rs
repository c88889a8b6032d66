//! The provisioning saga's failure tests with the real `global` and `cell`
//! binaries on PostgreSQL and Redis: the global process killed at a crash
//! point between steps, a cell down and back within the deadline, and a
//! cell down past it.

use std::process::Child;
use std::time::Duration;

use e2e::backing;
use e2e::process::{free_port, gql, spawn_cell, spawn_global, terminate};
use e2e::rows::tenant_rows;
use e2e::stack::{CREATE, SECRET, code};
use serde_json::{Value, json};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};

struct Env {
    global_db: String,
    cell_db: String,
    prefix: String,
    dbs: Vec<String>,
    gport: u16,
    cport: u16,
    admin: String,
}

impl Env {
    async fn new() -> Env {
        let (g, global_db) = backing::create_database().await;
        let (c, cell_db) = backing::create_database().await;
        let keys = Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap();
        Env {
            global_db,
            cell_db,
            prefix: backing::redis_prefix().await,
            dbs: vec![g, c],
            gport: free_port(),
            cport: free_port(),
            admin: keys
                .mint("ops", vec![Role::PlatformAdmin], vec![], None, 600)
                .unwrap(),
        }
    }

    fn global_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gport)
    }

    fn cell_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cport)
    }

    async fn global(&self, extra: &[(&str, &str)]) -> Child {
        spawn_global(self.gport, &self.global_db, &self.prefix, extra).await
    }

    async fn cell(&self) -> Child {
        spawn_cell(
            self.cport,
            "eu-west-1-a",
            "eu-west-1",
            &self.cell_db,
            &self.prefix,
            &self.global_url(),
        )
        .await
    }

    async fn wait_cell_up(&self) {
        for _ in 0..100 {
            let v = gql(
                &self.global_url(),
                &self.admin,
                "{ cells { id status } }",
                json!({}),
            )
            .await;
            if v["data"]["cells"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["status"] == "UP"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cell never registered");
    }

    async fn create(&self, key: &str, slug: &str) -> Value {
        gql(
            &self.global_url(),
            &self.admin,
            CREATE,
            json!({ "input": { "idempotencyKey": key, "slug": slug, "name": "Proc", "region": "eu-west-1", "plan": "pro" } }),
        )
        .await
    }

    async fn tenant(&self, slug: &str) -> Value {
        let q = "query($s: String!) { tenantBySlug(slug: $s) { id status provisioning { status reason steps { name status attempts } } } }";
        let v = gql(&self.global_url(), &self.admin, q, json!({ "s": slug })).await;
        v["data"]["tenantBySlug"].clone()
    }

    /// Polls the tenant until `done` holds (30 s at most).
    async fn until(&self, slug: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            last = self.tenant(slug).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tenant `{slug}` never got there: {last}");
    }

    async fn cell_tenants(&self) -> i64 {
        let v = gql(
            &self.cell_url(),
            &self.admin,
            "{ cell { tenantCount } }",
            json!({}),
        )
        .await;
        v["data"]["cell"]["tenantCount"]
            .as_i64()
            .unwrap_or_else(|| panic!("{v}"))
    }

    async fn drop(self) {
        backing::drop_databases(&self.dbs).await;
    }
}

fn step<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["provisioning"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{t}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn global_killed_at_a_crash_point_resumes_after_restart_and_completes_once() {
    let e = Env::new().await;
    let lease = [("TENANT_GLOBAL_SAGA_LEASE_SECS", "2")];
    let mut global = e
        .global(&[lease[0], ("TENANT_GLOBAL_TEST_CRASH_AFTER_STEP", "create")])
        .await;
    let cell = e.cell().await;
    e.wait_cell_up().await;

    // The process exits right after the cell created the tenant: the
    // request gets no answer.
    let answered = reqwest::Client::new()
        .post(format!("{}/graphql", e.global_url()))
        .bearer_auth(&e.admin)
        .json(&json!({ "query": CREATE, "variables": { "input": { "idempotencyKey": "crash-1", "slug": "crashy", "name": "Proc", "region": "eu-west-1", "plan": "pro" } } }))
        .send()
        .await;
    assert!(
        answered.is_err(),
        "the crash point did not stop the process"
    );
    let mut status = None;
    for _ in 0..100 {
        status = global.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(86),
        "exited at the crash point"
    );
    assert_eq!(
        e.cell_tenants().await,
        1,
        "the cell made the tenant before the crash"
    );

    // Restarted without the crash point: the reconciler takes the saga over
    // once its lease has run out, and finishes it.
    let global = e.global(&lease).await;
    let t = e
        .until("crashy", |t| t["provisioning"]["status"] == "DONE")
        .await;
    assert_eq!(t["status"], "ACTIVE", "{t}");
    assert_eq!(
        step(&t, "create")["attempts"],
        1,
        "create was not run again: {t}"
    );
    assert_eq!(step(&t, "allocate")["status"], "DONE", "{t}");
    assert_eq!(step(&t, "activate")["status"], "DONE", "{t}");
    assert_eq!(e.cell_tenants().await, 1, "created exactly once");
    let again = e.create("crash-1", "crashy").await;
    assert_eq!(again["data"]["createTenant"]["id"], t["id"], "{again}");
    assert_eq!(again["data"]["createTenant"]["status"], "ACTIVE");

    terminate(cell);
    terminate(global);
    e.drop().await;
}

#[tokio::test]
async fn a_cell_process_down_then_back_within_the_deadline_ends_active_once() {
    let e = Env::new().await;
    // The registry still has the cell UP: it stopped moments ago.
    let global = e
        .global(&[
            ("TENANT_GLOBAL_HEARTBEAT_TIMEOUT_SECS", "60"),
            ("TENANT_GLOBAL_PROVISIONING_WAIT_MS", "500"),
        ])
        .await;
    let cell = e.cell().await;
    e.wait_cell_up().await;
    terminate(cell);

    let first = e.create("back-1", "phoenix").await;
    assert_eq!(code(&first), Some("UNAVAILABLE"), "{first}");
    let t = e.tenant("phoenix").await;
    assert_eq!(t["status"], "PROVISIONING", "{t}");
    assert!(step(&t, "create")["attempts"].as_i64().unwrap() >= 1, "{t}");

    let cell = e.cell().await;
    let t = e.until("phoenix", |t| t["status"] == "ACTIVE").await;
    assert_eq!(step(&t, "allocate")["attempts"], 1, "{t}");
    assert_eq!(e.cell_tenants().await, 1, "created once");
    let again = e.create("back-1", "phoenix").await;
    assert_eq!(again["data"]["createTenant"]["id"], t["id"], "{again}");

    terminate(cell);
    terminate(global);
    e.drop().await;
}

#[tokio::test]
async fn a_cell_process_down_past_the_deadline_fails_and_leaves_nothing() {
    let e = Env::new().await;
    let global = e
        .global(&[
            ("TENANT_GLOBAL_HEARTBEAT_TIMEOUT_SECS", "60"),
            ("TENANT_GLOBAL_PROVISIONING_WAIT_MS", "300"),
            ("TENANT_GLOBAL_PROVISIONING_DEADLINE_SECS", "2"),
        ])
        .await;
    let cell = e.cell().await;
    e.wait_cell_up().await;
    terminate(cell);

    let first = e.create("gone-1", "icarus").await;
    assert_eq!(code(&first), Some("UNAVAILABLE"), "{first}");
    let t = e.until("icarus", |t| t["status"] == "FAILED").await;
    assert!(
        t["provisioning"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("deadline")),
        "{t}"
    );
    let id = t["id"].as_str().unwrap().to_owned();

    // Compensation finishes once the cell answers again.
    let cell = e.cell().await;
    let t = e
        .until("icarus", |t| t["provisioning"]["status"] == "FAILED")
        .await;
    assert_eq!(step(&t, "create")["status"], "COMPENSATED", "{t}");
    assert_eq!(t["status"], "FAILED");
    let rows = tenant_rows(&e.cell_db, &id).await;
    assert!(rows.values().all(|n| *n == 0), "{rows:?}");
    assert_eq!(e.cell_tenants().await, 0);

    terminate(cell);
    terminate(global);
    e.drop().await;
}
