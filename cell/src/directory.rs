//! What the cell hears of its tenants' directory status (`global.directory`,
//! group `cell.{id}`), and the sweeper that purges a tenant once its grace
//! period is over, reporting it on `cell.tenants`.
//!
//! The data plane serves ACTIVE tenants only: [`Statuses`] holds, in
//! memory, every tenant of this cell that is not ACTIVE (and every tenant
//! it purged, as DELETED), reloaded whenever a directory event or a purge
//! changed one, so the check on the hot path is one lookup.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use shared::lifecycle::DIRECTORY_STREAM;
use shared::model::TenantStatus;
use shared::sync::{Event, consumer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::State;
use crate::entity::{purged_tenant, tenant};
use crate::service::{purge, tenants};

/// The tenants of this cell that are not ACTIVE, by id; cheap to clone.
#[derive(Clone, Default)]
pub struct Statuses {
    inactive: Arc<ArcSwap<FxHashMap<Uuid, TenantStatus>>>,
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl Statuses {
    /// The tenant's status if it is not ACTIVE; none for an ACTIVE tenant
    /// (or one this cell never held). No lock, no allocation.
    pub fn inactive(&self, tenant: Uuid) -> Option<TenantStatus> {
        self.inactive.load().get(&tenant).copied()
    }

    /// Reads the statuses from the cell's database and swaps them in. One
    /// reload at a time: an older read can never be stored last.
    pub async fn reload<C: ConnectionTrait>(&self, db: &C) -> shared::Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        let rows: Vec<(Uuid, String)> = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .column(tenant::Column::Status)
            .filter(tenant::Column::Status.ne(TenantStatus::Active.as_str()))
            .into_tuple()
            .all(db)
            .await?;
        let purged: Vec<Uuid> = purged_tenant::Entity::find()
            .select_only()
            .column(purged_tenant::Column::Id)
            .into_tuple()
            .all(db)
            .await?;
        let mut map = FxHashMap::default();
        map.extend(purged.into_iter().map(|id| (id, TenantStatus::Deleted)));
        for (id, status) in rows {
            // An unreadable status serves nothing rather than everything.
            let s = TenantStatus::parse(&status).unwrap_or(TenantStatus::Deleted);
            map.insert(id, s);
        }
        self.inactive.store(Arc::new(map));
        Ok(())
    }
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub fn spawn(st: State, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    let handler: consumer::Handler = {
        let st = st.clone();
        Arc::new(move |events: Vec<Event>| {
            let st = st.clone();
            Box::pin(async move {
                tenants::apply_directory(&st.db, st.cell_id.as_str(), &events).await?;
                // The data plane serves ACTIVE tenants only: from now on.
                st.statuses.reload(&st.db).await?;
                // Status and version are tenant attributes flags target.
                st.flags.rebuild(&st.db, st.cell_id.as_str()).await
            })
        })
    };
    let cfg = consumer::Config {
        stream: DIRECTORY_STREAM.into(),
        group: format!("cell.{}", st.cell_id),
        consumer: format!("{}:{}", st.cell_id, uuid::Uuid::now_v7()),
        batch: 100,
        block: Duration::from_secs(1),
        claim_idle: Duration::from_secs(30),
    };
    vec![
        tokio::spawn(consumer::run(
            st.transport.clone(),
            cfg,
            handler,
            None,
            shutdown.clone(),
        )),
        tokio::spawn(sweep(st, shutdown)),
    ]
}

async fn sweep(st: State, shutdown: CancellationToken) {
    loop {
        match purge::purge_due(&st.db, st.cell_id.as_str()).await {
            Ok(ids) if !ids.is_empty() => {
                for id in &ids {
                    tracing::info!(tenant_id = %id, "grace period over: tenant purged");
                }
                st.relay.nudge();
                if let Err(e) = st.statuses.reload(&st.db).await {
                    tracing::warn!(error = %e, "tenant statuses not reloaded after a purge; the next change reloads them");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge sweep failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
