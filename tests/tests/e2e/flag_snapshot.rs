//! A cell evaluates flags from its own database: after a restart with the
//! global tier and Redis out of reach it serves the same answers, and
//! `tenantctl flags eval` on a saved snapshot gives them too.

use std::process::Command;

use e2e::flags::*;
use e2e::process::binary;
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::ids::{CellId, Region};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_cell_serves_flags_without_global_or_redis_and_tenantctl_agrees() {
    let mut s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let mut ids = Vec::new();
    for i in 0..6 {
        let t = s.create_tenant(&format!("snap-{i}"), "eu-west-1").await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    boolean_flag(&s, "beta").await;
    let rules = json!([
        { "variant": "on", "tenantIds": [ids[0]] },
        { "variant": "on", "constraints": [{ "attribute": "plan", "operator": "IN", "values": ["pro"] }], "percentage": 50 }
    ]);
    let set = s
        .gql(
            &admin,
            &set_targeting(),
            json!({ "i": { "key": "beta", "environment": "prod", "enabled": true,
            "rules": rules, "expectedVersion": 1, "idempotencyKey": "beta-1" } }),
        )
        .await;
    assert_eq!(set["data"]["setFlagTargeting"]["version"], 2, "{set}");
    let cell = s.cell("eu-west-1-a").url();
    let tok = data_plane(&s, "eu-west-1-a");
    wait_variant(&cell, &tok, &ids[0], "beta", "prod", "on").await;
    let mut before = Vec::new();
    for id in &ids {
        before.push(evaluate(&cell, &tok, id, "beta", "prod").await.1);
    }
    assert!(
        before.iter().all(|e| e["reason"] == "TARGETING_MATCH"
            || e["reason"] == "SPLIT"
            || e["reason"] == "DEFAULT"),
        "{before:?}"
    );

    // tenantctl: save the snapshot, evaluate offline, same answers.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.json");
    let out = Command::new(binary("tenantctl"))
        .args([
            "flags",
            "snapshot",
            "--cell-url",
            &cell,
            "--token",
            &tok,
            "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (id, want) in ids.iter().zip(&before) {
        let out = Command::new(binary("tenantctl"))
            .args([
                "flags",
                "eval",
                "--tenant",
                id,
                "--flag",
                "beta",
                "--environment",
                "prod",
                "--snapshot",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(&got, want, "tenantctl and the cell disagree for {id}");
    }

    // Restart the cell on its database with the global tier and Redis unreachable.
    let old = s.cells.remove(
        s.cells
            .iter()
            .position(|c| c.state.cell_id.as_str() == "eu-west-1-a")
            .unwrap(),
    );
    old.stop().await;
    let restarted = cell::build(cell::Settings {
        listen: "127.0.0.1:0".into(),
        cell_id: CellId::parse("eu-west-1-a").unwrap(),
        region: Region::parse("eu-west-1").unwrap(),
        endpoint: None,
        capacity: 100,
        database_url: s.cell_database_urls["eu-west-1-a"].clone(),
        redis_url: Some("redis://127.0.0.1:1".into()),
        redis_prefix: s.redis_prefix.clone(),
        global_url: Some("http://127.0.0.1:1".into()),
        heartbeat_interval: std::time::Duration::from_millis(500),
        keys: s.keys.clone(),
        dev_mode: false,
        introspection: false,
        limits: Default::default(),
        transport: None,
        db_pool_size: 6,
        sync: Default::default(),
        quota: Default::default(),
    })
    .await
    .expect("the cell starts without the global tier and Redis");
    let url = restarted.url();
    for (id, want) in ids.iter().zip(&before) {
        let (status, got) = evaluate(&url, &tok, id, "beta", "prod").await;
        assert_eq!(status, 200);
        assert_eq!(&got, want, "the restarted cell changed its answer for {id}");
    }
    restarted.stop().await;
    s.stop().await;
}
