//! Anti-entropy: the level-triggered repair that heals what a lost event
//! left wrong. For every kind of entity the global tier owns and cells
//! replicate, it compares the digest of (entity, version) pairs between the
//! global database and each cell; on a mismatch it fetches the cell's
//! pairs, and republishes, through the outbox, the current event of every
//! entity the cell is behind on. Changes younger than a grace period are in
//! flight, not divergent.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, EntityTrait, Set, TransactionTrait};
use serde_json::json;
use shared::configkeys::{self, store};
use shared::sync::digest::{self, Versions};
use shared::sync::{Event, outbox};
use shared::{Error, Result};

use crate::State;
use crate::entity::{cell, sync_repair};

/// A kind of entity the global tier owns and cells replicate.
#[async_trait::async_trait]
pub trait Kind: Send + Sync {
    /// The entity prefix: entities are named `{name}:{id}`.
    fn name(&self) -> &'static str;
    /// The stream that carries its events to cells.
    fn stream(&self) -> &'static str;
    /// What `cell` should hold: every entity's version and when it last changed.
    async fn versions(&self, st: &State, cell: &str) -> Result<Vec<(String, i64, DateTime<Utc>)>>;
    /// Publishes the current event of each entity again (through the outbox).
    async fn republish(&self, st: &State, entities: &[String]) -> Result<usize>;
}

/// The config schema registry: every cell holds every key.
pub struct ConfigKeys;

#[async_trait::async_trait]
impl Kind for ConfigKeys {
    fn name(&self) -> &'static str {
        "config-key"
    }

    fn stream(&self) -> &'static str {
        configkeys::STREAM
    }

    async fn versions(&self, st: &State, _cell: &str) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
        shared::synced::versions::<configkeys::KeyDef, _>(&st.db).await
    }

    async fn republish(&self, st: &State, entities: &[String]) -> Result<usize> {
        let mut found = Vec::new();
        for entity in entities {
            if let Some(key) = entity.strip_prefix("config-key:")
                && let Some(s) = store::get(&st.db, key).await?
            {
                let payload = serde_json::to_value(&s.def).map_err(Error::internal)?;
                found.push((entity.clone(), payload, s.version));
            }
        }
        enqueue_current(st, configkeys::STREAM, found).await
    }
}

/// Enqueues, in one transaction, the current state of each registry entry
/// (`entity`, definition, version) as an event on `stream`. A version read
/// before a newer one committed is harmless: applying is monotonic.
async fn enqueue_current(
    st: &State,
    stream: &str,
    found: Vec<(String, serde_json::Value, i64)>,
) -> Result<usize> {
    let txn = st.db.begin().await?;
    for (entity, payload, version) in &found {
        let e = Event::new(stream, entity, *version, "global", payload.clone());
        outbox::enqueue(&txn, &e).await?;
    }
    txn.commit().await?;
    st.relay.nudge();
    Ok(found.len())
}

/// Flag definitions: every cell holds every flag.
pub struct Flags;

#[async_trait::async_trait]
impl Kind for Flags {
    fn name(&self) -> &'static str {
        "flag"
    }

    fn stream(&self) -> &'static str {
        shared::flags::STREAM
    }

    async fn versions(&self, st: &State, _cell: &str) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
        Ok(shared::flags::store::all(&st.db)
            .await?
            .into_iter()
            .map(|r| {
                (
                    shared::flags::flag_entity(&r.flag.def.key),
                    r.flag.version,
                    r.updated_at,
                )
            })
            .collect())
    }

    async fn republish(&self, st: &State, entities: &[String]) -> Result<usize> {
        let mut n = 0;
        for e in entities {
            n += usize::from(super::flags::republish(st, e).await?);
        }
        Ok(n)
    }
}

/// Rollout plans: every cell holds every plan and its current stage.
pub struct Rollouts;

