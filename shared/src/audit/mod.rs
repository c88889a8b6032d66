//! The audit log both tiers write: who did what to which tenant, when, with
//! what outcome, under which request (and break-glass grant), with the
//! before/after of the change. Each tier keeps its own hash chain
//! (`chain`); cells ship theirs to the global tier, which stores them
//! beside its own (`source` = the cell id).
//!
//! Residency: an entry's values (its `target`, `detail` and `diff`) are
//! hashed apart (`values_hash`, salted), and the chain hashes that hash and
//! the names of the fields changed (`fields`). A cell ships its entries
//! without their values, so its tenants' data stays in the cell: the
//! global tier's copy says which fields changed and where the full entry
//! is read (the cell's own `auditLog`). A tenant's purge erases the values
//! of its entries on both tiers (`chain::erase_tenant`); the chains verify
//! after either.

pub mod api;
pub mod chain;
pub mod entity;
pub mod migration;
pub mod trail;

pub use trail::{NONE, Trail, change};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::Result;
use crate::request::RequestId;

pub use entity::Model as Entry;

/// Whether the recorded attempt was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Ok,
    /// The change was refused (forbidden, invalid or conflicting).
    Refused,
}

impl Outcome {
    /// `OK` or `REFUSED`, as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Refused => "REFUSED",
        }
    }
}

/// One change to record.
pub struct Record<'a> {
    /// Who acted.
    pub actor: &'a Principal,
    /// The operation, named after its mutation, such as `setQuota`.
    pub action: &'a str,
    /// The tenant the change concerns; none for platform-wide changes.
    pub tenant_id: Option<Uuid>,
    /// What was changed, such as a tenant id or a flag key.
    pub target: Option<String>,
    /// Whether the change was made or refused.
    pub outcome: Outcome,
    /// The input and, for a refusal, the error.
    pub detail: Value,
    /// `{"before": …, "after": …}` (see [`diff`]), for changes that have both.
    pub diff: Option<Value>,
}

/// The before/after of a change, as recorded.
pub fn diff(before: Value, after: Value) -> Value {
    serde_json::json!({ "before": before, "after": after })
}

/// How deep [`changed_fields`] names a field: `doc.projects.web.some.key`
/// is as deep as a name goes; below, a changed object is named whole (its
/// own keys may be values).
const FIELD_DEPTH: usize = 4;
/// At most this many names per entry; more are summarised by their parent.
const MAX_FIELDS: usize = 64;

/// The paths (dot-joined object keys, at most [`FIELD_DEPTH`] deep) where
/// `before` and `after` differ: the names of the fields a change touched,
/// without their values. A create or delete names every field of the side
/// that exists.
pub fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    fn walk(
        path: &mut Vec<String>,
        a: &Value,
        b: &Value,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        if a == b {
            return;
        }
        let descend = path.len() < FIELD_DEPTH;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) if descend => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    path.push(k.clone());
                    walk(
                        path,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                    path.pop();
                }
            }
            (Value::Object(x), Value::Null) | (Value::Null, Value::Object(x))
                if descend && !x.is_empty() =>
            {
                for (k, v) in x {
                    path.push(k.clone());
                    walk(path, v, &Value::Null, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(if path.is_empty() {
                    "$".to_owned()
                } else {
                    path.join(".")
                });
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(&mut Vec::new(), before, after, &mut out);
    if out.len() > MAX_FIELDS {
        // Summarise by top-level field.
        out = out
            .into_iter()
            .map(|f| f.split('.').next().unwrap_or("$").to_owned())
            .collect();
    }
    out.into_iter().take(MAX_FIELDS).collect()
}

/// The names of the fields a recorded `{"before", "after"}` diff touched, as JSON.
fn fields_of(diff: &Value) -> String {
    let none = Value::Null;
    let before = diff.get("before").unwrap_or(&none);
    let after = diff.get("after").unwrap_or(&none);
    Value::from(changed_fields(before, after)).to_string()
}

fn entry(r: Record<'_>) -> Entry {
    let roles: Vec<&str> = r.actor.roles.iter().map(|x| x.as_str()).collect();
    Entry {
        id: Uuid::now_v7(),
        at: chain::now(),
        actor: r.actor.subject.clone(),
        roles: roles.join(","),
        action: r.action.to_owned(),
        tenant_id: r.tenant_id,
        target: r.target,
        outcome: r.outcome.as_str().to_owned(),
        request_id: RequestId::current().map(|i| i.to_string()),
        detail: r.detail.to_string(),
        source: chain::OWN.to_owned(),
        seq: 0,
        prev_hash: String::new(),
        hash: String::new(),
        break_glass_id: r.actor.break_glass.or_else(crate::breakglass::current),
        fields: r.diff.as_ref().map(fields_of),
        diff: r.diff.map(|d| d.to_string()),
        // Set by `chain::append`.
        values_hash: None,
        salt: None,
    }
}

/// Appends an entry in a transaction of its own.
pub async fn record(db: &DatabaseConnection, r: Record<'_>) -> Result<Entry> {
    let txn = crate::db::begin_write(db).await?;
    let e = chain::append(&txn, entry(r)).await?;
    txn.commit().await?;
    Ok(e)
}

/// Appends an entry in the change's own write transaction (begun with
/// `shared::db::begin_write`), so both commit or neither. Call it last:
/// the chain's head stays locked until the transaction ends.
pub async fn record_in<C: ConnectionTrait>(txn: &C, r: Record<'_>) -> Result<Entry> {
    chain::append(txn, entry(r)).await
}

/// Records how a mutation ended: OK, or REFUSED with the error's code and
/// message added to `detail`, in a transaction of its own (after the
/// change committed, or after it was refused).
pub async fn outcome<T>(
    db: &DatabaseConnection,
    actor: &Principal,
    action: &str,
    tenant_id: Option<Uuid>,
    target: Option<String>,
    detail: Value,
    result: &Result<T>,
) -> Result<()> {
    outcome_diff(db, actor, action, tenant_id, target, detail, None, result).await
}

/// [`outcome`] with the change's before/after (recorded only when it succeeded).
#[allow(clippy::too_many_arguments)]
pub async fn outcome_diff<T>(
    db: &DatabaseConnection,
    actor: &Principal,
    action: &str,
    tenant_id: Option<Uuid>,
    target: Option<String>,
    mut detail: Value,
    diff: Option<Value>,
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
            diff: if outcome == Outcome::Ok { diff } else { None },
        },
    )
    .await
    .map(|_| ())
}

