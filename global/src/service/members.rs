//! Members: subjects (the JWT `sub`) with a role per tenant, and what each
//! role may do. A tenant always keeps at least one owner.
//!
//! | role   | reads | writes config, projects | manages members | plan, deprovision, restore, transfer |
//! |--------|-------|-------------------------|-----------------|--------------------------------------|
//! | viewer | yes   | no                      | no              | no                                   |
//! | member | yes   | yes                     | no              | no                                   |
//! | admin  | yes   | yes                     | non-owners      | no                                   |
//! | owner  | yes   | yes                     | everyone        | yes                                  |
//!
//! Token roles still count: platform-admin is above owner, sre reads, a
//! tenant-admin token acts as admin and a tenant-viewer token as viewer.

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use shared::auth::{Principal, Role};
use shared::db::begin_write;
use shared::error::Field;
use shared::ids::TenantId;
use shared::names::{Subject, subject_key};
use shared::{Error, Result};

use crate::entity::{member, tenant};

/// How much a caller may do with one tenant, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Viewer,
    Member,
    Admin,
    Owner,
    Platform,
}

impl Level {
    pub fn parse(role: &str) -> Option<Level> {
        match role {
            "owner" => Some(Level::Owner),
            "admin" => Some(Level::Admin),
            "member" => Some(Level::Member),
            "viewer" => Some(Level::Viewer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Owner => "owner",
            Level::Admin => "admin",
            Level::Member => "member",
            Level::Viewer => "viewer",
            Level::Platform => "platform-admin",
            Level::None => "none",
        }
    }
}

/// The caller's level on `tenant`: the higher of its token roles and its membership.
pub async fn level(db: &DatabaseConnection, p: &Principal, tenant: TenantId) -> Result<Level> {
    let by_token = if p.has(Role::PlatformAdmin) || p.is_control_plane() {
        return Ok(Level::Platform);
    } else if p.has(Role::TenantAdmin) && p.tenants.contains(&tenant) {
        Level::Admin
    } else if p.reads_everything() || p.can_read_tenant(tenant) {
        Level::Viewer
    } else {
        Level::None
    };
    let by_membership = find(db, tenant, &p.subject)
        .await?
        .and_then(|m| Level::parse(&m.role))
        .unwrap_or(Level::None);
    Ok(by_token.max(by_membership))
}

/// NOT_FOUND for callers who may not see the tenant at all, FORBIDDEN for
/// those below `need`.
pub async fn require(
    db: &DatabaseConnection,
    p: &Principal,
    tenant: TenantId,
    need: Level,
    action: &str,
) -> Result<Level> {
    let have = level(db, p, tenant).await?;
    if have == Level::None {
        return Err(Error::NotFound(format!("tenant {tenant} not found")));
    }
    if have < need {
        return Err(Error::Forbidden(format!(
            "{action} needs the {} role on the tenant (you are {})",
            need.name(),
            have.name()
        )));
    }
    Ok(have)
}

/// `subject`'s membership of `tenant`, whatever the case of either.
async fn find<C: ConnectionTrait>(
    db: &C,
    tenant: TenantId,
    subject: &str,
) -> Result<Option<member::Model>> {
    Ok(member::Entity::find()
        .filter(member::Column::TenantId.eq(tenant.0))
        .filter(member::Column::SubjectKey.eq(subject_key(subject)))
        .one(db)
        .await?)
}

/// The tenants `subject` (in any case) is a member of.
pub async fn tenants_of(db: &DatabaseConnection, subject: &str) -> Result<Vec<TenantId>> {
    Ok(member::Entity::find()
        .filter(member::Column::SubjectKey.eq(subject_key(subject)))
        .all(db)
        .await?
        .into_iter()
        .map(|m| TenantId(m.tenant_id))
        .collect())
}

pub async fn list(db: &DatabaseConnection, tenant: TenantId) -> Result<Vec<member::Model>> {
    Ok(member::Entity::find()
        .filter(member::Column::TenantId.eq(tenant.0))
        .order_by_asc(member::Column::Subject)
        .all(db)
        .await?)
}

/// The first owner, recorded with the tenant's reservation (in its
/// transaction, hence the database error).
pub async fn insert_owner<C: ConnectionTrait>(
    db: &C,
    tenant: TenantId,
    subject: &str,
) -> std::result::Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    member::ActiveModel {
        tenant_id: Set(tenant.0),
        subject: Set(subject.to_owned()),
        subject_key: Set(subject_key(subject)),
        role: Set("owner".into()),
        version: Set(1),
        idempotency_key: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Every membership of a tenant goes (its provisioning failed, or its slug was reused).
pub async fn delete_all<C: ConnectionTrait>(db: &C, tenant: uuid::Uuid) -> Result<()> {
    member::Entity::delete_many()
        .filter(member::Column::TenantId.eq(tenant))
        .exec(db)
        .await?;
    Ok(())
}

fn role_of(role: &str) -> Result<Level> {
    Level::parse(role).ok_or_else(|| {
        Error::bad_input(
            "input.role",
            format!("unknown role `{role}`; roles: owner, admin, member, viewer"),
        )
    })
}

/// Only an owner may grant or take away ownership.
fn may_touch(caller: Level, role: Level) -> Result<()> {
    if role == Level::Owner && caller < Level::Owner {
        return Err(Error::Forbidden(
            "only an owner may grant, change or remove the owner role".into(),
        ));
    }
    Ok(())
}

/// Adds `subject` with `role`. A retry with the same key answers the same;
/// an existing member is a CONFLICT, and so is a member beyond the plan's
/// `max_members` (the plan as the directory holds it).
pub async fn add(
    db: &DatabaseConnection,
    caller: Level,
    tenant: TenantId,
    subject: &str,
    role: &str,
    key: &str,
) -> Result<member::Model> {
    let subject = Subject::parse(subject).field("input.subject")?;
    let subject = subject.as_str();
    let level = role_of(role)?;
    may_touch(caller, level)?;
    let txn = begin_write(db).await?;
    // The directory row, locked: concurrent adds to one tenant count in turn.
    let plan = tenant::Entity::find_by_id(tenant.0)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant {tenant} not found")))?
        .plan;
    if let Some(m) = find(&txn, tenant, subject).await? {
        return if m.idempotency_key.as_deref() == Some(key) && m.role == role {
            Ok(m)
        } else {
            Err(Error::Conflict(format!(
                "{} is already a member ({}); use changeMemberRole",
                m.subject, m.role
            )))
        };
    }
    if let Some(spec) = shared::plans::spec(&plan) {
        let have = count(&txn, tenant).await?;
        if have >= spec.max_members as u64 {
            return Err(Error::Conflict(format!(
                "quota max_members reached: plan {plan} allows {} members and the tenant has {have}; \
                 remove a member or change the plan",
                spec.max_members
            )));
        }
    }
    let now = Utc::now();
    let m = member::ActiveModel {
        tenant_id: Set(tenant.0),
        subject: Set(subject.to_owned()),
        subject_key: Set(subject_key(subject)),
        role: Set(role.to_owned()),
        version: Set(1),
        idempotency_key: Set(Some(key.to_owned())),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if shared::db::is_unique_violation(&e) {
            Error::Conflict(format!("{subject} was just added by another request"))
        } else {
            e.into()
        }
    })?;
    let target = Some(subject.to_owned());
    shared::audit::change(&txn, Some(tenant.0), target, shared::audit::NONE, &m).await?;
    txn.commit().await?;
    Ok(m)
}

/// How many members the tenant has.
pub async fn count<C: ConnectionTrait>(db: &C, tenant: TenantId) -> Result<u64> {
    Ok(member::Entity::find()
        .filter(member::Column::TenantId.eq(tenant.0))
        .count(db)
        .await?)
}

/// Refuses moving a tenant to `plan` when it has more members than the plan allows.
pub async fn check_plan_room(db: &DatabaseConnection, tenant: TenantId, plan: &str) -> Result<()> {
    let Some(spec) = shared::plans::spec(plan) else {
        return Ok(());
    };
    let have = count(db, tenant).await?;
    if have > spec.max_members as u64 {
        return Err(Error::bad_input(
            "input.plan",
            format!(
                "the tenant has {have} members; plan {plan} allows {}",
                spec.max_members
            ),
        ));
    }
    Ok(())
}

async fn owners<C: ConnectionTrait>(db: &C, tenant: TenantId) -> Result<u64> {
    Ok(member::Entity::find()
        .filter(member::Column::TenantId.eq(tenant.0))
        .filter(member::Column::Role.eq("owner"))
        .count(db)
        .await?)
}

async fn current<C: ConnectionTrait>(
    db: &C,
    tenant: TenantId,
    subject: &str,
    expected: i64,
) -> Result<member::Model> {
    let m = find(db, tenant, subject)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{subject} is not a member")))?;
    if m.version != expected {
        return Err(Error::Conflict(format!(
            "membership of {subject} is at version {}; expectedVersion was {expected}",
            m.version
        )));
    }
    Ok(m)
}

/// Changes a member's role under `expected`; the last owner cannot be demoted.
pub async fn change_role(
    db: &DatabaseConnection,
    caller: Level,
    tenant: TenantId,
    subject: &str,
    role: &str,
    expected: i64,
) -> Result<member::Model> {
    let level = role_of(role)?;
    let txn = begin_write(db).await?;
    let m = current(&txn, tenant, subject, expected).await?;
    may_touch(caller, level)?;
    may_touch(caller, Level::parse(&m.role).unwrap_or(Level::None))?;
    if m.role == "owner" && role != "owner" && owners(&txn, tenant).await? <= 1 {
        return Err(Error::bad_input(
            "input.role",
            "the last owner cannot be demoted: transfer ownership first",
        ));
    }
    let updated = set_role(&txn, tenant, subject, role, expected).await?;
    let target = Some(m.subject.clone());
    shared::audit::change(&txn, Some(tenant.0), target, &m, &updated).await?;
    txn.commit().await?;
    Ok(updated)
}

async fn set_role<C: ConnectionTrait>(
    db: &C,
    tenant: TenantId,
    subject: &str,
    role: &str,
    expected: i64,
) -> Result<member::Model> {
    let res = member::Entity::update_many()
        .col_expr(member::Column::Role, Expr::value(role))
        .col_expr(
            member::Column::Version,
            Expr::col(member::Column::Version).add(1),
        )
        .col_expr(member::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(member::Column::TenantId.eq(tenant.0))
        .filter(member::Column::SubjectKey.eq(subject_key(subject)))
        .filter(member::Column::Version.eq(expected))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        return Err(Error::Conflict(format!(
            "membership of {subject} changed concurrently; read it and retry"
        )));
    }
    find(db, tenant, subject)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("membership vanished")))
}