#[async_trait::async_trait]
impl Kind for Rollouts {
    fn name(&self) -> &'static str {
        "rollout"
    }

    fn stream(&self) -> &'static str {
        shared::flags::ROLLOUT_STREAM
    }

    async fn versions(&self, st: &State, _cell: &str) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
        Ok(crate::entity::rollout::Entity::find()
            .all(&st.db)
            .await?
            .into_iter()
            .map(|r| {
                (
                    shared::flags::rollout_entity(r.id),
                    r.plan_version,
                    r.updated_at,
                )
            })
            .collect())
    }

    async fn republish(&self, st: &State, entities: &[String]) -> Result<usize> {
        let mut n = 0;
        for e in entities {
            n += usize::from(super::rollouts::republish(st, e).await?);
        }
        Ok(n)
    }
}

/// The metric catalog: every cell holds every metric.
pub struct Metrics;

#[async_trait::async_trait]
impl Kind for Metrics {
    fn name(&self) -> &'static str {
        "metric"
    }

    fn stream(&self) -> &'static str {
        shared::quota::STREAM
    }

    async fn versions(&self, st: &State, _cell: &str) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
        shared::synced::versions::<shared::quota::MetricDef, _>(&st.db).await
    }

    async fn republish(&self, st: &State, entities: &[String]) -> Result<usize> {
        let mut found = Vec::new();
        for entity in entities {
            if let Some(name) = entity.strip_prefix("metric:")
                && let Some(s) = shared::quota::store::get(&st.db, name).await?
            {
                let payload = serde_json::to_value(&s.def).map_err(Error::internal)?;
                found.push((entity.clone(), payload, s.version));
            }
        }
        enqueue_current(st, shared::quota::STREAM, found).await
    }
}

/// Directory entries: each cell holds those of its own tenants.
pub struct Directory;

#[async_trait::async_trait]
impl Kind for Directory {
    fn name(&self) -> &'static str {
        "tenant"
    }

    fn stream(&self) -> &'static str {
        shared::lifecycle::DIRECTORY_STREAM
    }

    async fn versions(&self, st: &State, cell: &str) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
        super::tenant_status::authoritative_versions(&st.db, cell).await
    }

    async fn republish(&self, st: &State, entities: &[String]) -> Result<usize> {
        let mut n = 0;
        for e in entities {
            let Some(id) = e
                .strip_prefix("tenant:")
                .and_then(|i| i.parse::<shared::ids::TenantId>().ok())
            else {
                continue;
            };
            super::tenant_status::reenqueue(st, id).await?;
            n += 1;
        }
        Ok(n)
    }
}

/// Every replicated kind.
pub fn kinds() -> Vec<Box<dyn Kind>> {
    vec![
        Box::new(ConfigKeys),
        Box::new(Directory),
        Box::new(Flags),
        Box::new(Rollouts),
        Box::new(Metrics),
    ]
}

/// The outcome of checking one kind in one cell.
#[derive(Debug, Clone)]
pub struct Check {
    pub kind: &'static str,
    pub divergent: Vec<String>,
    pub republished: usize,
}

async fn replica(
    st: &State,
    cell: &cell::Model,
    kind: &str,
    full: bool,
) -> Result<crate::cell_client::SyncVersions> {
    st.cell_client.sync_versions(cell, kind, full).await
}

async fn owner(
    st: &State,
    kind: &dyn Kind,
    cell: &str,
) -> Result<(Versions, Vec<(String, DateTime<Utc>)>)> {
    let rows = kind.versions(st, cell).await?;
    let changed = rows.iter().map(|(e, _, at)| (e.clone(), *at)).collect();
    Ok((rows.into_iter().map(|(e, v, _)| (e, v)).collect(), changed))
}

