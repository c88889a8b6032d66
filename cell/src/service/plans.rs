//! A tenant's plan in its home cell: the plan's default quotas and
//! entitlements (`shared::plans`), per-tenant entitlement overrides, and
//! plan changes, all under one plan version (optimistic concurrency).

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, Set,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::ids::{IdempotencyKey, TenantId};
use shared::plans::{self, ENTITLEMENTS, Entitlement, EntitlementSource, Spec, TenantPlan};
use shared::{Error, Result};

use shared::db::begin_write;
use shared::lifecycle::{RECORDS_STREAM, RecordChange, plan_entity};
use shared::model::TenantStatus;
use shared::sync::{Event, outbox};

use crate::State;
use crate::entity::{entitlement_override, environment, plan_change, project, tenant};
use crate::service::config::writable_tenant;

fn spec_of(plan: &str) -> Result<Spec> {
    plans::spec(plan).ok_or_else(|| {
        let valid: Vec<&str> = plans::PLANS.iter().map(|p| p.name).collect();
        Error::bad_input(
            "input.plan",
            format!("unknown plan `{plan}`; valid plans: {}", valid.join(", ")),
        )
    })
}

async fn record<C: ConnectionTrait>(db: &C, id: TenantId) -> Result<tenant::Model> {
    tenant::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {id} not found")))
}

/// The tenant's plan, quotas and effective entitlements.
pub async fn get(db: &DatabaseConnection, id: TenantId) -> Result<TenantPlan> {
    let t = record(db, id).await?;
    let overrides = entitlement_override::Entity::find()
        .filter(entitlement_override::Column::TenantId.eq(id.0))
        .all(db)
        .await?;
    view(&t, &overrides)
}

/// The plans of those of `ids` this cell holds, in two queries.
pub async fn get_many(
    db: &DatabaseConnection,
    ids: &[TenantId],
) -> Result<Vec<(TenantId, TenantPlan)>> {
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|t| t.0).collect();
    let tenants = tenant::Entity::find()
        .filter(tenant::Column::Id.is_in(uuids.clone()))
        .all(db)
        .await?;
    let overrides = entitlement_override::Entity::find()
        .filter(entitlement_override::Column::TenantId.is_in(uuids))
        .all(db)
        .await?;
    tenants
        .iter()
        .map(|t| {
            let mine: Vec<_> = overrides
                .iter()
                .filter(|o| o.tenant_id == t.id)
                .cloned()
                .collect();
            Ok((TenantId(t.id), view(t, &mine)?))
        })
        .collect()
}

fn view(t: &tenant::Model, overrides: &[entitlement_override::Model]) -> Result<TenantPlan> {
    let spec = spec_of(&t.plan).map_err(|_| {
        Error::internal(anyhow::anyhow!(
            "tenant {} is on unknown plan {}",
            t.id,
            t.plan
        ))
    })?;
    let entitlements = ENTITLEMENTS
        .iter()
        .map(|name| match overrides.iter().find(|o| o.name == *name) {
            Some(o) => Entitlement {
                name: (*name).into(),
                enabled: o.enabled,
                source: EntitlementSource::Override,
            },
            None => Entitlement {
                name: (*name).into(),
                enabled: spec.entitlements.contains(name),
                source: EntitlementSource::Plan,
            },
        })
        .collect();
    Ok(TenantPlan {
        plan: t.plan.clone(),
        version: t.plan_version,
        limits: spec.limits(),
        entitlements,
    })
}

/// Bumps the plan version from `expected` (CONFLICT when stale) and sets `plan` if given.
async fn bump<C: ConnectionTrait>(
    db: &C,
    id: TenantId,
    expected: i64,
    plan: Option<&str>,
) -> Result<()> {
    let mut q = tenant::Entity::update_many()
        .col_expr(
            tenant::Column::PlanVersion,
            Expr::col(tenant::Column::PlanVersion).add(1),
        )
        .col_expr(tenant::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(p) = plan {
        q = q.col_expr(tenant::Column::Plan, Expr::value(p));
    }
    let res = q
        .filter(tenant::Column::Id.eq(id.0))
        .filter(tenant::Column::PlanVersion.eq(expected))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        let current = record(db, id).await?.plan_version;
        return Err(Error::Conflict(format!(
            "the plan is at version {current}; expectedVersion was {expected}"
        )));
    }
    Ok(())
}

/// Moves the tenant to `plan`; refused when its usage exceeds the new quotas.
/// The change is reported on `cell.tenants` (entity `tenant-plan:{id}`) in
/// the same transaction, so the global directory learns every plan.
pub async fn change(
    st: &State,
    id: TenantId,
    plan: &str,
    expected: i64,
    key: &IdempotencyKey,
) -> Result<TenantPlan> {
    let db = &st.db;
    let hash =
        request_hash(&json!({ "op": "changePlan", "plan": plan, "expectedVersion": expected }));
    keyed(db, id, key, &hash, || {
        change_once(st, id, plan, expected, key, &hash)
    })
    .await
}

