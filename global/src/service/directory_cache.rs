//! The directory in memory, for impact queries: every placed, live tenant
//! (id, cell, region, plan, version), ordered by id. Before each read it
//! follows the directory's change log (`shared::changelog`) from its
//! cursor and re-reads the rows that changed, so an answer reflects every
//! directory change committed before the question, on any replica; a gap
//! in the log (pruned past the cursor), or more changes than a re-read is
//! worth, reloads it whole. Reading 100,000 rows per question is what it
//! saves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use shared::Result;
use shared::changelog::{self, Follow};
use shared::model::TenantStatus;
use tokio::sync::{Mutex, RwLock, RwLockReadGuard};
use uuid::Uuid;

use crate::entity::tenant;

/// The table whose change log the cache follows.
pub const TABLE: &str = "tenants";

/// One tenant as impact queries select it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub cell: Arc<str>,
    pub region: Arc<str>,
    pub plan: Arc<str>,
    pub version: i64,
}

/// The cached rows, and the last log entry they reflect.
#[derive(Default)]
pub struct Rows {
    cursor: i64,
    loaded: bool,
    pub tenants: BTreeMap<Uuid, Entry>,
    /// Cell, region and plan names, shared by the entries.
    names: HashSet<Arc<str>>,
}

impl Rows {
    fn intern(&mut self, s: String) -> Arc<str> {
        if let Some(n) = self.names.get(s.as_str()) {
            return n.clone();
        }
        let n: Arc<str> = s.into();
        self.names.insert(n.clone());
        n
    }

    /// Puts the row as it stands (or its absence) into the cache.
    fn put(&mut self, id: Uuid, row: Option<DirRow>) {
        match row {
            Some((_, cell, region, plan, version, status)) if live(&cell, &status) => {
                let entry = Entry {
                    cell: self.intern(cell),
                    region: self.intern(region),
                    plan: self.intern(plan),
                    version,
                };
                self.tenants.insert(id, entry);
            }
            _ => {
                self.tenants.remove(&id);
            }
        }
    }
}

/// (id, cell, region, plan, version, status)
type DirRow = (Uuid, String, String, String, i64, String);

/// Placed (it has a cell) and neither deleted nor failed: what impact
/// queries select from.
fn live(cell: &str, status: &str) -> bool {
    !cell.is_empty()
        && status != TenantStatus::Deleted.as_str()
        && status != TenantStatus::Failed.as_str()
}

fn select() -> sea_orm::Select<tenant::Entity> {
    tenant::Entity::find().select_only().columns([
        tenant::Column::Id,
        tenant::Column::CellId,
        tenant::Column::Region,
        tenant::Column::Plan,
        tenant::Column::Version,
        tenant::Column::Status,
    ])
}

#[derive(Clone, Default)]
pub struct Cache {
    rows: Arc<RwLock<Rows>>,
    /// One refresh at a time.
    refreshing: Arc<Mutex<()>>,
}

impl Cache {
    /// The rows, brought up to every directory change committed so far.
    pub async fn read<C: ConnectionTrait>(&self, db: &C) -> Result<RwLockReadGuard<'_, Rows>> {
        let _one = self.refreshing.lock().await;
        let (cursor, loaded) = {
            let r = self.rows.read().await;
            (r.cursor, r.loaded)
        };
        let follow = if loaded {
            changelog::follow(db, TABLE, cursor, changelog::RELOAD_AFTER).await?
        } else {
            Follow::Reload
        };
        let (ids, to) = match follow {
            Follow::Current => return Ok(self.rows.read().await),
            Follow::Reload => {
                self.reload(db).await?;
                return Ok(self.rows.read().await);
            }
            Follow::Changed { keys, to } => (keys, to),
        };
        tracing::debug!(
            changed = ids.len(),
            cursor = to,
            "directory cache follows the log"
        );
        let mut fetched: Vec<DirRow> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(changelog::KEYS_PER_READ) {
            fetched.extend(
                select()
                    .filter(tenant::Column::Id.is_in(chunk.iter().copied()))
                    .into_tuple::<DirRow>()
                    .all(db)
                    .await?,
            );
        }
        let mut by_id: HashMap<Uuid, DirRow> = fetched.into_iter().map(|r| (r.0, r)).collect();
        let mut w = self.rows.write().await;
        for id in ids {
            w.put(id, by_id.remove(&id));
        }
        w.cursor = to;
        Ok(w.downgrade())
    }

    /// Reads every row, after the log's head (see `changelog::head`).
    async fn reload<C: ConnectionTrait>(&self, db: &C) -> Result<()> {
        let head = changelog::head(db, TABLE).await?;
        let rows: Vec<DirRow> = select().into_tuple().all(db).await?;
        let mut fresh = Rows::default();
        for row in rows {
            let id = row.0;
            fresh.put(id, Some(row));
        }
        fresh.cursor = head;
        fresh.loaded = true;
        tracing::debug!(
            tenants = fresh.tenants.len(),
            cursor = head,
            "directory cache reloaded"
        );
        *self.rows.write().await = fresh;
        Ok(())
    }
}