/// Compares one kind in one cell and repairs what is behind.
pub async fn check(st: &State, cell: &cell::Model, kind: &dyn Kind) -> Result<Check> {
    // The cell is read before the owner, so a change landing in between
    // can only make the cell look behind (then in flight), never ahead.
    let quick = replica(st, cell, kind.name(), false).await?;
    let (mine, _) = owner(st, kind, &cell.id).await?;
    let mut out = Check {
        kind: kind.name(),
        divergent: Vec::new(),
        republished: 0,
    };
    if digest::digest(&mine) == quick.digest {
        return Ok(out);
    }
    let full = replica(st, cell, kind.name(), true).await?;
    let theirs: Versions = full
        .entities
        .into_iter()
        .map(|e| (e.entity, e.version))
        .collect();
    let (mine, changed) = owner(st, kind, &cell.id).await?;
    let d = digest::diff(&mine, &theirs);
    let settled_before = Utc::now()
        - chrono::Duration::from_std(st.sync.repair_grace).unwrap_or(chrono::Duration::zero());
    let changed: std::collections::HashMap<String, DateTime<Utc>> = changed.into_iter().collect();
    let behind: Vec<String> = d
        .behind
        .into_iter()
        .filter(|e| changed.get(e).is_none_or(|at| *at <= settled_before))
        .collect();
    if !behind.is_empty() {
        out.republished = kind.republish(st, &behind).await?;
        tracing::warn!(cell = %cell.id, kind = kind.name(), behind = behind.len(), "cell was behind; events republished");
    }
    if !d.ahead.is_empty() {
        tracing::error!(cell = %cell.id, kind = kind.name(), ahead = d.ahead.len(), "cell holds versions the global tier does not: the global database may have lost state");
    }
    out.divergent = behind.into_iter().chain(d.ahead).collect();
    Ok(out)
}

/// Checks every kind in `cell` and records the outcome.
pub async fn check_cell(st: &State, cell: &cell::Model) -> Vec<(String, Result<Check>)> {
    let mut out = Vec::new();
    for kind in kinds() {
        let r = check(st, cell, kind.as_ref()).await;
        if let Err(e) = record(&st.db, &cell.id, kind.name(), &r).await {
            tracing::warn!(error = %e, "could not record an anti-entropy check");
        }
        out.push((kind.name().to_owned(), r));
    }
    out
}

async fn record(db: &DatabaseConnection, cell: &str, kind: &str, r: &Result<Check>) -> Result<()> {
    let now = Utc::now();
    let previous = sync_repair::Entity::find_by_id((cell.to_owned(), kind.to_owned()))
        .one(db)
        .await?;
    let (divergent, sample, error, repaired_at) = match r {
        Ok(c) => (
            c.divergent.len() as i64,
            json!(c.divergent.iter().take(20).collect::<Vec<_>>()).to_string(),
            None,
            if c.republished > 0 {
                Some(now)
            } else {
                previous.as_ref().and_then(|p| p.repaired_at)
            },
        ),
        Err(e) => (
            previous.as_ref().map(|p| p.divergent).unwrap_or(0),
            previous
                .as_ref()
                .map(|p| p.sample.clone())
                .unwrap_or_else(|| "[]".into()),
            Some(e.to_string()),
            previous.as_ref().and_then(|p| p.repaired_at),
        ),
    };
    sync_repair::Entity::insert(sync_repair::ActiveModel {
        cell_id: Set(cell.to_owned()),
        kind: Set(kind.to_owned()),
        checked_at: Set(now),
        repaired_at: Set(repaired_at),
        divergent: Set(divergent),
        sample: Set(sample),
        error: Set(error),
    })
    .on_conflict(
        OnConflict::columns([sync_repair::Column::CellId, sync_repair::Column::Kind])
            .update_columns([
                sync_repair::Column::CheckedAt,
                sync_repair::Column::RepairedAt,
                sync_repair::Column::Divergent,
                sync_repair::Column::Sample,
                sync_repair::Column::Error,
            ])
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

/// Every `interval`, checks every UP cell.
pub async fn run(st: State, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(st.sync.repair_interval) => {}
            _ = shutdown.cancelled() => return,
        }
        for cell in st.cells.all() {
            if cell.status != crate::service::cells::UP {
                continue;
            }
            for (kind, r) in check_cell(&st, &cell).await {
                if let Err(e) = r {
                    tracing::debug!(cell = %cell.id, kind, error = %e, "anti-entropy check skipped");
                }
            }
        }
    }
}
