//! A regional cell: owns its tenants' records in its own database, serves
//! its GraphQL API and the data-plane routes (`dataplane/`), registers
//! with the global tier and heartbeats.

pub mod breakglass;
pub mod config;
pub mod configkeys;
pub mod dataplane;
pub mod directory;
pub mod entity;
pub mod flags;
pub mod follow;
pub mod graphql;
pub mod impact;
pub mod migration;
pub mod quota;
pub mod registration;
pub mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use shared::auth::ServiceToken;
use shared::client::GraphqlClient;
use shared::db::DbReady;
use shared::ids::{CellId, Region};
use shared::metrics::Metrics;
use shared::model::CellTenant;
use shared::server::{Component, GraphqlRoutes, Running, Shared, layered, ops_routes, serve};
use shared::sync::Transport;
use shared::sync::outbox::Relay;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use config::Settings;

/// What resolvers and background tasks of a cell share.
#[derive(Clone)]
pub struct State {
    pub db: DatabaseConnection,
    pub cell_id: CellId,
    pub region: Region,
    pub capacity: i64,
    pub events: broadcast::Sender<CellTenant>,
    /// Publishes this cell's outbox (cell → global streams): call
    /// `relay.nudge()` after committing a transaction that enqueued events.
    pub relay: Relay,
    pub transport: Arc<dyn Transport>,
    /// The compiled flag snapshot the data-plane hooks evaluate from.
    pub flags: flags::Runtime,
    /// The tenants the data plane does not serve now (not ACTIVE); the
    /// quota engine holds the same (`quota.statuses`).
    pub statuses: directory::Statuses,
    /// Quota enforcement and metering (`quota/`).
    pub quota: Arc<quota::Engine>,
    /// Tenant-level config values in memory, for impact questions.
    pub config_index: impact::ConfigIndex,
    /// Flag answers to impact questions, per compiled snapshot.
    pub flag_answers: impact::FlagAnswers,
    /// Revoked break-glass requests, checked on every request with a `bg` claim.
    pub revocations: shared::breakglass::Revocations,
    /// How often what the cell holds from the global tier is resynced.
    pub resync_every: Duration,
}

/// A running cell.
pub struct App {
    pub addr: SocketAddr,
    /// The scraper's `/metrics` listener, when `limits.metrics_port` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub endpoint: String,
    pub state: State,
    server: Running,
    metrics_server: Option<Running>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The scraper's `/metrics` URL, when `limits.metrics_port` is set.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_addr.map(|a| format!("http://{a}/metrics"))
    }

    /// Stops heartbeats, drains in-flight requests and closes the database.
    pub async fn stop(self) {
        self.server.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.server.stop().await;
        if let Some(m) = self.metrics_server {
            m.stop().await;
        }
        if let Err(e) = self.state.quota.flush().await {
            tracing::warn!(error = %e, "limiter state not persisted at stop");
        }
        let _ = self.state.db.close_by_ref().await;
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.server.shutdown.clone()
    }
}

