//! Runs the workspace's binaries as separate processes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The path of a workspace binary, building it first when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // A bench runs from target/release: build the release binary then.
        let release = dir.file_name().is_some_and(|d| d == "release");
        let mut args = vec!["build", "--bin", name];
        if release {
            args.push("--release");
        }
        let status = Command::new(cargo)
            .args(args)
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "building {name} failed");
    }
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Sends SIGTERM and waits (10 s at most) for a clean exit; returns stdout.
pub fn terminate(mut child: std::process::Child) -> String {
    use std::io::Read;
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM delivered");
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("child status") {
            assert!(status.success(), "SIGTERM drains and exits 0, got {status}");
            let mut out = String::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("did not stop within 10 s of SIGTERM");
}

/// POSTs a GraphQL request to a tier at `url` and returns the JSON answer.
pub async fn gql(
    url: &str,
    token: &str,
    query: &str,
    vars: serde_json::Value,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "query": query, "variables": vars }))
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("JSON answer")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `url/readyz` answers 200, failing if `child` exits first.
pub async fn wait_ready(url: &str, child: &mut std::process::Child) {
    use std::io::Read;
    for _ in 0..150 {
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
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

/// Starts the `global` binary on `port` with `extra` environment variables.
pub async fn spawn_global(
    port: u16,
    database_url: &str,
    redis_prefix: &str,
    extra: &[(&str, &str)],
) -> std::process::Child {
    let mut cmd = Command::new(binary("global"));
    cmd.env("TENANT_GLOBAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANT_GLOBAL_DATABASE_URL", database_url)
        .env("TENANT_GLOBAL_REDIS_URL", crate::backing::redis_url())
        .env("TENANT_GLOBAL_REDIS_PREFIX", redis_prefix)
        .env("TENANT_GLOBAL_JWT_SECRET", crate::stack::SECRET)
        .env("TENANT_GLOBAL_DB_POOL_SIZE", "6")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log_file("global", port));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("global starts");
    wait_ready(&format!("http://127.0.0.1:{port}"), &mut child).await;
    child
}

/// Starts the `cell` binary `id` of `region` on `port`, registering with `global_url`.
pub async fn spawn_cell(
    port: u16,
    id: &str,
    region: &str,
    database_url: &str,
    redis_prefix: &str,
    global_url: &str,
) -> std::process::Child {
    spawn_cell_with(
        port,
        id,
        region,
        database_url,
        redis_prefix,
        global_url,
        &[],
    )
    .await
}

/// As [`spawn_cell`], with `extra` environment variables.
pub async fn spawn_cell_with(
    port: u16,
    id: &str,
    region: &str,
    database_url: &str,
    redis_prefix: &str,
    global_url: &str,
    extra: &[(&str, &str)],
) -> std::process::Child {
    let mut cmd = Command::new(binary("cell"));
    cmd.env("TENANT_CELL_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANT_CELL_ID", id)
        .env("TENANT_CELL_REGION", region)
        .env("TENANT_CELL_DATABASE_URL", database_url)
        .env("TENANT_CELL_REDIS_URL", crate::backing::redis_url())
        .env("TENANT_CELL_REDIS_PREFIX", redis_prefix)
        .env("TENANT_CELL_GLOBAL_URL", global_url)
        .env("TENANT_CELL_JWT_SECRET", crate::stack::SECRET)
        .env("TENANT_CELL_DB_POOL_SIZE", "6")
        .env("TENANT_CELL_HEARTBEAT_INTERVAL_SECS", "1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log_file(id, port));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("cell starts");
    wait_ready(&format!("http://127.0.0.1:{port}"), &mut child).await;
    child
}

/// Where a spawned tier's logs go (a file, so a chatty process never blocks
/// on a full pipe): `$TMPDIR/tcp-{name}-{port}.log`.
fn log_file(name: &str, port: u16) -> std::fs::File {
    let path = std::env::temp_dir().join(format!("tcp-{name}-{port}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}
