//! A tenant's configuration, owned by its home cell: values layered
//! environment over project over tenant over the key's default, written all
//! or nothing under optimistic concurrency, with a full history.

use std::collections::BTreeMap;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::configkeys::api::Source;
use shared::configkeys::{Scope, store};
use shared::db::is_unique_violation;
use shared::ids::TenantId;
use shared::model::TenantStatus;
use shared::{Error, Result};

use crate::entity::{config, config_history};
use crate::service::tenants;

/// The project a write or read means when none is named.
pub const DEFAULT_PROJECT: &str = "default";

/// Where in the layers a value sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub project: Option<String>,
    pub environment: Option<String>,
}

impl Target {
    fn scope(&self) -> Scope {
        match (&self.project, &self.environment) {
            (_, Some(_)) => Scope::Environment,
            (Some(_), None) => Scope::Project,
            (None, None) => Scope::Tenant,
        }
    }

    fn project(&self) -> &str {
        self.project.as_deref().unwrap_or(DEFAULT_PROJECT)
    }
}

/// All of a tenant's values, by layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    pub tenant: BTreeMap<String, Value>,
    pub projects: BTreeMap<String, BTreeMap<String, Value>>,
    /// Keyed `project/environment`.
    pub environments: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Doc {
    fn layer_mut(&mut self, t: &Target) -> &mut BTreeMap<String, Value> {
        match t.scope() {
            Scope::Tenant => &mut self.tenant,
            Scope::Project => self.projects.entry(t.project().to_owned()).or_default(),
            Scope::Environment => self
                .environments
                .entry(format!(
                    "{}/{}",
                    t.project(),
                    t.environment.as_deref().unwrap_or_default()
                ))
                .or_default(),
        }
    }
}

pub struct Update {
    pub tenant: TenantId,
    pub target: Target,
    pub set: Vec<(String, Value)>,
    pub unset: Vec<String>,
    pub expected_version: i64,
    pub idempotency_key: String,
    pub actor: String,
}

#[derive(Debug, Clone)]
pub struct Effective {
    pub key: String,
    pub value: Value,
    pub source: Source,
}

