//! Propagation from a change's commit at the global tier to its application
//! in every cell, on PostgreSQL + Redis with three cells.
//!
//! cargo bench -p e2e --bench propagation -- [--changes N] [--rate PER_SECOND]
//!
//! Each change defines a new config key through the global tier's service
//! (the same call its GraphQL resolver makes), from `--writers` tasks. Its commit
//! time is the global row's `updated_at`; its application time in a cell is
//! that cell's row's `updated_at` (same clock, same machine). `--rate`
//! paces the writers; without it they go as fast as they can.

// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::{Backend, CellSpec, Options, Stack};
use global::service::configkeys;
use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::json;
use shared::configkeys::{KeyDef, Scope, ValueType};
use shared::sync::outbox::entity as outbox;

struct Args {
    changes: usize,
    rate: Option<f64>,
    writers: usize,
    repair_secs: Option<u64>,
}

fn args() -> Args {
    let mut a = Args {
        changes: 10_000,
        rate: None,
        writers: 8,
        repair_secs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--changes" => a.changes = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.changes),
            "--rate" => a.rate = it.next().and_then(|v| v.parse().ok()),
            "--repair-secs" => a.repair_secs = it.next().and_then(|v| v.parse().ok()),
            "--writers" => a.writers = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.writers),
            _ => {}
        }
    }
    a
}

async fn stamps(db: &DatabaseConnection) -> HashMap<String, chrono::DateTime<chrono::Utc>> {
    shared::synced::all::<KeyDef, _>(db)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|k| Some((k.def.key, k.updated_at?)))
        .collect()
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = Options::new(Backend::Postgres);
        if let Some(secs) = a.repair_secs {
            o.sync.repair_interval = Duration::from_secs(secs);
        }
        o.cells = vec![
            CellSpec {
                id: "us-east-1-a",
                region: "us-east-1",
                capacity: 10,
            },
            CellSpec {
                id: "us-east-1-b",
                region: "us-east-1",
                capacity: 10,
            },
            CellSpec {
                id: "eu-west-1-a",
                region: "eu-west-1",
                capacity: 10,
            },
        ];
        let s = Stack::start_with(o).await;
        let per_writer = a.changes / a.writers;
        let interval = a
            .rate
            .map(|r| Duration::from_secs_f64(a.writers as f64 / r));
        let started = Instant::now();
        let writers = (0..a.writers).map(|w| {
            let st = s.global.state.clone();
            tokio::spawn(async move {
                let mut tick = interval.map(tokio::time::interval);
                for i in 0..per_writer {
                    if let Some(t) = tick.as_mut() {
                        t.tick().await;
                    }
                    let def = KeyDef {
                        key: format!("bench.w{w}.k{i}"),
                        value_type: ValueType::Int,
                        default: json!(i),
                        scopes: vec![Scope::Tenant],
                        description: String::new(),
                        min: None,
                        max: None,
                        allowed: None,
                        pattern: None,
                        json_schema: None,
                        deprecated: false,
                    };
                    configkeys::define(&st, def, None)
                        .await
                        .expect("change committed");
                }
            })
        });
        futures_util::future::join_all(writers).await;
        let write_secs = started.elapsed().as_secs_f64();
        let total = per_writer * a.writers;
        // Wait for every cell to hold every key.
        for c in &s.cells {
            for _ in 0..1200 {
                if stamps(&c.state.db).await.len() >= total {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let global = stamps(&s.global.state.db).await;
        // (commit time, latency) of every (change, cell).
        let mut samples: Vec<(chrono::DateTime<chrono::Utc>, f64)> = Vec::new();
        for c in &s.cells {
            let cell = stamps(&c.state.db).await;
            assert_eq!(
                cell.len(),
                total,
                "cell {} holds every key",
                c.state.cell_id
            );
            for (k, at) in &cell {
                let committed = global[k];
                samples.push((
                    committed,
                    (*at - committed).num_microseconds().unwrap_or(0) as f64 / 1000.0,
                ));
            }
        }
        samples.sort_by_key(|x| x.0);
        let median = |xs: &[(chrono::DateTime<chrono::Utc>, f64)]| {
            let mut v: Vec<f64> = xs.iter().map(|x| x.1).collect();
            v.sort_by(|x, y| x.total_cmp(y));
            v[v.len() / 2]
        };
        let tenth = samples.len() / 10;
        let (first, last) = (
            median(&samples[..tenth]),
            median(&samples[samples.len() - tenth..]),
        );
        let mut lat_ms: Vec<f64> = samples.iter().map(|x| x.1).collect();
        lat_ms.sort_by(|x, y| x.total_cmp(y));
        let pct = |p: f64| lat_ms[((lat_ms.len() as f64 * p) as usize).min(lat_ms.len() - 1)];
        println!(
            "changes={total} cells=3 writers={} rate={} achieved={:.0}/s",
            a.writers,
            a.rate
                .map(|r| format!("{r}/s"))
                .unwrap_or_else(|| "unpaced".into()),
            total as f64 / write_secs
        );
        println!(
            "propagation ms: p50={:.2} p99={:.2} max={:.2}",
            pct(0.50),
            pct(0.99),
            lat_ms[lat_ms.len() - 1]
        );
        println!("median lag, first tenth of the run: {first:.2} ms; last tenth: {last:.2} ms");
        // Where the time goes: commit → published by the relay (global outbox).
        let mut relay: Vec<(chrono::DateTime<chrono::Utc>, f64)> = outbox::Entity::find()
            .all(&s.global.state.db)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|r| {
                r.published_at.map(|p| {
                    (
                        r.created_at,
                        (p - r.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0,
                    )
                })
            })
            .collect();
        relay.sort_by_key(|x| x.0);
        let tenth = relay.len() / 10;
        println!(
            "commit → published (relay) median ms, first tenth: {:.2}; last tenth: {:.2}",
            median(&relay[..tenth]),
            median(&relay[relay.len() - tenth..])
        );
        s.stop().await;
    });
}
