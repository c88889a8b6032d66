//! Quota decisions and usage ingestion in one cell (PostgreSQL, in-memory
//! limiter), with `redis-benchmark -t incr` as the reference ceiling.
//!
//! cargo bench -p e2e --bench quota -- [--decisions N] [--requests N] [--events N]
//!     [--parts inproc,http,usage,isolation] [--flood-secs N]
//!
//! - in-process hook: `Engine::decide` (what the HTTP handler calls), from
//!   one task per core, for one tenant and for 10,000 tenants;
//! - HTTP: `POST /v1/quota/consume` through the Rust client, 64 in flight;
//! - usage: `POST /v1/usage`, batches of 100, 8 clients, 30% of the events
//!   sent twice;
//! - isolation: a quiet tenant's HTTP latency (100 consumes/s, under its
//!   limit) alone, then while a noisy tenant floods (64 in flight, far past
//!   its RATE limit of 100/s).
//!
//! The 10,000 tenants are written straight into the cell's `tenants` table
//! (the cell is their authority; the global directory plays no part in a decision).

// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use e2e::{Backend, CellSpec, Options, Stack};
use sea_orm::{EntityTrait, Set};
use shared::auth::Role;
use shared::ids::CellId;
use shared::quota::client::HooksClient;
use shared::quota::hooks::{UsageBatch, UsageEvent};
use uuid::Uuid;

const CELL: &str = "eu-west-1-a";

struct Args {
    decisions: usize,
    requests: usize,
    events: usize,
    parts: String,
    flood_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        decisions: 2_000_000,
        requests: 40_000,
        events: 100_000,
        parts: "inproc,http,usage,isolation".into(),
        flood_secs: 10,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for w in argv.windows(2) {
        let v = w[1].parse().ok();
        match w[0].as_str() {
            "--decisions" => a.decisions = v.unwrap_or(a.decisions),
            "--requests" => a.requests = v.unwrap_or(a.requests),
            "--events" => a.events = v.unwrap_or(a.events),
            "--parts" => a.parts = w[1].clone(),
            "--flood-secs" => a.flood_secs = v.map(|n| n as u64).unwrap_or(a.flood_secs),
            _ => {}
        }
    }
    a
}

struct Run {
    name: String,
    count: usize,
    secs: f64,
    lat_ns: Vec<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.count as f64 / self.secs
    }

    fn pct(&self, p: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return 0.0;
        }
        let i = ((self.lat_ns.len() as f64 * p) as usize).min(self.lat_ns.len() - 1);
        self.lat_ns[i] as f64 / 1000.0
    }
}

fn report(r: &mut Run) {
    r.lat_ns.sort_unstable();
    println!(
        "{:<44} {:>12.0}/s  p50 {:>9.1} µs  p99 {:>9.1} µs  ({} in {:.2} s)",
        r.name,
        r.rate(),
        r.pct(0.50),
        r.pct(0.99),
        r.count,
        r.secs
    );
}

async fn tenants(db: &sea_orm::DatabaseConnection, n: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(1000) {
        let rows = chunk.iter().map(|id| cell::entity::tenant::ActiveModel {
            id: Set(*id),
            slug: Set(format!("bench-{}", id.simple())),
            name: Set("bench".into()),
            region: Set("eu-west-1".into()),
            plan: Set("pro".into()),
            status: Set("ACTIVE".into()),
            version: Set(1),
            created_at: Set(Utc::now()),
            updated_at: Set(Utc::now()),
            purge_at: Set(None),
            plan_version: Set(0),
        });
        cell::entity::tenant::Entity::insert_many(rows)
            .exec(db)
            .await
            .unwrap();
    }
    ids
}