pub async fn writable_tenant(db: &DatabaseConnection, id: TenantId) -> Result<()> {
    let t = tenants::get(db, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {id} not found")))?;
    match t.status {
        TenantStatus::Deprovisioning | TenantStatus::Deleted => Err(Error::Conflict(format!(
            "tenant {id} is {}: its configuration can no longer change",
            t.status.as_str()
        ))),
        TenantStatus::Suspended => Err(Error::Conflict(format!(
            "tenant {id} is SUSPENDED: writes are refused"
        ))),
        _ => Ok(()),
    }
}

fn hash(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

async fn load(db: &impl sea_orm::ConnectionTrait, tenant: TenantId) -> Result<(i64, Doc)> {
    match config::Entity::find_by_id(tenant.0).one(db).await? {
        None => Ok((0, Doc::default())),
        Some(row) => Ok((
            row.version,
            serde_json::from_str(&row.doc).map_err(Error::internal)?,
        )),
    }
}

/// A retry with a key already used: the same answer, or CONFLICT for other input.
async fn replay(
    db: &DatabaseConnection,
    tenant: TenantId,
    key: &str,
    request_hash: &str,
) -> Result<Option<i64>> {
    let prior = config_history::Entity::find()
        .filter(config_history::Column::TenantId.eq(tenant.0))
        .filter(config_history::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?;
    match prior {
        None => Ok(None),
        Some(p) if p.request_hash == request_hash => Ok(Some(p.version)),
        Some(_) => Err(Error::Conflict(format!(
            "idempotency key `{key}` was already used with different input"
        ))),
    }
}

/// Applies `u` all or nothing; returns the new version.
pub async fn update(db: &DatabaseConnection, u: Update) -> Result<i64> {
    let request = json!({
        "op": "update", "project": u.target.project, "environment": u.target.environment,
        "set": u.set, "unset": u.unset, "expectedVersion": u.expected_version,
    });
    let request_hash = hash(&request);
    if let Some(v) = replay(db, u.tenant, &u.idempotency_key, &request_hash).await? {
        return Ok(v);
    }
    writable_tenant(db, u.tenant).await?;
    crate::service::projects::check_target(
        db,
        u.tenant,
        u.target.project.as_deref(),
        u.target.environment.as_deref(),
    )
    .await?;
    let keys: BTreeMap<String, store::Stored> = store::all(db)
        .await?
        .into_iter()
        .map(|k| (k.def.key.clone(), k))
        .collect();
    let scope = u.target.scope();
    let mut problems = Vec::new();
    for (key, value) in &u.set {
        match keys.get(key) {
            None => problems.push(format!("{key}: no such config key")),
            Some(k) if !k.def.scopes.contains(&scope) => problems.push(format!(
                "{key}: may not be set at {scope:?} scope (allowed: {:?})",
                k.def.scopes
            )),
            Some(k) => {
                if let Err(e) = k.def.validate(value) {
                    problems.push(e);
                }
            }
        }
    }
    for key in &u.unset {
        if !keys.contains_key(key) {
            problems.push(format!("{key}: no such config key"));
        }
    }
    if problems.is_empty() && u.set.is_empty() && u.unset.is_empty() {
        problems.push("nothing to change: give set or unset".into());
    }
    if !problems.is_empty() {
        return Err(Error::bad_input("input.set", problems.join("; ")));
    }
    let scope_name = format!("{scope:?}").to_uppercase();
    commit(
        db,
        u.tenant,
        u.expected_version,
        &u.actor,
        &u.idempotency_key,
        &request_hash,
        |doc| {
            let layer = doc.layer_mut(&u.target);
            let mut diff = Vec::new();
            for (k, v) in &u.set {
                let before = layer.insert(k.clone(), v.clone());
                diff.push(json!({ "scope": scope_name, "key": k, "before": before, "after": v }));
            }
            for k in &u.unset {
                if let Some(before) = layer.remove(k) {
                    diff.push(
                        json!({ "scope": scope_name, "key": k, "before": before, "after": null }),
                    );
                }
            }
            diff
        },
    )
    .await
}

/// Restores the document of `to_version` as a new version.
pub async fn rollback(
    db: &DatabaseConnection,
    tenant: TenantId,
    to_version: i64,
    expected_version: i64,
    idempotency_key: &str,
    actor: &str,
) -> Result<i64> {
    let request_hash =
        hash(&json!({ "op": "rollback", "to": to_version, "expectedVersion": expected_version }));
    if let Some(v) = replay(db, tenant, idempotency_key, &request_hash).await? {
        return Ok(v);
    }
    writable_tenant(db, tenant).await?;
    let target: Doc = if to_version == 0 {
        Doc::default()
    } else {
        let row = config_history::Entity::find_by_id((tenant.0, to_version))
            .one(db)
            .await?
            .ok_or_else(|| {
                Error::bad_input("toVersion", format!("version {to_version} does not exist"))
            })?;
        serde_json::from_str(&row.doc).map_err(Error::internal)?
    };
    commit(db, tenant, expected_version, actor, idempotency_key, &request_hash, |doc| {
        let diff = vec![json!({ "rollbackTo": to_version, "before": serde_json::to_value(&*doc).unwrap_or(Value::Null) })];
        *doc = target.clone();
        diff
    })
    .await
}

/// Loads, changes and saves the document in one transaction, refusing a
/// stale `expected` version, and records the history row.
async fn commit(
    db: &DatabaseConnection,
    tenant: TenantId,
    expected: i64,
    actor: &str,
    idempotency_key: &str,
    request_hash: &str,
    change: impl FnOnce(&mut Doc) -> Vec<Value>,
) -> Result<i64> {
    let stale = |current: i64| {
        Error::Conflict(format!(
            "configuration is at version {current}; expectedVersion was {expected}"
        ))
    };
    let txn = db.begin().await?;
    let (current, mut doc) = load(&txn, tenant).await?;
    if current != expected {
        return Err(stale(current));
    }
    let before = json!({ "version": current, "doc": &doc });
    let diff = change(&mut doc);
    let version = current + 1;
    let doc_text = serde_json::to_string(&doc).map_err(Error::internal)?;
    let now = Utc::now();
    if current == 0 {
        let row = config::ActiveModel {
            tenant_id: Set(tenant.0),
            version: Set(version),
            doc: Set(doc_text.clone()),
            updated_at: Set(now),
        };
        if let Err(e) = row.insert(&txn).await {
            return Err(if is_unique_violation(&e) {
                stale(current + 1)
            } else {
                e.into()
            });
        }
    } else {
        let res = config::Entity::update_many()
            .col_expr(config::Column::Version, Expr::value(version))
            .col_expr(config::Column::Doc, Expr::value(doc_text.clone()))
            .col_expr(config::Column::UpdatedAt, Expr::value(now))
            .filter(config::Column::TenantId.eq(tenant.0))
            .filter(config::Column::Version.eq(current))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(stale(current + 1));
        }
    }
    let history = config_history::ActiveModel {
        tenant_id: Set(tenant.0),
        version: Set(version),
        actor: Set(actor.to_owned()),
        at: Set(now),
        diff: Set(Value::Array(diff).to_string()),
        doc: Set(doc_text),
        idempotency_key: Set(idempotency_key.to_owned()),
        request_hash: Set(request_hash.to_owned()),
    };
    if let Err(e) = history.insert(&txn).await {
        return Err(if is_unique_violation(&e) {
            Error::Conflict(
                "a concurrent write with the same idempotency key or version won; retry".into(),
            )
        } else {
            e.into()
        });
    }
    let after = json!({ "version": version, "doc": &doc });
    shared::audit::change(&txn, Some(tenant.0), None, before, after).await?;
    txn.commit().await?;
    Ok(version)
}

/// Every registered key with its value for this tenant, project and environment.
pub async fn effective(
    db: &DatabaseConnection,
    tenant: TenantId,
    project: Option<&str>,
    environment: Option<&str>,
) -> Result<(i64, Vec<Effective>)> {
    tenants::get(db, tenant)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {tenant} not found")))?;
    let (version, doc) = load(db, tenant).await?;
    let project = project.unwrap_or(DEFAULT_PROJECT);
    let env_layer = environment.and_then(|e| doc.environments.get(&format!("{project}/{e}")));
    let project_layer = doc.projects.get(project);
    let out = store::all(db)
        .await?
        .into_iter()
        .map(|k| {
            let key = k.def.key;
            let (value, source) = if let Some(v) = env_layer.and_then(|l| l.get(&key)) {
                (v.clone(), Source::Environment)
            } else if let Some(v) = project_layer.and_then(|l| l.get(&key)) {
                (v.clone(), Source::Project)
            } else if let Some(v) = doc.tenant.get(&key) {
                (v.clone(), Source::Tenant)
            } else {
                (k.def.default, Source::Default)
            };
            Effective { key, value, source }
        })
        .collect();
    Ok((version, out))
}

/// Newest first.
pub async fn history(
    db: &DatabaseConnection,
    tenant: TenantId,
    limit: u64,
) -> Result<Vec<config_history::Model>> {
    Ok(config_history::Entity::find()
        .filter(config_history::Column::TenantId.eq(tenant.0))
        .order_by_desc(config_history::Column::Version)
        .limit(limit)
        .all(db)
        .await?)
}
