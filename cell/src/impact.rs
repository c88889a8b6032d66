//! Answers the global tier's impact questions from memory: the variant a
//! flag serves each tenant (the compiled flag snapshot) and each tenant's
//! tenant-level config values (an index over `tenant_config`, brought up
//! to date from the rows changed since its last refresh before every
//! answer, so it is exact even with several replicas writing).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::Value;
use shared::configkeys::store;
use shared::flags::Engine;
use shared::flags::eval::Context;
use shared::impact::{Answer, DEFAULT_ENVIRONMENT, Question, parse_value};
use shared::{Error, Result};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::entity::config;
use crate::service::config::Doc;

/// Rows written this long before the last refresh are read again, so a
/// transaction that committed late (its `updated_at` older than the
/// refresh) is never missed.
const OVERLAP: Duration = Duration::seconds(30);

#[derive(Default)]
struct Index {
    /// The newest `updated_at` seen.
    watermark: Option<DateTime<Utc>>,
    /// Tenant → (config version, its TENANT layer).
    tenants: HashMap<Uuid, (i64, BTreeMap<String, Value>)>,
}

/// Every tenant's TENANT-layer config values, in memory.
#[derive(Clone, Default)]
pub struct ConfigIndex {
    inner: Arc<Mutex<Index>>,
}

impl ConfigIndex {
    /// Reads the rows changed since the last refresh (all of them the
    /// first time) and answers `f` under the same lock.
    async fn with_fresh<C: ConnectionTrait, T>(
        &self,
        db: &C,
        f: impl FnOnce(&HashMap<Uuid, (i64, BTreeMap<String, Value>)>) -> T,
    ) -> Result<T> {
        let mut idx = self.inner.lock().await;
        let mut q = config::Entity::find().select_only().columns([
            config::Column::TenantId,
            config::Column::Version,
            config::Column::Doc,
            config::Column::UpdatedAt,
        ]);
        if let Some(w) = idx.watermark {
            q = q.filter(config::Column::UpdatedAt.gte(w - OVERLAP));
        }
        let rows: Vec<(Uuid, i64, String, DateTime<Utc>)> = q.into_tuple().all(db).await?;
        for (tenant, version, doc, at) in rows {
            if idx.watermark.is_none_or(|w| at > w) {
                idx.watermark = Some(at);
            }
            if idx.tenants.get(&tenant).is_some_and(|(v, _)| *v >= version) {
                continue;
            }
            let doc: Doc = serde_json::from_str(&doc).map_err(Error::internal)?;
            idx.tenants.insert(tenant, (version, doc.tenant));
        }
        Ok(f(&idx.tenants))
    }

    /// Loads the index so the first question is as fast as the rest.
    pub async fn warm<C: ConnectionTrait>(&self, db: &C) -> Result<()> {
        self.with_fresh(db, |_| ()).await
    }
}

/// Checks a question names exactly one fact.
pub fn check(q: &Question) -> Result<()> {
    match (&q.flag_key, &q.config_key) {
        (Some(_), None) if q.config_value.is_none() => Ok(()),
        (None, Some(_)) if q.config_value.is_some() && q.flag_variant.is_none() => Ok(()),
        _ => Err(Error::bad_input(
            "questions",
            "a question names either flagKey (with an optional flagVariant and environment) \
             or configKey with configValue",
        )),
    }
}

/// The sorted tenants of `engine` the flag question matches.
fn flag_matches(engine: &Engine, key: &str, variant: Option<&str>, env: &str) -> Vec<Uuid> {
    let ctx = Context::default();
    let mut out: Vec<Uuid> = engine
        .tenant_ids()
        .filter(|id| {
            let Ok(e) = engine.evaluate(**id, key, env, &ctx) else {
                return false;
            };
            if e.error_code.is_some() {
                return false;
            }
            match variant {
                Some(v) => e.variant == Some(v),
                None => engine.serves_on(key, e.variant),
            }
        })
        .copied()
        .collect();
    out.sort_unstable();
    out
}

/// Answers every question about the tenants this cell holds now.
pub async fn answer<C: ConnectionTrait>(
    db: &C,
    engine: &Engine,
    index: &ConfigIndex,
    questions: &[Question],
) -> Result<Answer> {
    let mut matches = Vec::with_capacity(questions.len());
    for q in questions {
        check(q)?;
        if let Some(key) = &q.flag_key {
            let env = q.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT);
            matches.push(flag_matches(engine, key, q.flag_variant.as_deref(), env));
            continue;
        }
        let (Some(key), Some(value)) = (&q.config_key, &q.config_value) else {
            continue;
        };
        let want = parse_value(value);
        let default = store::get(db, key).await?.map(|k| k.def.default);
        let mut ids = index
            .with_fresh(db, |values| {
                engine
                    .tenant_ids()
                    .filter(|id| {
                        let own = values
                            .get(id)
                            .and_then(|(_, layer)| layer.get(key.as_str()));
                        own.or(default.as_ref()) == Some(&want)
                    })
                    .copied()
                    .collect::<Vec<_>>()
            })
            .await?;
        ids.sort_unstable();
        matches.push(ids);
    }
    Ok(Answer {
        matches,
        checked: engine.tenant_ids().count() as i64,
    })
}