async fn in_process(
    engine: Arc<cell::quota::Engine>,
    ids: Arc<Vec<Uuid>>,
    n: usize,
    name: &str,
) -> Run {
    // Load every tenant's rules first (a cold tenant costs one read).
    for t in ids.iter() {
        engine
            .decide(*t, "api.calls", 1, None, cell::quota::Op::Check)
            .await
            .unwrap();
    }
    let tasks = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..tasks {
        let (engine, ids) = (engine.clone(), ids.clone());
        let name = name.to_owned();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n / tasks / 16 + 1);
            let mut key = String::with_capacity(32);
            for i in 0..n / tasks {
                let t = ids[(i * 7919 + w) % ids.len()];
                key.clear();
                use std::fmt::Write;
                let _ = write!(key, "{name}-{w}-{i}");
                let at = Instant::now();
                let d = engine
                    .decide(t, "api.calls", 1, Some(&key), cell::quota::Op::Consume)
                    .await
                    .unwrap();
                if i % 16 == 0 {
                    lat.push(at.elapsed().as_nanos() as u64);
                }
                std::hint::black_box(d);
            }
            lat
        }));
    }
    let mut lat_ns = Vec::new();
    for h in handles {
        lat_ns.extend(h.await.unwrap());
    }
    Run {
        name: format!("in-process consume, {name}"),
        count: n / tasks * tasks,
        secs: started.elapsed().as_secs_f64(),
        lat_ns,
    }
}

async fn http(client: HooksClient, ids: Arc<Vec<Uuid>>, n: usize, name: &str) -> Run {
    let inflight = 64;
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..inflight {
        let (client, ids) = (client.clone(), ids.clone());
        let name = name.to_owned();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..n / inflight {
                let t = ids[(i * 7919 + w) % ids.len()].to_string();
                let at = Instant::now();
                let d = client
                    .consume(&t, "api.calls", 1, &format!("h-{name}-{w}-{i}"))
                    .await
                    .unwrap();
                lat.push(at.elapsed().as_nanos() as u64);
                std::hint::black_box(d);
            }
            lat
        }));
    }
    let mut lat_ns = Vec::new();
    for h in handles {
        lat_ns.extend(h.await.unwrap());
    }
    Run {
        name: format!("HTTP consume, {name}"),
        count: n / inflight * inflight,
        secs: started.elapsed().as_secs_f64(),
        lat_ns,
    }
}

