//! Runs the workspace's binaries as separate processes.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command};
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
        let status = Command::new(cargo)
            .args(["build", "--bin", name])
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

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (15 s at most) for `url`'s `/readyz` to answer 200; fails with the
/// child's stderr if it exits first.
pub async fn wait_ready(url: &str, child: &mut Child) {
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}
