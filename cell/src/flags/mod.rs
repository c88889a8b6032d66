//! Flag evaluation in the cell: a compiled snapshot in memory, rebuilt from
//! the cell database (flags, rollout plans, this cell's tenants) whenever
//! one of them changes, so it survives restarts without the global tier.
//! The routes that evaluate it are in `crate::dataplane`.

pub mod sync;

use std::sync::Arc;

use arc_swap::ArcSwap;
use sea_orm::{ConnectionTrait, EntityTrait};
use shared::Result;
use shared::flags::store;
use shared::flags::{Engine, Snapshot, TenantAttrs};
use tokio::sync::Notify;

use crate::entity::tenant;

/// The cell's compiled flags; cheap to clone.
#[derive(Clone, Default)]
pub struct Runtime {
    engine: Arc<ArcSwap<Engine>>,
    /// Wakes the rollout acknowledger after a rebuild.
    pub rebuilt: Arc<Notify>,
    rebuilding: Arc<tokio::sync::Mutex<()>>,
    /// What this cell last acknowledged of each rollout (`sync::acknowledge`).
    pub acked: Arc<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, sync::Acked>>>,
}

impl Runtime {
    /// The current snapshot (a pointer copy).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.load_full()
    }

    /// Reloads the snapshot from the database and swaps it in.
    /// Rebuilds run one at a time: two overlapping rebuilds could otherwise
    /// store the one that read the database first last, losing a change.
    pub async fn rebuild<C: ConnectionTrait>(&self, db: &C, cell: &str) -> Result<()> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let snap = load(db, cell).await?;
        self.engine.store(Arc::new(Engine::compile(&snap)));
        // A stored permit: the acknowledger sees a rebuild made while it was busy.
        self.rebuilt.notify_one();
        Ok(())
    }
}

/// Provisioning's flag state for a tenant: rebuilds the snapshot from the
/// database (flags, rollout plans and now this tenant) and checks the
/// tenant is in it, so evaluation for it answers from the first request.
pub async fn allocate(st: &crate::State, tenant: shared::ids::TenantId) -> Result<()> {
    st.flags.rebuild(&st.db, st.cell_id.as_str()).await?;
    if st.flags.engine().tenant(tenant.0).is_none() {
        return Err(shared::Error::NotFound(format!(
            "tenant {tenant} is not in this cell's flag snapshot"
        )));
    }
    Ok(())
}

/// The cell's snapshot as stored: every flag and rollout plan, and the
/// attributes of every tenant it holds.
pub async fn load<C: ConnectionTrait>(db: &C, cell: &str) -> Result<Snapshot> {
    let flags = store::all(db).await?.into_iter().map(|r| r.flag).collect();
    let rollouts = store::plans(db)
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let tenants = tenant::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .filter(|t| t.status != "DELETED")
        .map(|t| TenantAttrs {
            id: t.id,
            plan: t.plan,
            region: t.region,
            cell: cell.to_owned(),
            version: t.version,
        })
        .collect();
    Ok(Snapshot {
        flags,
        rollouts,
        tenants,
    })
}