/// The same consumes through a lean HTTP/1.1 client, as `redis-benchmark`
/// is a lean RESP client: 64 keep-alive connections, each writing one
/// request and reading its whole answer before the next (no pipelining).
/// It measures what the cell serves when the client costs little of the
/// two shared cores; the `HooksClient` run above measures the product's
/// client too.
async fn http_lean(addr: String, token: String, ids: Arc<Vec<Uuid>>, n: usize, name: &str) -> Run {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let inflight = 64;
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..inflight {
        let (ids, addr, token) = (ids.clone(), addr.clone(), token.clone());
        let name = name.to_owned();
        handles.push(tokio::spawn(async move {
            let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
            conn.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; 4096];
            let mut lat = Vec::new();
            for i in 0..n / inflight {
                let t = ids[(i * 7919 + w) % ids.len()];
                let body = format!(
                    r#"{{"tenantId":"{t}","metric":"api.calls","amount":1,"idempotencyKey":"l-{name}-{w}-{i}"}}"#
                );
                let req = format!(
                    "POST /v1/quota/consume HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let at = Instant::now();
                conn.write_all(req.as_bytes()).await.unwrap();
                // Read the head, then as much body as Content-Length says.
                let mut got = 0;
                let (head_end, length) = loop {
                    let k = conn.read(&mut buf[got..]).await.unwrap();
                    assert!(k > 0, "the cell closed the connection");
                    got += k;
                    if let Some(end) = buf[..got].windows(4).position(|x| x == b"\r\n\r\n") {
                        let head = std::str::from_utf8(&buf[..end]).unwrap();
                        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .expect("content-length");
                        break (end + 4, length);
                    }
                };
                while got < head_end + length {
                    let k = conn.read(&mut buf[got..]).await.unwrap();
                    assert!(k > 0, "the cell closed the connection");
                    got += k;
                }
                lat.push(at.elapsed().as_nanos() as u64);
                let answer = &buf[head_end..head_end + length];
                assert!(
                    answer.windows(14).any(|x| x == br#""allowed":true"#),
                    "{}",
                    String::from_utf8_lossy(answer)
                );
            }
            lat
        }));
    }
    let mut lat_ns = Vec::new();
    for h in handles {
        lat_ns.extend(h.await.unwrap());
    }
    Run {
        name: format!("HTTP consume, lean client, {name}"),
        count: n / inflight * inflight,
        secs: started.elapsed().as_secs_f64(),
        lat_ns,
    }
}

async fn usage(client: HooksClient, ids: Arc<Vec<Uuid>>, unique: usize) -> Run {
    let clients = 8;
    let per = unique / clients;
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..clients {
        let (client, ids) = (client.clone(), ids.clone());
        handles.push(tokio::spawn(async move {
            let now = Utc::now();
            let ev = |i: usize| UsageEvent {
                tenant_id: ids[(i * 31 + w) % ids.len()].to_string(),
                metric: "api.calls".into(),
                amount: 1,
                idempotency_key: Some(format!("u-{w}-{i}")),
                timestamp: now,
            };
            let mut lat = Vec::new();
            let mut sent = 0;
            // 70 new events and 30 sent again per batch of 100.
            let mut i = 0;
            while i < per {
                let mut events: Vec<UsageEvent> = (i..(i + 70).min(per)).map(ev).collect();
                events.extend((i.saturating_sub(70)..i.saturating_sub(40)).map(ev));
                i += 70;
                sent += events.len();
                let at = Instant::now();
                // A busy database answers 503 UNAVAILABLE: the batch is
                // retried as it is, as a real client would (duplicates are
                // harmless by design).
                let batch = UsageBatch { events };
                let mut tries = 0;
                while let Err(e) = client.usage(&batch).await {
                    tries += 1;
                    assert!(
                        tries < 20 && matches!(e, shared::Error::Unavailable(_)),
                        "usage: {e:?}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
                }
                lat.push(at.elapsed().as_nanos() as u64);
            }
            (sent, lat)
        }));
    }
    let mut lat_ns = Vec::new();
    let mut count = 0;
    for h in handles {
        let (n, l) = h.await.unwrap();
        count += n;
        lat_ns.extend(l);
    }
    Run {
        name: "usage ingest (batches of 100, 30% dup), events".into(),
        count,
        secs: started.elapsed().as_secs_f64(),
        lat_ns,
    }
}

/// The quiet tenant's latency: `rate` sequential consumes per second of
/// `api.requests` for `secs`; returns the run and how many were denied.
async fn quiet(
    client: HooksClient,
    tenant: String,
    rate: u64,
    secs: u64,
    name: &str,
) -> (Run, usize) {
    let n = (rate * secs) as usize;
    let started = Instant::now();
    let mut lat = Vec::with_capacity(n);
    let mut denied = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_micros(1_000_000 / rate));
    for i in 0..n {
        tick.tick().await;
        let at = Instant::now();
        let d = client
            .consume(&tenant, "api.requests", 1, &format!("q-{name}-{i}"))
            .await
            .unwrap();
        lat.push(at.elapsed().as_nanos() as u64);
        denied += usize::from(!d.allowed);
    }
    (
        Run {
            name: format!("quiet tenant, {name}"),
            count: n,
            secs: started.elapsed().as_secs_f64(),
            lat_ns: lat,
        },
        denied,
    )
}

/// A noisy tenant sending `api.requests` as fast as 64 workers can until `stop`.
async fn flood(
    client: HooksClient,
    tenant: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize) {
    let mut handles = Vec::new();
    for w in 0..64 {
        let (client, tenant, stop) = (client.clone(), tenant.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let (mut sent, mut allowed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let d = client
                    .consume(&tenant, "api.requests", 1, &format!("n-{w}-{sent}"))
                    .await
                    .unwrap();
                sent += 1;
                allowed += usize::from(d.allowed);
            }
            (sent, allowed)
        }));
    }
    let mut total = (0, 0);
    for h in handles {
        let (s, a) = h.await.unwrap();
        total.0 += s;
        total.1 += a;
    }
    total
}

