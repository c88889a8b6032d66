//! A tenant's projects and their environments. The default project
//! (`default`, with `dev`, `stage` and `prod`) is made when the tenant is
//! provisioned; every new project gets the same three environments.

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use shared::db::begin_write;
use shared::error::Field;
use shared::ids::{Label, TenantId};
use shared::{Error, Result};

use crate::entity::{environment, project};
use crate::service::config::{DEFAULT_PROJECT, writable_tenant};
use crate::service::tenants;

pub const DEFAULT_ENVIRONMENTS: [&str; 3] = ["dev", "stage", "prod"];

/// A project with its environments.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Project {
    pub name: String,
    pub version: i64,
    pub environments: Vec<String>,
}

/// Project and environment names are DNS labels, like cell ids.
pub fn check_label(name: &str, field: &str) -> Result<()> {
    Label::parse(name).map(|_| ()).field(field)
}

async fn insert_project<C: ConnectionTrait>(
    db: &C,
    tenant: TenantId,
    name: &str,
    key: Option<&str>,
) -> Result<bool> {
    let now = Utc::now();
    let res = project::Entity::insert(project::ActiveModel {
        tenant_id: Set(tenant.0),
        name: Set(name.to_owned()),
        version: Set(1),
        idempotency_key: Set(key.map(str::to_owned)),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([project::Column::TenantId, project::Column::Name])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    for env in DEFAULT_ENVIRONMENTS {
        environment::Entity::insert(environment::ActiveModel {
            tenant_id: Set(tenant.0),
            project: Set(name.to_owned()),
            name: Set(env.to_owned()),
            idempotency_key: Set(None),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                environment::Column::TenantId,
                environment::Column::Project,
                environment::Column::Name,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(res == 1)
}

/// Makes the default project and its environments; a no-op when they exist.
pub async fn allocate_defaults(db: &DatabaseConnection, tenant: TenantId) -> Result<()> {
    tenants::get(db, tenant)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {tenant} not found")))?;
    let txn = begin_write(db).await?;
    if insert_project(&txn, tenant, DEFAULT_PROJECT, None).await? {
        let made = get(&txn, tenant, DEFAULT_PROJECT).await?;
        let target = Some(DEFAULT_PROJECT.to_owned());
        shared::audit::change(&txn, Some(tenant.0), target, shared::audit::NONE, &made).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The projects of each of `tenants` (at most 500), in two queries; a
/// tenant without projects gets an empty list.
pub async fn list_many(
    db: &DatabaseConnection,
    tenants: &[TenantId],
) -> Result<Vec<(TenantId, Vec<Project>)>> {
    let ids: Vec<uuid::Uuid> = tenants.iter().map(|t| t.0).collect();
    let projects = project::Entity::find()
        .filter(project::Column::TenantId.is_in(ids.clone()))
        .order_by_asc(project::Column::Name)
        .all(db)
        .await?;
    let envs = environment::Entity::find()
        .filter(environment::Column::TenantId.is_in(ids))
        .order_by_asc(environment::Column::CreatedAt)
        .order_by_asc(environment::Column::Name)
        .all(db)
        .await?;
    Ok(tenants
        .iter()
        .map(|t| {
            let mine = projects
                .iter()
                .filter(|p| p.tenant_id == t.0)
                .map(|p| Project {
                    environments: envs
                        .iter()
                        .filter(|e| e.tenant_id == t.0 && e.project == p.name)
                        .map(|e| e.name.clone())
                        .collect(),
                    name: p.name.clone(),
                    version: p.version,
                })
                .collect();
            (*t, mine)
        })
        .collect())
}

pub async fn list<C: ConnectionTrait>(db: &C, tenant: TenantId) -> Result<Vec<Project>> {
    let projects = project::Entity::find()
        .filter(project::Column::TenantId.eq(tenant.0))
        .order_by_asc(project::Column::Name)
        .all(db)
        .await?;
    let envs = environment::Entity::find()
        .filter(environment::Column::TenantId.eq(tenant.0))
        .order_by_asc(environment::Column::CreatedAt)
        .order_by_asc(environment::Column::Name)
        .all(db)
        .await?;
    Ok(projects
        .into_iter()
        .map(|p| Project {
            environments: envs
                .iter()
                .filter(|e| e.project == p.name)
                .map(|e| e.name.clone())
                .collect(),
            name: p.name,
            version: p.version,
        })
        .collect())
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    tenant: TenantId,
    name: &str,
) -> Result<Option<Project>> {
    Ok(list(db, tenant).await?.into_iter().find(|p| p.name == name))
}

/// Creates a project (with dev, stage and prod). A retry with the same key
/// and name gets the project; the key with another name, or a name that
/// exists, is a CONFLICT.
pub async fn create_project(
    db: &DatabaseConnection,
    tenant: TenantId,
    name: &str,
    key: &str,
) -> Result<Project> {
    check_label(name, "input.name")?;
    let prior = project::Entity::find()
        .filter(project::Column::TenantId.eq(tenant.0))
        .filter(project::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?;
    if let Some(p) = prior {
        return if p.name == name {
            get(db, tenant, name).await?.ok_or_else(gone)
        } else {
            Err(Error::Conflict(format!(
                "idempotency key `{key}` was already used for project `{}`",
                p.name
            )))
        };
    }
    writable_tenant(db, tenant).await?;
    let txn = begin_write(db).await?;
    if project::Entity::find_by_id((tenant.0, name.to_owned()))
        .one(&txn)
        .await?
        .is_some()
    {
        return Err(Error::Conflict(format!("project `{name}` already exists")));
    }
    crate::service::plans::check_room(&txn, tenant, None).await?;
    if !insert_project(&txn, tenant, name, Some(key)).await? {
        return Err(Error::Conflict(format!("project `{name}` already exists")));
    }
    let made = get(&txn, tenant, name).await?.ok_or_else(gone)?;
    let target = Some(name.to_owned());
    shared::audit::change(&txn, Some(tenant.0), target, shared::audit::NONE, &made).await?;
    txn.commit().await?;
    Ok(made)
}

fn gone() -> Error {
    Error::internal(anyhow::anyhow!("project vanished"))
}

/// Adds an environment to a project, bumping the project's version; with
/// `expected_version`, a stale version is a CONFLICT. Retry-safe by key.
pub async fn create_environment(
    db: &DatabaseConnection,
    tenant: TenantId,
    project_name: &str,
    name: &str,
    key: &str,
    expected_version: Option<i64>,
) -> Result<Project> {
    check_label(project_name, "input.projectId")?;
    check_label(name, "input.name")?;
    let prior = environment::Entity::find()
        .filter(environment::Column::TenantId.eq(tenant.0))
        .filter(environment::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?;
    if let Some(e) = prior {
        return if e.project == project_name && e.name == name {
            get(db, tenant, project_name).await?.ok_or_else(gone)
        } else {
            Err(Error::Conflict(format!(
                "idempotency key `{key}` was already used for environment `{}/{}`",
                e.project, e.name
            )))
        };
    }
    writable_tenant(db, tenant).await?;
    let txn = begin_write(db).await?;
    let p = project::Entity::find_by_id((tenant.0, project_name.to_owned()))
        .one(&txn)
        .await?
        .ok_or_else(|| {
            Error::bad_input(
                "input.projectId",
                format!("project `{project_name}` does not exist"),
            )
        })?;
    if let Some(v) = expected_version
        && v != p.version
    {
        return Err(Error::Conflict(format!(
            "project `{project_name}` is at version {}; expectedVersion was {v}",
            p.version
        )));
    }
    let exists =
        environment::Entity::find_by_id((tenant.0, project_name.to_owned(), name.to_owned()))
            .one(&txn)
            .await?;
    if exists.is_some() {
        return Err(Error::Conflict(format!(
            "environment `{name}` already exists in project `{project_name}`"
        )));
    }
    crate::service::plans::check_room(&txn, tenant, Some(project_name)).await?;
    let before = get(&txn, tenant, project_name).await?;
    environment::Entity::insert(environment::ActiveModel {
        tenant_id: Set(tenant.0),
        project: Set(project_name.to_owned()),
        name: Set(name.to_owned()),
        idempotency_key: Set(Some(key.to_owned())),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(&txn)
    .await?;
    let bumped = project::Entity::update_many()
        .col_expr(
            project::Column::Version,
            Expr::col(project::Column::Version).add(1),
        )
        .col_expr(project::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(project::Column::TenantId.eq(tenant.0))
        .filter(project::Column::Name.eq(project_name))
        .filter(project::Column::Version.eq(p.version))
        .exec(&txn)
        .await?;
    if bumped.rows_affected != 1 {
        return Err(Error::Conflict(format!(
            "project `{project_name}` changed concurrently; retry"
        )));
    }
    let after = get(&txn, tenant, project_name).await?.ok_or_else(gone)?;
    let target = Some(project_name.to_owned());
    shared::audit::change(&txn, Some(tenant.0), target, &before, &after).await?;
    txn.commit().await?;
    Ok(after)
}

/// Refuses a config target naming a project or environment the tenant does
/// not have (the default project when none is named).
pub async fn check_target(
    db: &DatabaseConnection,
    tenant: TenantId,
    project_name: Option<&str>,
    environment: Option<&str>,
) -> Result<()> {
    if project_name.is_none() && environment.is_none() {
        return Ok(());
    }
    let name = project_name.unwrap_or(DEFAULT_PROJECT);
    let field = if project_name.is_some() {
        "input.projectId"
    } else {
        "input.environment"
    };
    let p = get(db, tenant, name)
        .await?
        .ok_or_else(|| Error::bad_input(field, format!("the tenant has no project `{name}`")))?;
    if let Some(env) = environment
        && !p.environments.iter().any(|e| e == env)
    {
        return Err(Error::bad_input(
            "input.environment",
            format!(
                "project `{name}` has no environment `{env}` (it has: {})",
                p.environments.join(", ")
            ),
        ));
    }
    Ok(())
}
