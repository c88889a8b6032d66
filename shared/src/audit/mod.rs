//! The audit log both tiers write: who did what to which tenant, when, with
//! what outcome, under which request. Each tier keeps its own table.

pub mod entity;
pub mod migration;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::Result;
use crate::request::RequestId;

pub use entity::Model as Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Refused => "REFUSED",
        }
    }
}

/// One change to record.
pub struct Record<'a> {
    pub actor: &'a Principal,
    pub action: &'a str,
    pub tenant_id: Option<Uuid>,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub detail: Value,
}

/// Appends an entry; pass a transaction to make it part of the change.
pub async fn record<C: ConnectionTrait>(db: &C, r: Record<'_>) -> Result<()> {
    let roles: Vec<&str> = r.actor.roles.iter().map(|x| x.as_str()).collect();
    entity::ActiveModel {
        id: Set(Uuid::now_v7()),
        at: Set(Utc::now()),
        actor: Set(r.actor.subject.clone()),
        roles: Set(roles.join(",")),
        action: Set(r.action.to_owned()),
        tenant_id: Set(r.tenant_id),
        target: Set(r.target),
        outcome: Set(r.outcome.as_str().to_owned()),
        request_id: Set(RequestId::current().map(|i| i.to_string())),
        detail: Set(r.detail.to_string()),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Records how a mutation ended: OK, or REFUSED with the error's code and
/// message added to `detail`.
pub async fn outcome<C: ConnectionTrait, T>(
    db: &C,
    actor: &Principal,
    action: &str,
    tenant_id: Option<Uuid>,
    target: Option<String>,
    mut detail: Value,
    result: &Result<T>,
) -> Result<()> {
    let outcome = match result {
        Ok(_) => Outcome::Ok,
        Err(e) => {
            detail["error"] =
                serde_json::json!({ "code": e.code().as_str(), "message": e.to_string() });
            Outcome::Refused
        }
    };
    record(
        db,
        Record {
            actor,
            action,
            tenant_id,
            target,
            outcome,
            detail,
        },
    )
    .await
}

/// Newest first, optionally for one tenant, actor or action.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub tenant_id: Option<Uuid>,
    pub actor: Option<String>,
    pub action: Option<String>,
}

pub async fn list<C: ConnectionTrait>(db: &C, f: &Filter, limit: u64) -> Result<Vec<Entry>> {
    let mut q = entity::Entity::find().order_by_desc(entity::Column::Id);
    if let Some(t) = f.tenant_id {
        q = q.filter(entity::Column::TenantId.eq(t));
    }
    if let Some(a) = &f.actor {
        q = q.filter(entity::Column::Actor.eq(a.as_str()));
    }
    if let Some(a) = &f.action {
        q = q.filter(entity::Column::Action.eq(a.as_str()));
    }
    Ok(q.limit(limit).all(db).await?)
}