async fn change_once(
    st: &State,
    id: TenantId,
    plan: &str,
    expected: i64,
    key: &IdempotencyKey,
    hash: &str,
) -> Result<TenantPlan> {
    let db = &st.db;
    let spec = spec_of(plan)?;
    writable_tenant(db, id).await?;
    let txn = begin_write(db).await?;
    let projects = project::Entity::find()
        .filter(project::Column::TenantId.eq(id.0))
        .count(&txn)
        .await? as i64;
    if projects > spec.max_projects {
        return Err(Error::bad_input(
            "input.plan",
            format!(
                "the tenant has {projects} projects; plan {plan} allows {}",
                spec.max_projects
            ),
        ));
    }
    bump(&txn, id, expected, Some(plan)).await?;
    let t = record(&txn, id).await?;
    remember(&txn, id, key, hash, t.plan_version).await?;
    let change = RecordChange {
        tenant_id: id.0,
        status: TenantStatus::parse(&t.status)
            .map_err(|e| Error::internal(anyhow::anyhow!(e.0)))?,
        plan: Some(plan.to_owned()),
    };
    let event = Event::new(
        RECORDS_STREAM,
        &plan_entity(id.0),
        t.plan_version,
        st.cell_id.as_str(),
        serde_json::to_value(change).map_err(Error::internal)?,
    );
    outbox::enqueue(&txn, &event).await?;
    txn.commit().await?;
    st.relay.nudge();
    // The plan is a tenant attribute flags and rollouts target.
    st.flags.rebuild(db, st.cell_id.as_str()).await?;
    get(db, id).await
}

/// Overrides one entitlement (`Some`), or removes the override (`None`).
pub async fn set_override(
    db: &DatabaseConnection,
    id: TenantId,
    name: &str,
    enabled: Option<bool>,
    expected: i64,
    key: &IdempotencyKey,
) -> Result<TenantPlan> {
    let hash = request_hash(&json!({
        "op": "setEntitlementOverride", "name": name, "enabled": enabled, "expectedVersion": expected,
    }));
    keyed(db, id, key, &hash, || {
        override_once(db, id, name, enabled, expected, key, &hash)
    })
    .await
}

async fn override_once(
    db: &DatabaseConnection,
    id: TenantId,
    name: &str,
    enabled: Option<bool>,
    expected: i64,
    key: &IdempotencyKey,
    hash: &str,
) -> Result<TenantPlan> {
    if !ENTITLEMENTS.contains(&name) {
        return Err(Error::bad_input(
            "input.name",
            format!(
                "unknown entitlement `{name}`; known: {}",
                ENTITLEMENTS.join(", ")
            ),
        ));
    }
    writable_tenant(db, id).await?;
    let txn = begin_write(db).await?;
    bump(&txn, id, expected, None).await?;
    let version = record(&txn, id).await?.plan_version;
    remember(&txn, id, key, hash, version).await?;
    match enabled {
        Some(on) => {
            entitlement_override::Entity::insert(entitlement_override::ActiveModel {
                tenant_id: Set(id.0),
                name: Set(name.to_owned()),
                enabled: Set(on),
                updated_at: Set(Utc::now()),
            })
            .on_conflict(
                OnConflict::columns([
                    entitlement_override::Column::TenantId,
                    entitlement_override::Column::Name,
                ])
                .update_columns([
                    entitlement_override::Column::Enabled,
                    entitlement_override::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        }
        None => {
            entitlement_override::Entity::delete_many()
                .filter(entitlement_override::Column::TenantId.eq(id.0))
                .filter(entitlement_override::Column::Name.eq(name))
                .exec(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    get(db, id).await
}

fn request_hash(request: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(request.to_string().as_bytes()))
}

/// Runs a keyed plan write once: a retry with the same key and input (or
/// a twin that lost the race to it) gets the tenant's plan back instead of
/// a CONFLICT on its now stale version; other input under the key is a
/// CONFLICT.
async fn keyed<F, Fut>(
    db: &DatabaseConnection,
    id: TenantId,
    key: &IdempotencyKey,
    hash: &str,
    write: F,
) -> Result<TenantPlan>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<TenantPlan>>,
{
    if prior(db, id, key, hash).await? {
        return get(db, id).await;
    }
    match write().await {
        Ok(plan) => Ok(plan),
        Err(e) if prior(db, id, key, hash).await? => {
            tracing::debug!(error = %e, "a twin request with the same key finished first");
            get(db, id).await
        }
        Err(e) => Err(e),
    }
}

/// Whether a write with `key` already happened with this input.
async fn prior(
    db: &DatabaseConnection,
    id: TenantId,
    key: &IdempotencyKey,
    hash: &str,
) -> Result<bool> {
    match plan_change::Entity::find_by_id((id.0, key.to_string()))
        .one(db)
        .await?
    {
        None => Ok(false),
        Some(p) if p.request_hash == hash => Ok(true),
        Some(_) => Err(Error::Conflict(format!(
            "idempotency key `{key}` was already used for another plan change"
        ))),
    }
}

async fn remember<C: ConnectionTrait>(
    txn: &C,
    id: TenantId,
    key: &IdempotencyKey,
    hash: &str,
    version: i64,
) -> Result<()> {
    plan_change::Entity::insert(plan_change::ActiveModel {
        tenant_id: Set(id.0),
        idempotency_key: Set(key.to_string()),
        request_hash: Set(hash.to_owned()),
        version: Set(version),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Refuses a new project or environment beyond the plan's quota.
pub async fn check_room<C: ConnectionTrait>(
    db: &C,
    id: TenantId,
    project_name: Option<&str>,
) -> Result<()> {
    let t = record(db, id).await?;
    let Some(spec) = plans::spec(&t.plan) else {
        return Ok(());
    };
    let (used, limit, quota) = match project_name {
        None => (
            project::Entity::find()
                .filter(project::Column::TenantId.eq(id.0))
                .count(db)
                .await? as i64,
            spec.max_projects,
            "max_projects",
        ),
        Some(p) => (
            environment::Entity::find()
                .filter(environment::Column::TenantId.eq(id.0))
                .filter(environment::Column::Project.eq(p))
                .count(db)
                .await? as i64,
            spec.max_environments_per_project,
            "max_environments_per_project",
        ),
    };
    if used >= limit {
        return Err(Error::Conflict(format!(
            "quota {quota} reached: plan {} allows {limit}",
            t.plan
        )));
    }
    Ok(())
}
