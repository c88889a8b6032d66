//! Break-glass access: an SRE asks for READ or WRITE access to one tenant
//! for a while; another SRE (or platform admin) approves or denies it; the
//! requester activates it for a token scoped to that tenant whose expiry
//! never passes approval + the approved duration; anyone of them may
//! revoke it, and the revocation reaches every process of both tiers on
//! `global.break-glass`. Unapproved requests expire. Every state change is
//! versioned and audited in its own transaction.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde::Serialize;
use serde_json::json;
use shared::audit::{self, Outcome, Record};
use shared::auth::{Principal, Role};
use shared::breakglass::{Revoked, STREAM};
use shared::ids::{IdempotencyKey, TenantId};
use shared::sync::{Event, outbox};
use shared::{Error, Result};
use uuid::Uuid;

use super::{directory, idempotency};
use crate::State;
use crate::entity::break_glass as bg;

pub const PENDING: &str = "PENDING";
pub const APPROVED: &str = "APPROVED";
pub const ACTIVE: &str = "ACTIVE";
pub const DENIED: &str = "DENIED";
pub const EXPIRED: &str = "EXPIRED";
pub const REVOKED: &str = "REVOKED";

/// The roles that ask for, decide on and revoke break-glass access.
pub const OPERATORS: [Role; 2] = [Role::Sre, Role::PlatformAdmin];

/// A token lives at most this long; the requester activates again for more,
/// up to the approved window.
const TOKEN_TTL_SECS: i64 = 3600;
const MAX_REASON: usize = 2000;

#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[graphql(name = "BreakGlassScope")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "READ",
            Scope::Write => "WRITE",
        }
    }

    /// The role a token of this scope carries on its tenant.
    pub fn role(s: &str) -> Role {
        if s == "WRITE" {
            Role::TenantAdmin
        } else {
            Role::TenantViewer
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewRequest {
    pub tenant_id: Uuid,
    pub reason: String,
    pub scope: Scope,
    pub duration_secs: i64,
}

fn operator(p: &Principal, action: &str) -> Result<()> {
    if p.break_glass.is_some() {
        return Err(Error::Forbidden(format!(
            "{action} cannot be done with a break-glass token"
        )));
    }
    p.require_any(&OPERATORS, action)
}

fn state(m: &bg::Model) -> serde_json::Value {
    json!({ "status": m.status, "version": m.version })
}

fn system() -> Principal {
    Principal {
        subject: "global".into(),
        roles: vec![Role::Service],
        tenants: vec![],
        cell: None,
        break_glass: None,
    }
}

pub async fn get(st: &State, id: Uuid) -> Result<bg::Model> {
    bg::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("break-glass request {id} not found")))
}

