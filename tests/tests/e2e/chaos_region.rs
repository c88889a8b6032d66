//! Chaos: a region outage. The global tier and three cells run as real
//! processes on PostgreSQL and Redis; under mixed load (provisioning,
//! config writes, consumes, usage, flag evaluations, impact queries) both
//! cells of us-east-1 are killed with SIGKILL. The other region sees no
//! error, the global tier keeps answering with the region's cells DOWN and
//! their tenants impacted, provisioning into the region answers
//! UNAVAILABLE, and after a restart every acknowledged write is there.
//! Prints the measured cell RTO and the limiter's RPO.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::chaos::{CELLS, Chaos, IMPACT, Tenant, kill, ms};
use e2e::load::{Stop, repeating};
use e2e::process::terminate;
use e2e::stack::{CREATE, code};
use e2e::workload::{Workload, check_acknowledged};
use serde_json::{Value, json};

/// `(tenant, cell, reasons)` of an impact answer, sorted.
fn impacted(v: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<_> = v["data"]["impactedTenants"]["tenants"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| {
            let n = &e["node"];
            (
                n["tenant"]["id"].as_str().unwrap().to_owned(),
                n["cell"]["id"].as_str().unwrap().to_owned(),
                n["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Impact queries and global reads in a loop: any error counts.
fn global_reads(
    c: &Arc<Chaos>,
    stop: &Stop,
    eu: &Tenant,
) -> tokio::task::JoinHandle<e2e::load::Tally> {
    let (c, id) = (c.clone(), eu.id.clone());
    tokio::spawn(repeating(
        stop.clone(),
        Duration::from_millis(200),
        move || {
            let (c, id) = (c.clone(), id.clone());
            async move {
                let v = c
                    .try_gql(
                        IMPACT,
                        json!({ "s": { "flagKey": e2e::chaos::FLAG, "flagVariant": "on" } }),
                    )
                    .await?;
                if v.get("errors").is_some() || v["data"]["impactedTenants"].is_null() {
                    return Err(format!("impact: {v}"));
                }
                let v = c
                .try_gql(
                    "query($id: ID!) { cells { id status } tenant(id: $id) { name plan status } }",
                    json!({ "id": id }),
                )
                .await?;
                if v.get("errors").is_some() || v["data"]["tenant"]["name"].is_null() {
                    return Err(format!("read: {v}"));
                }
                Ok(1)
            }
        },
    ))
}

/// Provisioning into eu-west-1 in a loop: each must end ACTIVE at once.
fn provisioning(c: &Arc<Chaos>, stop: &Stop) -> tokio::task::JoinHandle<e2e::load::Tally> {
    let c = c.clone();
    tokio::spawn(e2e::load::retrying(
        stop.clone(),
        Duration::from_millis(400),
        Duration::from_secs(30),
        move |i| {
            let c = c.clone();
            async move {
                let slug = format!("eu-new-{i}");
                let at = Instant::now();
                let v = c
                    .try_gql(
                        CREATE,
                        json!({ "input": { "idempotencyKey": slug, "slug": slug, "name": slug, "region": "eu-west-1", "plan": "pro" } }),
                    )
                    .await?;
                match v["data"]["createTenant"]["status"].as_str() {
                    Some("ACTIVE") => Ok(at.elapsed().as_millis() as i64),
                    _ => Err(format!("create {slug}: {v}")),
                }
            }
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_killed_under_load_loses_no_acknowledged_write() {
    let c = Arc::new(Chaos::new(None).await);
    let _reaper = c.reaper();
    let (global, mut cells) = c.start().await;
    let mut us = Vec::new();
    for i in 0..4 {
        us.push(c.create(&format!("us-{i}"), "us-east-1").await);
    }
    assert!(
        us.iter().any(|t| t.cell == 0) && us.iter().any(|t| t.cell == 1),
        "both us cells hold tenants: {us:?}"
    );
    let eu = vec![
        c.create("eu-0", "eu-west-1").await,
        c.create("eu-1", "eu-west-1").await,
    ];
    c.catalog(&[&us[0], &eu[0]]).await;
    // Every cell holds the registry, the metric and the flag before the load.
    for t in us.iter().chain(&eu) {
        let want = if t.id == us[0].id || t.id == eu[0].id {
            "on"
        } else {
            "off"
        };
        c.wait_variant(t.cell, &t.id, want, Duration::from_secs(20))
            .await;
        for _ in 0..200 {
            if c.hooks(t.cell)
                .check(&t.id, e2e::chaos::METRIC, 1)
                .await
                .is_ok()
                && c.config(&t.id).await.0 == json!(0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let all: Vec<Tenant> = us.iter().chain(&eu).cloned().collect();
    let mut load = Workload::start(&c, &all, &[0, 1, 2]);
    load.add("reads", global_reads(&c, &load.stop, &eu[0]));
    load.add("provision", provisioning(&c, &load.stop));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The region goes: both us-east-1 cells SIGKILLed.
    let killed_at = Instant::now();
    kill(cells.remove(0));
    kill(cells.remove(0));
    let detected = c
        .wait_status(&[0, 1], "DOWN", Duration::from_secs(15))
        .await;
    eprintln!(
        "region outage: both cells DOWN {} ms after SIGKILL",
        ms(detected)
    );

    let v = c
        .gql(
            IMPACT,
            json!({ "s": { "flagKey": e2e::chaos::FLAG, "flagVariant": "on" } }),
        )
        .await;
    let answer = &v["data"]["impactedTenants"];
    assert_eq!(answer["complete"], false, "{v}");
    let mut unreachable: Vec<&str> = answer["unreachableCells"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    unreachable.sort();
    assert_eq!(unreachable, ["us-east-1-a", "us-east-1-b"], "{v}");
    let mut want: Vec<(String, String, Vec<String>)> = us
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                CELLS[t.cell].0.to_owned(),
                vec!["cell unreachable".to_owned()],
            )
        })
        .collect();
    want.push((
        eu[0].id.clone(),
        CELLS[2].0.to_owned(),
        vec![format!("flag {} serves on in prod", e2e::chaos::FLAG)],
    ));
    want.sort();
    assert_eq!(
        impacted(&v),
        want,
        "the region's tenants listed as impacted"
    );

    let refused = c
        .gql(
            CREATE,
            json!({ "input": { "idempotencyKey": "us-during", "slug": "us-during", "name": "x", "region": "us-east-1", "plan": "pro" } }),
        )
        .await;
    assert_eq!(code(&refused), Some("UNAVAILABLE"), "{refused}");
    // A flag change made while the region is away reaches it afterwards.
    let changed = c.target(&[&us[1], &eu[1]], 2, "target-2").await;
    assert_eq!(
        changed["data"]["setFlagTargeting"]["version"], 3,
        "{changed}"
    );
    c.wait_variant(2, &eu[1].id, "on", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Restart: measure each cell from its start to /readyz, and the region
    // from the restart to serving through the global API, caught up.
    let restart = Instant::now();
    let mut ready = Vec::new();
    for i in 0..2 {
        let at = Instant::now();
        cells.insert(i, c.spawn_cell(i).await);
        ready.push(at.elapsed());
    }
    c.wait_status(&[0, 1], "UP", Duration::from_secs(15)).await;
    for t in &us {
        let v = c
            .gql(
                "query($id: ID!) { tenant(id: $id) { name plan } }",
                json!({ "id": t.id }),
            )
            .await;
        assert!(v.get("errors").is_none(), "{v}");
    }
    c.wait_variant(us[1].cell, &us[1].id, "on", Duration::from_secs(20))
        .await;
    c.wait_variant(us[0].cell, &us[0].id, "off", Duration::from_secs(20))
        .await;
    let serving = restart.elapsed();
    eprintln!(
        "cell RTO: start to /readyz {} ms and {} ms; restart to UP, serving through the global API and caught up with the flag change {} ms; outage (SIGKILL to restart) {} ms",
        ms(ready[0]),
        ms(ready[1]),
        ms(serving),
        ms(restart - killed_at)
    );
    let after = c
        .gql(
            IMPACT,
            json!({ "s": { "flagKey": e2e::chaos::FLAG, "flagVariant": "on" } }),
        )
        .await;
    assert_eq!(
        after["data"]["impactedTenants"]["complete"], true,
        "{after}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let tallies = load.finish().await;
    for (name, t) in &tallies {
        let region_us =
            us.iter().any(|u| name.ends_with(&u.id)) || name == "eval:0" || name == "eval:1";
        if region_us {
            assert!(
                t.errors.iter().all(|e| e == "UNAVAILABLE"
                    || e == "Unavailable"
                    || e.starts_with("unreachable")),
                "{name}: only UNAVAILABLE while the region is away: {:?}",
                t.errors
            );
        } else {
            assert!(t.errors.is_empty(), "{name} saw errors: {:?}", t.errors);
            assert!(!t.acked.is_empty(), "{name} did nothing");
        }
    }
    let created = tallies["provision"].acked.len();
    let slowest = tallies["provision"]
        .acked
        .iter()
        .map(|a| a.0)
        .max()
        .unwrap_or(0);
    let v = c
        .gql(
            "{ tenants(first: 100, filter: { region: \"eu-west-1\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["tenants"]["totalCount"], 2 + created, "{v}");

    let (mut lost, mut consumed, mut last_interval) = (0, 0, 0);
    for t in &all {
        let (l, n) = check_acknowledged(&c, &tallies, t).await;
        if t.cell == 2 {
            assert_eq!(l, 0, "nothing lost where nothing was killed");
        } else {
            // The in-memory limiter writes its counters every 100 ms: a
            // SIGKILL loses at most what was acknowledged since the last write.
            let recent = tallies[&format!("consume:{}", t.id)]
                .acked_between(killed_at - Duration::from_secs(1), killed_at);
            assert!(
                l as usize <= recent,
                "{l} consumes lost, {recent} acknowledged in the last second"
            );
            last_interval += recent;
        }
        lost += l;
        consumed += n;
    }
    let writes: usize = tallies
        .iter()
        .filter(|(k, _)| k.starts_with("config:") || k.starts_with("usage:"))
        .map(|(_, t)| t.acked.len())
        .sum();
    eprintln!(
        "region outage RPO: {writes} acknowledged config writes and usage events, 0 lost; \
         consumes: {consumed} acknowledged, {lost} no longer counted after the SIGKILL \
         ({last_interval} were acknowledged in the last second before it); {created} tenants provisioned in eu-west-1 during the run, the slowest in {slowest} ms"
    );

    for cell in cells {
        terminate(cell);
    }
    terminate(global);
    c.drop_databases().await;
}
