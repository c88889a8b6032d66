//! A tenant's quota overrides: versioned per tenant and metric, idempotent
//! by key, stored only in the tenant's home cell.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use sha2::{Digest, Sha256};
use shared::ids::TenantId;
use shared::model::TenantStatus;
use shared::quota::api::QuotaChange;
use shared::quota::{Rule, Source};
use shared::{Error, Result};

use crate::entity::{quota_change, quota_override, tenant};

/// A setQuota (`rule` given) or clearQuota (`rule` none).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub tenant: TenantId,
    pub metric: String,
    pub rule: Option<Rule>,
    pub expected_version: i64,
    pub idempotency_key: String,
    #[serde(skip)]
    pub actor: String,
}

fn fingerprint(c: &Change) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(c).unwrap_or_default()))
}

fn answer(metric: &str, version: i64, rule: bool) -> QuotaChange {
    QuotaChange {
        metric: metric.to_owned(),
        version,
        source: if rule { Source::Override } else { Source::Plan },
    }
}

/// Refuses tenants this cell does not hold, and DELETED ones.
pub async fn require_live<C: ConnectionTrait>(db: &C, t: TenantId) -> Result<tenant::Model> {
    let row = tenant::Entity::find_by_id(t.0)
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {t} not found")))?;
    if row.status == TenantStatus::Deleted.as_str() {
        return Err(Error::bad_input(
            "input.tenantId",
            format!("tenant {t} is DELETED; its quotas cannot change"),
        ));
    }
    Ok(row)
}

/// Applies the change under `expected_version`; the same key and input
/// again answers what the first did, other input with that key is a CONFLICT.
pub async fn change(db: &DatabaseConnection, c: Change) -> Result<QuotaChange> {
    require_live(db, c.tenant).await?;
    let hash = fingerprint(&c);
    let mut attempt = 0;
    let result = loop {
        match write(db, &c, &hash).await {
            // SQLite refuses a read transaction's upgrade to a write when
            // another connection wrote meanwhile: run it again.
            Err(e) if attempt < 5 && shared::db::is_busy(&e) => attempt += 1,
            other => break other,
        }
    };
    match result {
        Err(Error::Internal(e))
            if e.downcast_ref::<sea_orm::DbErr>()
                .is_some_and(shared::db::is_unique_violation) =>
        {
            // A concurrent retry with the same key won: answer what it did.
            replay(db, &c, &hash)
                .await?
                .ok_or_else(|| Error::Unavailable("quota change is contended; retry".into()))
        }
        other => other,
    }
}

async fn replay<C: ConnectionTrait>(db: &C, c: &Change, hash: &str) -> Result<Option<QuotaChange>> {
    let Some(done) =
        quota_change::Entity::find_by_id((c.tenant.to_string(), c.idempotency_key.clone()))
            .one(db)
            .await?
    else {
        return Ok(None);
    };
    if done.request_hash != hash {
        return Err(Error::Conflict(format!(
            "idempotency key `{}` was already used with different input",
            c.idempotency_key
        )));
    }
    Ok(Some(answer(&done.metric, done.version, c.rule.is_some())))
}

async fn write(db: &DatabaseConnection, c: &Change, hash: &str) -> Result<QuotaChange> {
    let txn = db.begin().await?;
    if let Some(done) = replay(&txn, c, hash).await? {
        return Ok(done);
    }
    let before = quota_override::Entity::find_by_id((c.tenant.to_string(), c.metric.clone()))
        .one(&txn)
        .await?;
    let current = before.as_ref().map(|r| r.version).unwrap_or(0);
    if current != c.expected_version {
        return Err(Error::Conflict(format!(
            "the quota of {} on `{}` is at version {current}; expectedVersion was {}",
            c.tenant, c.metric, c.expected_version
        )));
    }
    let version = current + 1;
    let rule = c
        .rule
        .map(|r| serde_json::to_string(&r))
        .transpose()
        .map_err(Error::internal)?;
    let now = Utc::now();
    quota_override::Entity::insert(quota_override::ActiveModel {
        tenant_id: Set(c.tenant.to_string()),
        metric: Set(c.metric.clone()),
        rule: Set(rule),
        version: Set(version),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            quota_override::Column::TenantId,
            quota_override::Column::Metric,
        ])
        .update_columns([
            quota_override::Column::Rule,
            quota_override::Column::Version,
            quota_override::Column::UpdatedAt,
        ])
        .to_owned(),
    )
    .exec(&txn)
    .await?;
    quota_change::Entity::insert(quota_change::ActiveModel {
        tenant_id: Set(c.tenant.to_string()),
        idempotency_key: Set(c.idempotency_key.clone()),
        metric: Set(c.metric.clone()),
        version: Set(version),
        request_hash: Set(hash.to_owned()),
        actor: Set(c.actor.clone()),
        at: Set(now),
    })
    .exec(&txn)
    .await
    .map_err(Error::internal)?;
    let after = quota_override::Entity::find_by_id((c.tenant.to_string(), c.metric.clone()))
        .one(&txn)
        .await?;
    let target = Some(c.metric.clone());
    shared::audit::change(&txn, Some(c.tenant.0), target, &before, &after).await?;
    txn.commit().await?;
    Ok(answer(&c.metric, version, c.rule.is_some()))
}

/// The tenant's overrides: metric → (rule if set, version).
pub async fn overrides<C: ConnectionTrait>(
    db: &C,
    t: TenantId,
) -> Result<Vec<(String, Option<Rule>, i64)>> {
    quota_override::Entity::find()
        .filter(quota_override::Column::TenantId.eq(t.to_string()))
        .all(db)
        .await?
        .into_iter()
        .map(|r| {
            let rule = r
                .rule
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(Error::internal)?;
            Ok((r.metric, rule, r.version))
        })
        .collect()
}