/// A request as its reader may see it: operators see all, others their own.
pub async fn visible(st: &State, p: &Principal, id: Uuid) -> Result<bg::Model> {
    let m = get(st, id).await?;
    if p.has_any(&OPERATORS) || m.requester == p.subject {
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
    let max = st.ops.break_glass_max_duration.as_secs() as i64;
    if n.duration_secs <= 0 {
        return Err(Error::bad_input(
            "input.durationSeconds",
            "durationSeconds must be positive",
        ));
    }
    if n.duration_secs > max {
        return Err(Error::bad_input(
            "input.durationSeconds",
            format!(
                "durationSeconds is {}; break-glass access lasts at most {max} seconds",
                n.duration_secs
            ),
        ));
    }
    let reason = n.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON {
        return Err(Error::bad_input(
            "input.reason",
            format!("say why: a reason is 1 to {MAX_REASON} bytes"),
        ));
    }
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

/// What a transition sets besides status, version and updated_at.
struct Change {
    status: &'static str,
    cols: Vec<(bg::Column, sea_orm::Value)>,
    detail: serde_json::Value,
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

fn not_pending(m: &bg::Model, now: DateTime<Utc>, action: &str) -> Option<Error> {
    let id = m.id;
    match m.status.as_str() {
        PENDING if m.request_expires_at <= now => Some(Error::Conflict(format!(
            "break-glass request {id} expired unapproved at {}; request access again",
            m.request_expires_at.to_rfc3339()
        ))),
        PENDING => None,
        EXPIRED => Some(Error::Conflict(format!(
            "break-glass request {id} has expired; {action} applies to pending requests only"
        ))),
        DENIED => Some(Error::Conflict(format!(
            "break-glass request {id} was denied; {action} applies to pending requests only"
        ))),
        REVOKED => Some(Error::Conflict(format!(
            "break-glass request {id} was revoked; {action} applies to pending requests only"
        ))),
        other => Some(Error::Conflict(format!(
            "break-glass request {id} is already {other}; {action} applies to pending requests only"
        ))),
    }
}

pub async fn approve(
    st: &State,
    p: &Principal,
    id: Uuid,
    expected_version: Option<i64>,
) -> Result<bg::Model> {
    operator(p, "approveBreakGlass")?;
    transition(
        st,
        p,
        "approveBreakGlass",
        id,
        expected_version,
        |cur, now| {
            if cur.requester == p.subject {
                return Err(Error::Forbidden(
                    "a break-glass request must be approved by someone other than its requester"
                        .into(),
                ));
            }
            if let Some(e) = not_pending(cur, now, "approveBreakGlass") {
                return Err(e);
            }
            let expires = now + chrono::Duration::seconds(cur.duration_secs);
            Ok(Change {
                status: APPROVED,
                cols: vec![
                    (bg::Column::DecidedBy, p.subject.clone().into()),
                    (bg::Column::DecidedAt, Some(now).into()),
                    (bg::Column::ExpiresAt, Some(expires).into()),
                ],
                detail: json!({ "expiresAt": expires }),
            })
        },
        |_| {},
    )
    .await
}

pub async fn deny(
    st: &State,
    p: &Principal,
    id: Uuid,
    reason: String,
    expected_version: Option<i64>,
) -> Result<bg::Model> {
    operator(p, "denyBreakGlass")?;
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.len() > MAX_REASON {
        return Err(Error::bad_input(
            "reason",
            format!("say why: a reason is 1 to {MAX_REASON} bytes"),
        ));
    }
    transition(
        st,
        p,
        "denyBreakGlass",
        id,
        expected_version,
        |cur, now| {
            if let Some(e) = not_pending(cur, now, "denyBreakGlass") {
                return Err(e);
            }
            Ok(Change {
                status: DENIED,
                cols: vec![
                    (bg::Column::DecidedBy, p.subject.clone().into()),
                    (bg::Column::DecidedAt, Some(now).into()),
                    (bg::Column::DenialReason, Some(reason.clone()).into()),
                ],
                detail: json!({ "reason": reason }),
            })
        },
        |_| {},
    )
    .await
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
    transition(
        st,
        p,
        "activateBreakGlass",
        id,
        None,
        |cur, now| {
            if cur.requester != p.subject {
                // Operators may see the request: they learn nothing new.
                // Anyone else gets what an unknown id gets.
                return Err(if p.has_any(&OPERATORS) {
                    Error::Forbidden("only the requester may activate a break-glass request".into())
                } else {
                    Error::NotFound(format!("break-glass request {id} not found"))
                });
            }
            let window = match (cur.status.as_str(), cur.expires_at) {
                (APPROVED | ACTIVE, Some(end)) if end > now => end,
                (APPROVED | ACTIVE, _) => {
                    return Err(Error::Conflict(format!(
                        "break-glass request {id} has expired"
                    )));
                }
                (PENDING, _) => {
                    return Err(Error::Conflict(format!(
                        "break-glass request {id} is not approved yet"
                    )));
                }
                (other, _) => {
                    return Err(Error::Conflict(format!(
                        "break-glass request {id} is {other}; only approved requests activate"
                    )));
                }
            };
            let exp = window.min(now + chrono::Duration::seconds(TOKEN_TTL_SECS));
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
        },
        |_| {},
    )
    .await?;
    token.ok_or_else(|| Error::internal(anyhow::anyhow!("no token minted")))
}

fn revoked(m: &bg::Model) -> Revoked {
    Revoked {
        id: m.id,
        until: m
            .expires_at
            .unwrap_or_else(|| m.revoked_at.unwrap_or_else(Utc::now)),
    }
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
    if !(p.has_any(&OPERATORS) && p.break_glass.is_none()) && cur.requester != p.subject {
        // As for an unknown id: no oracle of which requests exist.
        return Err(Error::NotFound(format!(
            "break-glass request {id} not found"
        )));
    }
    if cur.status == REVOKED {
        return Ok(cur);
    }
    let revocations = st.revocations.clone();
    transition(
        st,
        p,
        "revokeBreakGlass",
        id,
        expected_version,
        |cur, now| match cur.status.as_str() {
            PENDING | APPROVED | ACTIVE => Ok(Change {
                status: REVOKED,
                cols: vec![
                    (bg::Column::RevokedBy, p.subject.clone().into()),
                    (bg::Column::RevokedAt, Some(now).into()),
                ],
                detail: json!({}),
            }),
            other => Err(Error::Conflict(format!(
                "break-glass request {id} is {other}; nothing to revoke"
            ))),
        },
        move |new| revocations.revoke(&revoked(new)),
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
    let sys = system();
    let mut n = 0;
    for m in due {
        let r = transition(
            st,
            &sys,
            "expireBreakGlass",
            m.id,
            Some(m.version),
            |cur, now| {
                let due = match cur.status.as_str() {
                    PENDING => cur.request_expires_at <= now,
                    APPROVED | ACTIVE => cur.expires_at.is_some_and(|e| e <= now),
                    _ => false,
                };
                if due {
                    Ok(Change {
                        status: EXPIRED,
                        cols: vec![],
                        detail: json!({}),
                    })
                } else {
                    Err(Error::Conflict("no longer due".into()))
                }
            },
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
