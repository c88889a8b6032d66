//! Break-glass requests in the database: each action is one versioned,
//! audited transition of the request's row (the rules of which are in
//! [`super::rules`]); a revocation also goes out on `global.break-glass`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::json;
use shared::audit::{self, Outcome, Record};
use shared::auth::Principal;
use shared::breakglass::{Revoked, STREAM};
use shared::ids::{IdempotencyKey, TenantId};
use shared::names::same_subject;
use shared::sync::{Event, outbox};
use shared::{Error, Result};
use uuid::Uuid;

use super::rules::{
    self, ACTIVE, APPROVED, Change, NewRequest, OPERATORS, PENDING, REVOKED, Scope, operator,
    revoked, state,
};
use crate::State;
use crate::entity::break_glass as bg;
use crate::service::{directory, idempotency};

pub async fn get(st: &State, id: Uuid) -> Result<bg::Model> {
    bg::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("break-glass request {id} not found")))
}

/// A request as its reader may see it: operators see all, others their own.
pub async fn visible(st: &State, p: &Principal, id: Uuid) -> Result<bg::Model> {
    let m = get(st, id).await?;
    if p.has_any(&OPERATORS) || same_subject(&m.requester, &p.subject) {
        Ok(m)
    } else {
        Err(Error::NotFound(format!(
            "break-glass request {id} not found"
        )))
    }
}

pub async fn list(st: &State, status: Option<&str>) -> Result<Vec<bg::Model>> {
    let mut q = bg::Entity::find().order_by_desc(bg::Column::Id);
    if let Some(s) = status {
        q = q.filter(bg::Column::Status.eq(s));
    }
    Ok(q.all(&st.db).await?)
}

pub async fn request(
    st: &State,
    p: &Principal,
    key: &IdempotencyKey,
    n: NewRequest,
) -> Result<bg::Model> {
    operator(p, "requestBreakGlass")?;
    rules::check_request(&n, st.ops.break_glass_max_duration.as_secs() as i64)?;
    if directory::get(&st.db, TenantId(n.tenant_id))
        .await?
        .is_none()
    {
        return Err(Error::NotFound(format!("tenant {} not found", n.tenant_id)));
    }
    let proposed = Uuid::now_v7().to_string();
    let n = &n;
    idempotency::run(
        &st.db,
        "requestBreakGlass",
        key,
        &p.subject,
        n,
        &proposed,
        |rid| async move {
            let id = Uuid::parse_str(&rid).map_err(Error::internal)?;
            let now = Utc::now();
            let expiry = chrono::Duration::from_std(st.ops.break_glass_request_expiry)
                .map_err(Error::internal)?;
            let txn = shared::db::begin_write(&st.db).await?;
            let row = bg::ActiveModel {
                id: Set(id),
                tenant_id: Set(n.tenant_id),
                requester: Set(p.subject.clone()),
                reason: Set(n.reason.trim().to_owned()),
                scope: Set(n.scope.as_str().to_owned()),
                duration_secs: Set(n.duration_secs),
                status: Set(PENDING.to_owned()),
                request_expires_at: Set(now + expiry),
                decided_by: Set(None),
                decided_at: Set(None),
                denial_reason: Set(None),
                expires_at: Set(None),
                activated_at: Set(None),
                revoked_by: Set(None),
                revoked_at: Set(None),
                version: Set(1),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
            idempotency::complete(&txn, "requestBreakGlass", key).await?;
            audit::record_in(
                &txn,
                Record {
                    actor: p,
                    action: "requestBreakGlass",
                    tenant_id: Some(n.tenant_id),
                    target: Some(id.to_string()),
                    outcome: Outcome::Ok,
                    detail: json!({ "scope": n.scope, "durationSeconds": n.duration_secs, "reason": row.reason, "idempotencyKey": key.as_str() }),
                    diff: Some(audit::diff(serde_json::Value::Null, state(&row))),
                },
            )
            .await?;
            txn.commit().await?;
            Ok(row)
        },
        |rid| async move { get(st, Uuid::parse_str(&rid).map_err(Error::internal)?).await },
    )
    .await
}

/// Moves request `id` from one of `from` to a new state under optimistic
/// concurrency, audited in the same transaction. `decide` sees the current
/// row and refuses or says what changes.
async fn transition(
    st: &State,
    p: &Principal,
    action: &str,
    id: Uuid,
    expected_version: Option<i64>,
    decide: impl FnOnce(&bg::Model, DateTime<Utc>) -> Result<Change>,
    after_commit: impl FnOnce(&bg::Model),
) -> Result<bg::Model> {
    let txn = shared::db::begin_write(&st.db).await?;
    let cur = bg::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("break-glass request {id} not found")))?;
    if let Some(v) = expected_version
        && v != cur.version
    {
        return Err(Error::Conflict(format!(
            "break-glass request {id} is at version {}; expectedVersion was {v}",
            cur.version
        )));
    }
    let now = Utc::now();
    let change = decide(&cur, now)?;
    let mut q = bg::Entity::update_many()
        .col_expr(bg::Column::Status, Expr::value(change.status))
        .col_expr(bg::Column::Version, Expr::value(cur.version + 1))
        .col_expr(bg::Column::UpdatedAt, Expr::value(now));
    for (c, v) in change.cols {
        q = q.col_expr(c, Expr::value(v));
    }
    let res = q
        .filter(bg::Column::Id.eq(id))
        .filter(bg::Column::Version.eq(cur.version))
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(Error::Conflict(format!(
            "break-glass request {id} changed concurrently; read it and retry"
        )));
    }
    let new = bg::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("break-glass request vanished")))?;
    if change.status == REVOKED {
        let r = revoked(&new);
        outbox::enqueue(
            &txn,
            &Event::new(
                STREAM,
                &format!("break-glass:{id}"),
                new.version,
                "global",
                serde_json::to_value(&r).map_err(Error::internal)?,
            ),
        )
        .await?;
    }
    audit::record_in(
        &txn,
        Record {
            actor: p,
            action,
            tenant_id: Some(cur.tenant_id),
            target: Some(id.to_string()),
            outcome: Outcome::Ok,
            detail: change.detail,
            diff: Some(audit::diff(state(&cur), state(&new))),
        },
    )
    .await?;
    txn.commit().await?;
    after_commit(&new);
    Ok(new)
}