/// Removes a member under `expected`; the last owner cannot be removed.
pub async fn remove(
    db: &DatabaseConnection,
    caller: Level,
    tenant: TenantId,
    subject: &str,
    expected: i64,
) -> Result<member::Model> {
    let txn = begin_write(db).await?;
    let m = current(&txn, tenant, subject, expected).await?;
    may_touch(caller, Level::parse(&m.role).unwrap_or(Level::None))?;
    if m.role == "owner" && owners(&txn, tenant).await? <= 1 {
        return Err(Error::bad_input(
            "input.subject",
            "the last owner cannot be removed: transfer ownership first",
        ));
    }
    member::Entity::delete_by_id((tenant.0, m.subject.clone()))
        .exec(&txn)
        .await?;
    let who = Some(m.subject.clone());
    shared::audit::change(&txn, Some(tenant.0), who, &m, shared::audit::NONE).await?;
    txn.commit().await?;
    Ok(m)
}

/// Makes `to` (a member, at `expected`) an owner and the calling owner an
/// admin, in one transaction.
pub async fn transfer_ownership(
    db: &DatabaseConnection,
    from: &str,
    tenant: TenantId,
    to: &str,
    expected: i64,
) -> Result<member::Model> {
    if shared::names::same_subject(from, to) {
        return Err(Error::bad_input("input.to", "you already own this tenant"));
    }
    let txn = begin_write(db).await?;
    let target = current(&txn, tenant, to, expected).await?;
    let me = find(&txn, tenant, from)
        .await?
        .filter(|m| m.role == "owner")
        .ok_or_else(|| {
            Error::Forbidden("only a member who is an owner may transfer ownership".into())
        })?;
    let updated = set_role(&txn, tenant, to, "owner", target.version).await?;
    let demoted = set_role(&txn, tenant, from, "admin", me.version).await?;
    shared::audit::change(
        &txn,
        Some(tenant.0),
        Some(target.subject.clone()),
        [&me, &target],
        [&demoted, &updated],
    )
    .await?;
    txn.commit().await?;
    Ok(updated)
}
