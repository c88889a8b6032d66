//! Answers the global tier's impact questions from memory: the variant a
//! flag serves each tenant (the compiled flag snapshot) and each tenant's
//! tenant-level config values (an index over `tenant_config`, brought up
//! to date from the table's change log before every answer, so it is
//! exact even with several replicas writing).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::Value;
use shared::changelog::{self, Follow};
use shared::configkeys::store;
use shared::flags::Engine;
use shared::flags::eval::Context;
use shared::impact::{Answer, DEFAULT_ENVIRONMENT, Question, parse_value};
use shared::{Error, Result};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::entity::config;
use crate::service::config::Doc;

/// The table the index follows (its change log, `shared::changelog`).
pub const TABLE: &str = "tenant_config";

/// Tenant → (config version, its TENANT layer).
type Values = HashMap<Uuid, (i64, BTreeMap<String, Value>)>;

#[derive(Default)]
struct Index {
    /// The last change of the log the index reflects.
    cursor: i64,
    loaded: bool,
    tenants: Values,
}

impl Index {
    fn put(&mut self, tenant: Uuid, version: i64, doc: &str) -> Result<()> {
        let doc: Doc = serde_json::from_str(doc).map_err(Error::internal)?;
        self.tenants.insert(tenant, (version, doc.tenant));
        Ok(())
    }
}

/// Every tenant's TENANT-layer config values, in memory.
#[derive(Clone, Default)]
pub struct ConfigIndex {
    inner: Arc<Mutex<Index>>,
}

impl ConfigIndex {
    /// Follows the change log from the index's cursor (reads every row
    /// the first time) and answers `f` under the same lock.
    async fn with_fresh<C: ConnectionTrait, T>(
        &self,
        db: &C,
        f: impl FnOnce(&Values) -> T,
    ) -> Result<T> {
        let mut idx = self.inner.lock().await;
        let follow = if idx.loaded {
            changelog::follow(db, TABLE, idx.cursor, changelog::RELOAD_AFTER).await?
        } else {
            Follow::Reload
        };
        match follow {
            Follow::Current => {}
            Follow::Reload => {
                let head = changelog::head(db, TABLE).await?;
                let rows: Vec<(Uuid, i64, String)> = columns().into_tuple().all(db).await?;
                let mut fresh = Index {
                    cursor: head,
                    loaded: true,
                    tenants: HashMap::with_capacity(rows.len()),
                };
                for (tenant, version, doc) in rows {
                    fresh.put(tenant, version, &doc)?;
                }
                tracing::debug!(
                    tenants = fresh.tenants.len(),
                    cursor = head,
                    "config index reloaded"
                );
                *idx = fresh;
            }
            Follow::Changed { keys, to } => {
                tracing::debug!(
                    changed = keys.len(),
                    cursor = to,
                    "config index follows the log"
                );
                for chunk in keys.chunks(changelog::KEYS_PER_READ) {
                    let rows: Vec<(Uuid, i64, String)> = columns()
                        .filter(config::Column::TenantId.is_in(chunk.iter().copied()))
                        .into_tuple()
                        .all(db)
                        .await?;
                    for id in chunk {
                        idx.tenants.remove(id);
                    }
                    for (tenant, version, doc) in rows {
                        idx.put(tenant, version, &doc)?;
                    }
                }
                idx.cursor = to;
            }
        }
        Ok(f(&idx.tenants))
    }

    /// Loads the index so the first question is as fast as the rest.
    pub async fn warm<C: ConnectionTrait>(&self, db: &C) -> Result<()> {
        self.with_fresh(db, |_| ()).await
    }
}

fn columns() -> sea_orm::Select<config::Entity> {
    config::Entity::find().select_only().columns([
        config::Column::TenantId,
        config::Column::Version,
        config::Column::Doc,
    ])
}

/// (flag key, variant, environment) of a flag question.
type FlagQuestion = (String, Option<String>, String);

/// Flag answers of the compiled snapshot they were computed from. The
/// snapshot is immutable and evaluation depends on nothing else, so the
/// same question asked of the same snapshot has the same answer: it is
/// kept until the snapshot is replaced (held by `Arc`, so its address is
/// never reused while cached), and repeated impact queries skip the
/// evaluation of every tenant.
#[derive(Clone, Default)]
pub struct FlagAnswers {
    inner: Arc<std::sync::Mutex<FlagCache>>,
}

#[derive(Default)]
struct FlagCache {
    engine: Option<Arc<Engine>>,
    answers: HashMap<FlagQuestion, Arc<Vec<Uuid>>>,
}

/// At most this many distinct questions are kept per snapshot.
const FLAG_ANSWERS_CAP: usize = 256;

impl FlagAnswers {
    fn get(&self, engine: &Arc<Engine>, q: &FlagQuestion) -> Arc<Vec<Uuid>> {
        {
            let cache = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if cache
                .engine
                .as_ref()
                .is_some_and(|e| Arc::ptr_eq(e, engine))
                && let Some(hit) = cache.answers.get(q)
            {
                return hit.clone();
            }
        }
        let ids = Arc::new(flag_matches(engine, &q.0, q.1.as_deref(), &q.2));
        let mut cache = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !cache
            .engine
            .as_ref()
            .is_some_and(|e| Arc::ptr_eq(e, engine))
        {
            cache.engine = Some(engine.clone());
            cache.answers.clear();
        }
        if cache.answers.len() >= FLAG_ANSWERS_CAP {
            cache.answers.clear();
        }
        cache.answers.insert(q.clone(), ids.clone());
        ids
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
    engine: &Arc<Engine>,
    index: &ConfigIndex,
    flags: &FlagAnswers,
    questions: &[Question],
) -> Result<Answer> {
    let mut matches = Vec::with_capacity(questions.len());
    for q in questions {
        check(q)?;
        if let Some(key) = &q.flag_key {
            let env = q.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT);
            let q = (key.clone(), q.flag_variant.clone(), env.to_owned());
            matches.push(flags.get(engine, &q).as_ref().clone());
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
