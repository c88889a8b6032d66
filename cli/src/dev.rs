//! The embedded dev stack: the global tier and N cells in one process, each
//! with its own SQLite file, talking over loopback HTTP exactly as in production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use shared::auth::Role;
use shared::config::sqlite_url;
use shared::ids::{CellId, Region};
use shared::server::Limits;

#[derive(clap::Args)]
pub struct Args {
    /// Address of the global tier's API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the SQLite files and the dev signing key live.
    #[arg(long, default_value = ".tenantctl")]
    data_dir: PathBuf,
    /// How many cells to start (us-east-1-a, eu-west-1-a, us-east-1-b, …).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=26))]
    cells: u8,
    /// Tenants each cell may hold.
    #[arg(long, default_value_t = 1000)]
    cell_capacity: i64,
    /// Seconds of silence before the global tier marks a cell DOWN.
    #[arg(long, default_value_t = 15)]
    heartbeat_timeout_secs: u64,
}

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// The id and region of the `i`th dev cell.
fn cell_name(i: usize) -> (String, String) {
    let region = REGIONS[i % REGIONS.len()];
    let letter = (b'a' + (i / REGIONS.len()) as u8) as char;
    (format!("{region}-{letter}"), region.to_owned())
}

fn cell_listen(global: SocketAddr, i: usize) -> String {
    let port = if global.port() == 0 {
        0
    } else {
        global.port() + 1 + i as u16
    };
    SocketAddr::new(global.ip(), port).to_string()
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let _telemetry = shared::telemetry::init("tenantctl-dev", shared::telemetry::LogFormat::Text);
    let data_dir = a.data_dir.clone();
    std::fs::create_dir_all(data_dir.join("cells"))
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = crate::devkey::load_or_create(&data_dir)?;
    let keys = crate::devkey::keys(&secret)?;
    let limits = Limits::default();
    // One in-process sync transport joins the tiers, as Redis does in production.
    let transport: std::sync::Arc<dyn shared::sync::Transport> =
        std::sync::Arc::new(shared::sync::memory::Memory::new());

    let global = global::build(global::Settings {
        listen: a.listen.to_string(),
        database_url: sqlite_url(&data_dir.join("global.db")),
        redis_url: None,
        redis_prefix: "tcp".into(),
        heartbeat_timeout: Duration::from_secs(a.heartbeat_timeout_secs.max(1)),
        cell_timeout: Duration::from_secs(5),
        plans: ["free", "pro", "enterprise"]
            .iter()
            .map(|p| shared::ids::Plan::parse(p).expect("valid plan"))
            .collect(),
        keys: keys.clone(),
        dev_mode: true,
        introspection: true,
        limits,
        transport: Some(transport.clone()),
        db_pool_size: 8,
        sync: global::config::SyncSettings::default(),
        provisioning: global::config::Provisioning::default(),
        ops: global::config::Ops::default(),
    })
    .await
    .context("starting the global tier")?;

    let mut cells = Vec::new();
    for i in 0..a.cells as usize {
        let (id, region) = cell_name(i);
        let app = cell::build(cell::Settings {
            // From the requested address: port 0 asks every cell for a free port
            // too (the bound global port + 1 may belong to another process).
            listen: cell_listen(a.listen, i),
            cell_id: CellId::parse(&id).expect("valid cell id"),
            region: Region::parse(&region).expect("valid region"),
            endpoint: None,
            capacity: a.cell_capacity,
            database_url: sqlite_url(&cell_db(&data_dir, &id)),
            redis_url: None,
            redis_prefix: "tcp".into(),
            global_url: Some(global.url()),
            heartbeat_interval: Duration::from_secs(2),
            keys: keys.clone(),
            dev_mode: true,
            introspection: true,
            limits,
            transport: Some(transport.clone()),
            db_pool_size: 8,
            sync: cell::config::SyncSettings::default(),
            quota: Default::default(),
        })
        .await
        .with_context(|| format!("starting cell {id}"))?;
        cells.push(app);
    }
    wait_until_registered(&global, cells.len()).await;

    let admin = keys
        .mint(
            "dev-admin",
            vec![Role::PlatformAdmin],
            vec![],
            None,
            12 * 3600,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("tenantctl dev stack is up (data in {})", data_dir.display());
    println!("global GraphQL: {}/graphql", global.url());
    for c in &cells {
        println!(
            "cell {} ({}): {}/graphql",
            c.state.cell_id,
            c.state.region,
            c.url()
        );
    }
    println!("admin token (12 h): {admin}");
    println!("ready");

    shared::server::shutdown_signal().await;
    for c in cells {
        c.stop().await;
    }
    global.stop().await;
    Ok(())
}

fn cell_db(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("cells").join(format!("{id}.db"))
}

async fn wait_until_registered(global: &global::App, n: usize) {
    for _ in 0..100 {
        let up = global
            .state
            .cells
            .all()
            .iter()
            .filter(|c| c.status == global::service::cells::UP)
            .count();
        if up >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("not every cell registered within 5 s; continuing");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_names_alternate_regions() {
        assert_eq!(cell_name(0), ("us-east-1-a".into(), "us-east-1".into()));
        assert_eq!(cell_name(1), ("eu-west-1-a".into(), "eu-west-1".into()));
        assert_eq!(cell_name(2), ("us-east-1-b".into(), "us-east-1".into()));
    }

    #[test]
    fn cell_ports_follow_the_global_port() {
        let g: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(cell_listen(g, 0), "127.0.0.1:8081");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(cell_listen(any, 3), "127.0.0.1:0");
    }
}