pub async fn approve(
    st: &State,
    p: &Principal,
    id: Uuid,
    expected_version: Option<i64>,
) -> Result<bg::Model> {
    let action = "approveBreakGlass";
    operator(p, action)?;
    let decide = |cur: &bg::Model, now| rules::approval(cur, p, now);
    transition(st, p, action, id, expected_version, decide, |_| {}).await
}

pub async fn deny(
    st: &State,
    p: &Principal,
    id: Uuid,
    reason: String,
    expected_version: Option<i64>,
) -> Result<bg::Model> {
    let action = "denyBreakGlass";
    operator(p, action)?;
    let reason = rules::denial_reason(reason)?;
    let decide = |cur: &bg::Model, now| rules::denial(cur, &p.subject, &reason, now);
    transition(st, p, action, id, expected_version, decide, |_| {}).await
}

/// A token for the approved access: only the requester, only while the
/// approved window lasts; it expires at the window's end at the latest.
pub async fn activate(st: &State, p: &Principal, id: Uuid) -> Result<(String, DateTime<Utc>)> {
    if p.break_glass.is_some() {
        return Err(Error::Forbidden(
            "activateBreakGlass cannot be done with a break-glass token".into(),
        ));
    }
    let mut token = None;
    let decide = |cur: &bg::Model, now| {
        let window = rules::activation_window(cur, p, now)?;
        let exp = rules::token_expiry(window, now);
        let t = st.keys.mint_break_glass(
            &p.subject,
            Scope::role(&cur.scope),
            TenantId(cur.tenant_id),
            id,
            exp.timestamp(),
        )?;
        let exp = DateTime::from_timestamp(exp.timestamp(), 0).unwrap_or(exp);
        token = Some((t, exp));
        Ok(Change {
            status: ACTIVE,
            cols: vec![(bg::Column::ActivatedAt, Some(now).into())],
            detail: json!({ "tokenExpiresAt": exp }),
        })
    };
    transition(st, p, "activateBreakGlass", id, None, decide, |_| {}).await?;
    token.ok_or_else(|| Error::internal(anyhow::anyhow!("no token minted")))
}

/// Revokes a request in any live state; its tokens are refused at once here
/// and, through the stream, in every other process. Revoking again is a no-op.
pub async fn revoke(
    st: &State,
    p: &Principal,
    id: Uuid,
    expected_version: Option<i64>,
) -> Result<bg::Model> {
    let cur = get(st, id).await?;
    let operator = p.has_any(&OPERATORS) && p.break_glass.is_none();
    if !(operator || same_subject(&cur.requester, &p.subject)) {
        // As for an unknown id: no oracle of which requests exist.
        return Err(Error::NotFound(format!(
            "break-glass request {id} not found"
        )));
    }
    if cur.status == REVOKED {
        return Ok(cur);
    }
    let revocations = st.revocations.clone();
    let decide = |cur: &bg::Model, now| rules::revocation(cur, &p.subject, now);
    let after = move |new: &bg::Model| revocations.revoke(&revoked(new));
    transition(
        st,
        p,
        "revokeBreakGlass",
        id,
        expected_version,
        decide,
        after,
    )
    .await
    .inspect(|_| st.relay.nudge())
}

/// Revocations whose tokens may still be alive: what a process loads at start.
pub async fn live_revocations<C: ConnectionTrait>(db: &C) -> Result<Vec<Revoked>> {
    let now = Utc::now();
    let rows = bg::Entity::find()
        .filter(bg::Column::Status.eq(REVOKED))
        .all(db)
        .await?;
    Ok(rows.iter().map(revoked).filter(|r| r.until > now).collect())
}

/// Expires unapproved requests past their deadline and approved ones past
/// their window; returns how many changed.
pub async fn expire(st: &State) -> Result<usize> {
    let now = Utc::now();
    let due = bg::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(
                    sea_orm::Condition::all()
                        .add(bg::Column::Status.eq(PENDING))
                        .add(bg::Column::RequestExpiresAt.lte(now)),
                )
                .add(
                    sea_orm::Condition::all()
                        .add(bg::Column::Status.is_in([APPROVED, ACTIVE]))
                        .add(bg::Column::ExpiresAt.lte(now)),
                ),
        )
        .all(&st.db)
        .await?;
    let sys = rules::system();
    let mut n = 0;
    for m in due {
        let r = transition(
            st,
            &sys,
            "expireBreakGlass",
            m.id,
            Some(m.version),
            rules::expiry,
            |_| {},
        )
        .await;
        if r.is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// Audit entries made under break-glass request `id`, both tiers, newest first.
pub async fn activity(
    st: &State,
    id: Uuid,
    first: u64,
    after: Option<Uuid>,
) -> Result<(Vec<audit::Entry>, bool)> {
    get(st, id).await?;
    audit::page(
        &st.db,
        &audit::Filter {
            break_glass_id: Some(id),
            ..Default::default()
        },
        first,
        after,
    )
    .await
}