/// Migrates the database, binds `settings.listen` (port 0 picks a free
/// port), starts serving and registers with the global tier when one is set.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    let db = shared::db::connect(&settings.database_url, settings.db_pool_size).await?;
    let ready = DbReady::new(db.clone());
    shared::db::migrate::<migration::Migrator>(&db, 0x6365_6c6c).await?;
    ready.mark_migrated();

    // Every entry of this cell's audit chain ships to the global tier.
    shared::audit::chain::ship_as(&db, settings.cell_id.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (events, _) = broadcast::channel(1024);
    let shutdown = CancellationToken::new();
    let transport = transport(&settings)?;
    let relay = Relay::spawn(db.clone(), transport.clone(), shutdown.clone());
    let metrics = Metrics::with_top_tenants(
        "cell",
        Some(settings.cell_id.as_str()),
        settings.limits.metrics_top_tenants,
    );
    let quota = Arc::new(quota::Engine::new(
        db.clone(),
        settings.cell_id.as_str(),
        relay.clone(),
        settings.quota.clone(),
        &metrics,
    )?);
    quota
        .reload_catalog()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (counters, keys) = quota.restore().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if counters + keys > 0 {
        tracing::info!(counters, keys, "limiter state restored");
    }
    let state = State {
        db,
        cell_id: settings.cell_id.clone(),
        region: settings.region.clone(),
        capacity: settings.capacity,
        events,
        relay,
        transport: transport.clone(),
        flags: flags::Runtime::default(),
        statuses: quota.statuses.clone(),
        quota,
        config_index: impact::ConfigIndex::default(),
        flag_answers: impact::FlagAnswers::default(),
        revocations: shared::breakglass::Revocations::unloaded(),
        resync_every: settings.sync.resync_every,
    };
    state
        .flags
        .rebuild(&state.db, state.cell_id.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    state
        .statuses
        .reload(&state.db)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    {
        let (db, index) = (state.db.clone(), state.config_index.clone());
        tokio::spawn(async move {
            if let Err(e) = index.warm(&db).await {
                tracing::warn!(error = %e, "config index warm-up failed; the first impact question loads it");
            }
        });
    }
    let shared = Shared {
        keys: settings.keys.clone(),
        metrics: metrics.clone(),
        component: Arc::new(Component {
            tier: "cell",
            cell: Some(settings.cell_id.to_string()),
            region: Some(settings.region.to_string()),
        }),
        limits: settings.limits,
        dev_mode: settings.dev_mode,
        revocations: state.revocations.clone(),
        placement: Some(Arc::new(service::tenants::Placement(state.db.clone()))),
        session_ends: None,
    };
    let schema = graphql::schema(
        Some(state.clone()),
        &settings.limits,
        settings.introspection,
    );
    let router = layered(
        GraphqlRoutes::router(schema, &shared).merge(ops_routes(ready, &shared)),
        &shared,
    )
    .merge(
        shared::server::HookMeter::new(&metrics).layer(dataplane::router(
            state.clone(),
            settings.keys.clone(),
            settings.limits.max_body_bytes,
        )),
    )
    .fallback(dataplane::not_found);
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    let endpoint = settings
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let global = settings.global_url.clone().map(|url| {
        let token = Arc::new(ServiceToken::new(
            settings.keys.clone(),
            &format!("cell:{}", settings.cell_id),
            Some(settings.cell_id.clone()),
        ));
        (GraphqlClient::new(token, Duration::from_secs(5)), url)
    });
    breakglass::load_at_start(&state.revocations, global.as_ref()).await;
    let metrics_server = shared::server::serve_metrics(addr, &shared, shutdown.clone()).await?;
    let server = serve(listener, router, shutdown);

    let mut tasks = Vec::new();
    if let Some((client, global_url)) = global.clone() {
        let reg = registration::Registration {
            client,
            global_url,
            endpoint: endpoint.clone(),
            interval: settings.heartbeat_interval,
        };
        tasks.push(tokio::spawn(
            reg.run(state.clone(), server.shutdown.clone()),
        ));
    }
    let propagation = metrics.histogram_vec(
        shared::metrics::names::PROPAGATION,
        "From a change's commit at its origin to its application here, by stream",
        &["stream"],
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ],
    );
    tasks.extend(breakglass::spawn(
        &state,
        global.clone(),
        server.shutdown.clone(),
    ));
    // Every synced kind: its streams, its resync and what it rebuilds.
    let follow = follow::Context {
        global,
        meters: follow::Meters {
            propagation: propagation.clone(),
            events: metrics.counter_vec(
                "sync_events_total",
                "Stream events received, by stream and outcome (applied, duplicate; repaired: rows a resync rewrote because they had changed behind the cell's back)",
                &["stream", "outcome"],
            ),
        },
        settings: settings.sync,
        shutdown: server.shutdown.clone(),
    };
    tasks.extend(flags::sync::spawn(&state, &follow));
    tasks.extend(follow::spawn::<quota::catalog::Catalog>(&state, &follow));
    tasks.extend(follow::spawn::<configkeys::ConfigKeys>(&state, &follow));
    tasks.extend(quota::spawn(state.clone(), server.shutdown.clone()));
    tasks.extend(directory::spawn(state.clone(), server.shutdown.clone()));
    tasks.push(tokio::spawn(shared::changelog::prune_every(
        state.db.clone(),
        impact::TABLE,
        shared::changelog::KEPT,
        std::time::Duration::from_secs(60),
        server.shutdown.clone(),
    )));
    tracing::info!(cell = %settings.cell_id, region = %settings.region, %addr, "cell serving");
    Ok(App {
        addr,
        metrics_addr: metrics_server.as_ref().map(|m| m.addr),
        metrics_server,
        endpoint,
        state,
        server,
        tasks,
    })
}

/// The sync transport: the one given (the dev stack shares one in-process
/// transport), else Redis Streams when configured, else a private in-process
/// one (a lone cell that hears nothing from the global tier but resyncs).
fn transport(settings: &Settings) -> anyhow::Result<Arc<dyn Transport>> {
    if let Some(t) = &settings.transport {
        return Ok(t.clone());
    }
    Ok(match &settings.redis_url {
        Some(url) => Arc::new(
            shared::sync::redis::Redis::new(url, &settings.redis_prefix, 100_000)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => Arc::new(shared::sync::memory::Memory::new()),
    })
}