async fn isolation(client: HooksClient, db: &sea_orm::DatabaseConnection, secs: u64) {
    let ids = tenants(db, 2).await;
    let (noisy, calm) = (ids[0].to_string(), ids[1].to_string());
    // Plan `pro`: api.requests is RATE 100/s, burst 200, HARD.
    let (mut alone, denied_alone) = quiet(client.clone(), calm.clone(), 100, secs, "alone").await;
    report(&mut alone);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = tokio::spawn(flood(client.clone(), noisy.clone(), stop.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = Instant::now();
    let (mut during, denied_during) = quiet(
        client.clone(),
        calm.clone(),
        100,
        secs,
        "while another floods",
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, allowed) = noise.await.unwrap();
    let flood_secs = started.elapsed().as_secs_f64() + 0.5;
    report(&mut during);
    println!(
        "noisy tenant: {sent} consumes in {flood_secs:.1} s ({:.0}/s, {:.0}x its limit of 100/s), {allowed} allowed ({:.0}/s)",
        sent as f64 / flood_secs,
        sent as f64 / flood_secs / 100.0,
        allowed as f64 / flood_secs
    );
    println!(
        "quiet tenant denied: {denied_alone} alone, {denied_during} while the other floods; p99 {:.0} µs → {:.0} µs",
        alone.pct(0.99),
        during.pct(0.99)
    );
}

fn redis_incr() -> Option<(f64, String)> {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-t", "incr", "-q", "-n", "200000"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?
        .trim()
        .to_owned();
    let rate = line
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok())?;
    Some((rate, line))
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = Options::new(Backend::Postgres);
        o.cells = vec![CellSpec {
            id: CELL,
            region: "eu-west-1",
            capacity: 100_000,
        }];
        let s = Stack::start_with(o).await;
        e2e::quota::define(&s, "api.calls", "PERIODIC", "CLOSED").await;
        // The isolation part's metric: RATE 100/s, burst 200, HARD on `pro`.
        e2e::quota::define(&s, "api.requests", "RATE", "CLOSED").await;
        e2e::quota::wait_synced(&s, &["api.calls", "api.requests"]).await;
        let c = s.cell(CELL);
        c.state.quota.reload_catalog().await.unwrap();
        let one = Arc::new(tenants(&c.state.db, 1).await);
        let many = Arc::new(tenants(&c.state.db, 10_000).await);
        let token = s
            .keys
            .mint(
                "bench",
                vec![Role::DataPlane],
                vec![],
                Some(CellId::parse(CELL).unwrap()),
                3600,
            )
            .unwrap();
        let client = HooksClient::new(&c.url(), &token);
        println!(
            "quota benchmark: {} decisions in process, {} HTTP requests, {} unique usage events",
            a.decisions, a.requests, a.events
        );
        let part = |p: &str| a.parts.split(',').any(|x| x == p);
        if part("inproc") {
            let mut runs = [
                in_process(c.state.quota.clone(), one.clone(), a.decisions, "1 tenant").await,
                in_process(
                    c.state.quota.clone(),
                    many.clone(),
                    a.decisions,
                    "10,000 tenants",
                )
                .await,
            ];
            for r in runs.iter_mut() {
                report(r);
            }
        }
        if part("http") {
            // Warm the HTTP path (connections, tenant rules) before measuring.
            let _ = http(client.clone(), many.clone(), 10_000, "warm-up").await;
            let mut h1 = http(client.clone(), one.clone(), a.requests, "1 tenant").await;
            report(&mut h1);
            let mut hm = http(client.clone(), many.clone(), a.requests, "10,000 tenants").await;
            report(&mut hm);
            let addr = c.url().trim_start_matches("http://").to_owned();
            let mut l1 = http_lean(addr.clone(), token.clone(), one.clone(), a.requests, "1 tenant").await;
            report(&mut l1);
            let mut lm = http_lean(addr, token.clone(), many.clone(), a.requests, "10,000 tenants").await;
            report(&mut lm);
            match redis_incr() {
                Some((incr, line)) => {
                    println!("redis-benchmark -t incr -q -n 200000: {line}");
                    println!(
                        "HTTP consume / INCR, HooksClient: 1 tenant {:.2}, 10,000 tenants {:.2}; lean client: 1 tenant {:.2}, 10,000 tenants {:.2} (target ≥ 0.5)",
                        h1.rate() / incr,
                        hm.rate() / incr,
                        l1.rate() / incr,
                        lm.rate() / incr
                    );
                }
                None => println!("redis-benchmark not found: no reference"),
            }
        }
        if part("usage") {
            let mut u = usage(client.clone(), many.clone(), a.events).await;
            report(&mut u);
        }
        if part("isolation") {
            isolation(client.clone(), &c.state.db, a.flood_secs).await;
        }
        s.stop().await;
    });
}
