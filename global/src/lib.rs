//! The global tier: the tenant directory, the cell registry and placement,
//! and the one GraphQL API of the control plane.

pub mod backup;
pub mod cell_client;
pub mod config;
pub mod entity;
pub mod events;
pub mod graphql;
pub mod migration;
pub mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use shared::auth::ServiceToken;
use shared::client::GraphqlClient;
use shared::db::DbReady;
use shared::events::Bus;
use shared::ids::Plan;
use shared::metrics::Metrics;
use shared::server::{Component, GraphqlRoutes, Running, Shared, layered, ops_routes, serve};
use shared::sync::Transport;
use shared::sync::outbox::Relay;
use tokio_util::sync::CancellationToken;

pub use config::Settings;

use crate::cell_client::CellClient;
use crate::events::TenantEvent;
use crate::service::cells;
use crate::service::saga::LifecycleEvent;

/// What resolvers and background tasks of the global tier share.
#[derive(Clone)]
pub struct State {
    pub db: DatabaseConnection,
    pub cells: cells::Cache,
    /// The directory in memory, for impact queries.
    pub directory: service::directory_cache::Cache,
    pub cell_client: CellClient,
    pub plans: Arc<Vec<Plan>>,
    /// Tenant changes, fanned out to every replica through Redis when configured.
    pub events: Arc<Bus<TenantEvent>>,
    pub metrics: Metrics,
    /// Publishes the outbox right after each commit.
    pub relay: Relay,
    /// The sync transport, read for `syncStatus`.
    pub transport: Arc<dyn Transport>,
    pub sync: config::SyncSettings,
    /// Rollout progress, for `rolloutProgress` subscribers, fanned out to
    /// every replica like `events` (the replica whose loop made a step is
    /// not necessarily the one a subscriber is connected to).
    pub rollout_events: Arc<Bus<service::rollouts::Progress>>,
    /// Provisioning saga steps as they happen, fanned out like `events`.
    pub lifecycle: Arc<Bus<LifecycleEvent>>,
    pub provisioning: config::Provisioning,
    pub ops: config::Ops,
    /// This process, as a saga lease owner.
    pub replica: String,
    /// Sagas this process drives now.
    pub driving: Arc<std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>>,
    /// Signs break-glass tokens.
    pub keys: Arc<shared::auth::Keys>,
    /// Revoked break-glass requests, checked on every request with a `bg` claim.
    pub revocations: shared::breakglass::Revocations,
    /// Ended authority (a removed membership), to every replica: the
    /// subject's subscription connections close.
    pub session_ends: Arc<Bus<shared::server::SessionEnd>>,
    cells_gauge: prometheus::IntGaugeVec,
    /// From reservation to ACTIVE or FAILED, by outcome (the provisioning SLI).
    pub provisioning_duration: prometheus::HistogramVec,
}

impl State {
    /// Publishes the registry's UP/DOWN counts as the `tcp_cells` gauge.
    pub fn refresh_cell_gauge(&self) {
        let all = self.cells.all();
        for status in [cells::UP, cells::DOWN] {
            self.cells_gauge
                .with_label_values(&[status])
                .set(all.iter().filter(|c| c.status == status).count() as i64);
        }
    }
}

/// A running global tier.
pub struct App {
    pub addr: SocketAddr,
    /// The scraper's `/metrics` listener, when `limits.metrics_port` is set.
    pub metrics_addr: Option<SocketAddr>,
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

    /// Stops background work, drains in-flight requests, closes the database.
    pub async fn stop(self) {
        self.server.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.server.stop().await;
        if let Some(m) = self.metrics_server {
            m.stop().await;
        }
        let _ = self.state.db.close_by_ref().await;
    }
}

