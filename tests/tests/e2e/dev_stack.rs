//! The embedded dev stack as a separate process: `tenantctl dev` on SQLite,
//! stopped with SIGTERM and started again on the same data dir.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use e2e::process::{gql, terminate};
use serde_json::json;

struct Dev {
    child: Child,
    url: String,
    admin: String,
    cells: Vec<String>,
}

fn start(data_dir: &std::path::Path) -> Dev {
    let mut child = Command::new(e2e::process::binary("tenantctl"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data_dir.join("dev.stderr")).expect("stderr file"))
        .spawn()
        .expect("tenantctl dev starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut admin, mut cells) = (String::new(), String::new(), Vec::new());
    for line in lines.by_ref() {
        let line = line.expect("stdout line");
        if let Some(u) = line.strip_prefix("global GraphQL: ") {
            url = u.trim_end_matches("/graphql").to_owned();
        } else if let Some(t) = line.strip_prefix("admin token (12 h): ") {
            admin = t.to_owned();
        } else if line.starts_with("cell ") {
            cells.push(line.clone());
        } else if line == "ready" {
            break;
        }
    }
    assert!(
        !url.is_empty() && !admin.is_empty(),
        "dev stack printed its URL and token; its stderr: {}",
        std::fs::read_to_string(data_dir.join("dev.stderr")).unwrap_or_default()
    );
    Dev {
        child,
        url,
        admin,
        cells,
    }
}

fn stop(d: Dev) {
    terminate(d.child);
}

#[tokio::test]
async fn dev_stack_keeps_tenants_across_restarts_and_mints_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(dir.path());
    assert_eq!(dev.cells.len(), 2, "{:?}", dev.cells);
    assert!(dev.cells[0].starts_with("cell us-east-1-a (us-east-1): http://127.0.0.1:"));
    assert!(dev.cells[1].starts_with("cell eu-west-1-a (eu-west-1): http://127.0.0.1:"));
    assert!(dir.path().join("global.db").exists());
    assert!(dir.path().join("cells/us-east-1-a.db").exists());
    assert!(dir.path().join("cells/eu-west-1-a.db").exists());

    let created = gql(
        &dev.url,
        &dev.admin,
        "mutation($i: CreateTenantInput!) { createTenant(input: $i) { id status cell { id } } }",
        json!({ "i": { "idempotencyKey": "dev-1", "slug": "persisted", "name": "Persisted", "region": "eu-west-1", "plan": "free" } }),
    )
    .await;
    assert_eq!(
        created["data"]["createTenant"]["status"], "ACTIVE",
        "{created}"
    );
    let id = created["data"]["createTenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The in-process sync transport carries registry changes to the cells.
    let defined = gql(
        &dev.url,
        &dev.admin,
        "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
        json!({ "i": { "key": "ui.theme", "type": "STRING", "default": "light", "scopes": ["TENANT"], "enum": ["light", "dark"] } }),
    )
    .await;
    assert_eq!(
        defined["data"]["defineConfigKey"]["version"], 1,
        "{defined}"
    );
    let cell_url = dev.cells[0]
        .rsplit(": ")
        .next()
        .unwrap()
        .trim_end_matches("/graphql")
        .to_owned();
    let mut seen = serde_json::Value::Null;
    for _ in 0..50 {
        seen = gql(
            &cell_url,
            &dev.admin,
            "{ configKeys { key default } }",
            json!({}),
        )
        .await;
        if seen["data"]["configKeys"][0]["key"] == "ui.theme" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen["data"]["configKeys"][0]["default"], "light", "{seen}");
    stop(dev);

    let dev = start(dir.path());
    // A viewer token minted from the data dir's key reads the tenant after the restart.
    let out = Command::new(e2e::process::binary("tenantctl"))
        .args([
            "token",
            "--subject",
            "viewer",
            "--role",
            "tenant-viewer",
            "--tenant",
            &id,
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let viewer = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(viewer.split('.').count(), 3, "the JWT alone on stdout");
    let read = gql(
        &dev.url,
        &viewer,
        "query($id: ID!) { tenant(id: $id) { slug name status cell { id status } } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(read["data"]["tenant"]["slug"], "persisted", "{read}");
    assert_eq!(read["data"]["tenant"]["name"], "Persisted", "{read}");
    assert_eq!(read["data"]["tenant"]["cell"]["status"], "UP");
    // `tenantctl impacted` asks the dev stack which tenants a cell holds.
    let cell = read["data"]["tenant"]["cell"]["id"].as_str().unwrap();
    let impacted = |extra: &[&str]| {
        let out = Command::new(e2e::process::binary("tenantctl"))
            .args(["impacted", "--url", &dev.url, "--cell", cell])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let answer: serde_json::Value = serde_json::from_str(&impacted(&["--json"])).unwrap();
    assert_eq!(answer["totalCount"], 1, "{answer}");
    assert_eq!(answer["complete"], true, "{answer}");
    assert_eq!(
        answer["tenants"]["edges"][0]["node"]["tenant"]["id"],
        id.as_str()
    );
    let table = impacted(&[]);
    assert!(table.starts_with("TENANT"), "{table}");
    assert!(
        table.contains("persisted") && table.contains(&format!("in cell {cell}")),
        "{table}"
    );
    assert!(table.contains("1 tenants (complete)"), "{table}");
    stop(dev);
}

#[tokio::test]
async fn dev_stack_starts_more_cells_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(e2e::process::binary("tenantctl"))
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--cells",
            "3",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|l| l != "ready")
        .filter(|l| l.starts_with("cell "))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[2].starts_with("cell us-east-1-b (us-east-1)"),
        "{lines:?}"
    );
}