/// Newest first, optionally for one tenant, actor or action, in a time
/// range, for some tenants only, under one break-glass grant, from one chain.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only entries about this tenant.
    pub tenant_id: Option<Uuid>,
    /// Only entries by this actor (the token's subject).
    pub actor: Option<String>,
    /// Only entries of this operation.
    pub action: Option<String>,
    /// Only entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only entries of these tenants (a tenant principal's view).
    pub tenants: Option<Vec<Uuid>>,
    /// Only entries made under this break-glass request.
    pub break_glass_id: Option<Uuid>,
    /// Only this chain: [`chain::OWN`] or a cell id.
    pub source: Option<String>,
    /// Only the entry at this position (of each chain, unless `source` names one).
    pub seq: Option<i64>,
}

fn query(f: &Filter) -> sea_orm::Select<entity::Entity> {
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
    if let Some(t) = f.from {
        q = q.filter(entity::Column::At.gte(t));
    }
    if let Some(t) = f.to {
        q = q.filter(entity::Column::At.lt(t));
    }
    if let Some(ts) = &f.tenants {
        q = q.filter(entity::Column::TenantId.is_in(ts.iter().copied()));
    }
    if let Some(b) = f.break_glass_id {
        q = q.filter(entity::Column::BreakGlassId.eq(b));
    }
    if let Some(s) = &f.source {
        q = q.filter(entity::Column::Source.eq(s.as_str()));
    }
    if let Some(n) = f.seq {
        q = q.filter(entity::Column::Seq.eq(n));
    }
    q
}

/// This tier's own entries, newest first.
pub async fn list<C: ConnectionTrait>(db: &C, f: &Filter, limit: u64) -> Result<Vec<Entry>> {
    let f = Filter {
        source: Some(f.source.clone().unwrap_or_default()),
        ..f.clone()
    };
    Ok(query(&f).limit(limit).all(db).await?)
}

/// One page, newest first (by id: UUIDv7, so by time), after the entry
/// `after` when given; and whether more follow.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    f: &Filter,
    first: u64,
    after: Option<Uuid>,
) -> Result<(Vec<Entry>, bool)> {
    let mut q = query(f);
    if let Some(a) = after {
        q = q.filter(entity::Column::Id.lt(a));
    }
    let mut rows = q.limit(first + 1).all(db).await?;
    let more = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

#[cfg(test)]
mod tests {
    use super::changed_fields;
    use serde_json::json;

    #[test]
    fn changed_fields_name_what_differs_without_values() {
        let before =
            json!({ "version": 1, "doc": { "tenant": { "a": 1, "b": "x" }, "projects": {} } });
        let after = json!({ "version": 2, "doc": { "tenant": { "a": 1, "b": "secret" }, "projects": { "web": { "k": true } } } });
        assert_eq!(
            changed_fields(&before, &after),
            ["doc.projects.web.k", "doc.tenant.b", "version"]
        );
        // A create names every field of what was made.
        assert_eq!(
            changed_fields(&json!(null), &json!({ "name": "n", "slug": "s" })),
            ["name", "slug"]
        );
        assert!(changed_fields(&after, &after).is_empty());
        // Below four levels a changed object is named whole: its keys may be values.
        let deep = |v| json!({ "doc": { "tenant": { "k": { "inner": v } } } });
        assert_eq!(
            changed_fields(&deep(json!({ "user-key": 1 })), &deep(json!({}))),
            ["doc.tenant.k.inner"]
        );
        assert_eq!(changed_fields(&json!(1), &json!(2)), ["$"]);
    }

    #[test]
    fn many_changed_fields_are_summarised_by_their_top_level() {
        let after: serde_json::Map<String, serde_json::Value> = (0..100)
            .map(|i| (format!("k{i}"), json!({ "v": i })))
            .collect();
        let f = changed_fields(&json!({}), &json!({ "doc": after }));
        assert_eq!(f, ["doc"]);
    }
}