/// Migrates the database, binds `settings.listen` (port 0 picks a free
/// port), starts serving and watching cell heartbeats.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    let db = shared::db::connect(&settings.database_url, settings.db_pool_size).await?;
    let ready = DbReady::new(db.clone());
    shared::db::migrate::<migration::Migrator>(&db, 0x676c_6f62).await?;
    ready.mark_migrated();

    let token = Arc::new(ServiceToken::new(settings.keys.clone(), "global", None));
    let shutdown = CancellationToken::new();
    let events = match &settings.redis_url {
        Some(url) => Bus::redis(
            url,
            format!("{}:global:tenant-events", settings.redis_prefix),
            shutdown.clone(),
        )
        .map_err(anyhow::Error::msg)?,
        None => Bus::local(),
    };
    let lifecycle = match &settings.redis_url {
        Some(url) => Bus::redis(
            url,
            format!("{}:global:lifecycle-events", settings.redis_prefix),
            shutdown.clone(),
        )
        .map_err(anyhow::Error::msg)?,
        None => Bus::local(),
    };
    let rollout_events = match &settings.redis_url {
        Some(url) => Bus::redis(
            url,
            format!("{}:global:rollout-progress", settings.redis_prefix),
            shutdown.clone(),
        )
        .map_err(anyhow::Error::msg)?,
        None => Bus::local(),
    };
    let session_ends = match &settings.redis_url {
        Some(url) => Bus::redis(
            url,
            format!("{}:global:session-ends", settings.redis_prefix),
            shutdown.clone(),
        )
        .map_err(anyhow::Error::msg)?,
        None => Bus::local(),
    };
    let cache = cells::Cache::default();
    cache
        .reload(&db)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Metrics::with_top_tenants("global", None, settings.limits.metrics_top_tenants);
    let transport = transport(&settings)?;
    let relay = Relay::spawn(db.clone(), transport.clone(), shutdown.clone());
    let state = State {
        db,
        cells: cache,
        directory: service::directory_cache::Cache::default(),
        cell_client: CellClient::new(GraphqlClient::new(token, settings.cell_timeout)),
        plans: Arc::new(settings.plans.clone()),
        events,
        cells_gauge: metrics.gauge_vec("cells", "Registered cells by status", &["status"]),
        provisioning_duration: metrics.histogram_vec(
            shared::metrics::names::PROVISIONING_DURATION,
            "createTenant sagas from reservation to ACTIVE or FAILED, by outcome (active, failed)",
            &["outcome"],
            vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ],
        ),
        metrics: metrics.clone(),
        relay,
        transport,
        sync: settings.sync,
        rollout_events,
        lifecycle,
        provisioning: settings.provisioning.clone(),
        ops: settings.ops.clone(),
        replica: format!("global-{}", uuid::Uuid::new_v4().simple()),
        driving: Arc::default(),
        keys: settings.keys.clone(),
        revocations: shared::breakglass::Revocations::default(),
        session_ends: session_ends.clone(),
    };
    for r in service::breakglass::live_revocations(&state.db)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        state.revocations.revoke(&r);
    }
    state.refresh_cell_gauge();
    let shared = Shared {
        keys: settings.keys.clone(),
        metrics: metrics.clone(),
        component: Arc::new(Component {
            tier: "global",
            cell: None,
            region: None,
        }),
        limits: settings.limits,
        dev_mode: settings.dev_mode,
        revocations: state.revocations.clone(),
        placement: Some(Arc::new(service::directory::Placement(state.db.clone()))),
        session_ends: Some(session_ends),
    };
    let schema = graphql::schema(
        Some(state.clone()),
        &settings.limits,
        settings.introspection,
    );
    let router = layered(
        GraphqlRoutes::router(schema, &shared).merge(ops_routes(ready, &shared)),
        &shared,
    );
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    let metrics_server = shared::server::serve_metrics(addr, &shared, shutdown.clone()).await?;
    let server = serve(listener, router, shutdown);
    let sweeper = tokio::spawn(sweep_cells(
        state.clone(),
        settings.heartbeat_timeout,
        server.shutdown.clone(),
    ));
    let mut tasks = vec![sweeper];
    tasks.push(tokio::spawn(service::antientropy::run(
        state.clone(),
        server.shutdown.clone(),
    )));
    tasks.extend(service::rollout_progress::spawn(
        state.clone(),
        state.transport.clone(),
        server.shutdown.clone(),
    ));
    tasks.push(service::usage::spawn(
        state.db.clone(),
        state.transport.clone(),
        server.shutdown.clone(),
    ));
    tasks.push(service::audit::spawn(
        state.db.clone(),
        state.transport.clone(),
        server.shutdown.clone(),
    ));
    tasks.push(shared::breakglass::spawn_consumer(
        state.transport.clone(),
        format!("global.{}", state.replica),
        state.revocations.clone(),
        server.shutdown.clone(),
    ));
    tasks.push(shared::breakglass::spawn_group_sweeper(
        state.transport.clone(),
        state.ops.break_glass_group_idle,
        server.shutdown.clone(),
    ));
    tasks.push(tokio::spawn(expire_break_glass(
        state.clone(),
        server.shutdown.clone(),
    )));
    tasks.push(tokio::spawn(shared::changelog::prune_every(
        state.db.clone(),
        service::directory_cache::TABLE,
        shared::changelog::KEPT,
        Duration::from_secs(60),
        server.shutdown.clone(),
    )));
    tasks.push(tokio::spawn(reconcile_sagas(
        state.clone(),
        server.shutdown.clone(),
    )));
    tasks.push(service::tenant_status::spawn_consumer(
        state.clone(),
        state.transport.clone(),
        server.shutdown.clone(),
    ));
    tracing::info!(%addr, "global tier serving");
    Ok(App {
        addr,
        metrics_addr: metrics_server.as_ref().map(|m| m.addr),
        state,
        server,
        metrics_server,
        tasks,
    })
}

/// The sync transport: the one given (the dev stack shares one in-process
/// transport between its tiers), else Redis Streams when configured.
pub fn transport(settings: &Settings) -> anyhow::Result<Arc<dyn Transport>> {
    if let Some(t) = &settings.transport {
        return Ok(t.clone());
    }
    match &settings.redis_url {
        Some(url) => Ok(Arc::new(
            shared::sync::redis::Redis::new(url, &settings.redis_prefix, 100_000)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        None => anyhow::bail!("a sync transport is needed: set redis_url"),
    }
}

/// Resumes provisioning sagas whose driver stopped renewing its lease (a
/// replica that died mid-saga), at start and then every half lease.
async fn reconcile_sagas(st: State, shutdown: CancellationToken) {
    let every =
        (st.provisioning.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        if let Err(e) = service::provisioning::resume_orphans(&st).await {
            tracing::warn!(error = %e, "saga reconciler pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Expires unapproved break-glass requests and ended grants, every second.
async fn expire_break_glass(st: State, shutdown: CancellationToken) {
    loop {
        if let Err(e) = service::breakglass::expire(&st).await {
            tracing::warn!(error = %e, "break-glass expiry pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Marks silent cells DOWN and refreshes the registry cache.
async fn sweep_cells(st: State, timeout: Duration, shutdown: CancellationToken) {
    let every = (timeout / 3).max(Duration::from_millis(200));
    loop {
        match cells::mark_silent_down(&st.db, timeout).await {
            Ok(down) => {
                for id in down {
                    tracing::warn!(cell = %id, "cell missed its heartbeats; marked DOWN");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cell sweep failed"),
        }
        if let Err(e) = st.cells.reload(&st.db).await {
            tracing::warn!(error = %e, "cell cache reload failed");
        }
        st.refresh_cell_gauge();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
