//! The rules of break-glass access, apart from storage: who may act, what
//! a request must say, and which state change each action makes from
//! where a request stands (pure functions of the row and the time).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use shared::auth::{Principal, Role};
use shared::breakglass::Revoked;
use shared::names::same_subject;
use shared::{Error, Result};
use uuid::Uuid;

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
pub(super) const TOKEN_TTL_SECS: i64 = 3600;
const MAX_REASON: usize = 2000;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
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

/// What a transition sets besides status, version and updated_at.
#[derive(Debug)]
pub(super) struct Change {
    pub status: &'static str,
    pub cols: Vec<(bg::Column, sea_orm::Value)>,
    pub detail: serde_json::Value,
}

/// An operator acting with their own token (not a break-glass one).
pub(super) fn operator(p: &Principal, action: &str) -> Result<()> {
    if p.break_glass.is_some() {
        return Err(Error::Forbidden(format!(
            "{action} cannot be done with a break-glass token"
        )));
    }
    p.require_any(&OPERATORS, action)
}

/// The status and version a request's audit diff shows.
pub(super) fn state(m: &bg::Model) -> serde_json::Value {
    json!({ "status": m.status, "version": m.version })
}

/// The control plane itself, as the actor of expiries.
pub(super) fn system() -> Principal {
    Principal {
        subject: "global".into(),
        roles: vec![Role::Service],
        tenants: vec![],
        cell: None,
        break_glass: None,
    }
}

fn check_reason(field: &str, reason: &str) -> Result<()> {
    if reason.is_empty() || reason.len() > MAX_REASON {
        return Err(Error::bad_input(
            field,
            format!("say why: a reason is 1 to {MAX_REASON} bytes"),
        ));
    }
    Ok(())
}

/// A request's duration (positive, at most `max_secs`) and reason.
pub(super) fn check_request(n: &NewRequest, max_secs: i64) -> Result<()> {
    if n.duration_secs <= 0 {
        return Err(Error::bad_input(
            "input.durationSeconds",
            "durationSeconds must be positive",
        ));
    }
    if n.duration_secs > max_secs {
        return Err(Error::bad_input(
            "input.durationSeconds",
            format!(
                "durationSeconds is {}; break-glass access lasts at most {max_secs} seconds",
                n.duration_secs
            ),
        ));
    }
    check_reason("input.reason", n.reason.trim())
}

/// A denial's reason, trimmed.
pub(super) fn denial_reason(reason: String) -> Result<String> {
    let reason = reason.trim().to_owned();
    check_reason("reason", &reason)?;
    Ok(reason)
}

/// Why `action` (which applies to pending requests) cannot apply to `m`.
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

/// `p` approves a pending request: the window opens now.
pub(super) fn approval(cur: &bg::Model, p: &Principal, now: DateTime<Utc>) -> Result<Change> {
    if same_subject(&cur.requester, &p.subject) {
        return Err(Error::Forbidden(
            "a break-glass request must be approved by someone other than its requester".into(),
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
}

/// `decider` denies a pending request for `reason`.
pub(super) fn denial(
    cur: &bg::Model,
    decider: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Change> {
    if let Some(e) = not_pending(cur, now, "denyBreakGlass") {
        return Err(e);
    }
    Ok(Change {
        status: DENIED,
        cols: vec![
            (bg::Column::DecidedBy, decider.to_owned().into()),
            (bg::Column::DecidedAt, Some(now).into()),
            (bg::Column::DenialReason, Some(reason.to_owned()).into()),
        ],
        detail: json!({ "reason": reason }),
    })
}

/// The end of the approved window within which `p`, its requester, may
/// activate a token.
pub(super) fn activation_window(
    cur: &bg::Model,
    p: &Principal,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    let id = cur.id;
    if !same_subject(&cur.requester, &p.subject) {
        // Operators may see the request: they learn nothing new. Anyone
        // else gets what an unknown id gets (no existence oracle).
        return Err(if p.has_any(&OPERATORS) {
            Error::Forbidden("only the requester may activate a break-glass request".into())
        } else {
            Error::NotFound(format!("break-glass request {id} not found"))
        });
    }
    match (cur.status.as_str(), cur.expires_at) {
        (APPROVED | ACTIVE, Some(end)) if end > now => Ok(end),
        (APPROVED | ACTIVE, _) => Err(Error::Conflict(format!(
            "break-glass request {id} has expired"
        ))),
        (PENDING, _) => Err(Error::Conflict(format!(
            "break-glass request {id} is not approved yet"
        ))),
        (other, _) => Err(Error::Conflict(format!(
            "break-glass request {id} is {other}; only approved requests activate"
        ))),
    }
}

/// When a token minted now expires: an hour at most, never past the window.
pub(super) fn token_expiry(window: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    window.min(now + chrono::Duration::seconds(TOKEN_TTL_SECS))
}

/// `by` revokes a request in a live state.
pub(super) fn revocation(cur: &bg::Model, by: &str, now: DateTime<Utc>) -> Result<Change> {
    match cur.status.as_str() {
        PENDING | APPROVED | ACTIVE => Ok(Change {
            status: REVOKED,
            cols: vec![
                (bg::Column::RevokedBy, by.to_owned().into()),
                (bg::Column::RevokedAt, Some(now).into()),
            ],
            detail: json!({}),
        }),
        other => Err(Error::Conflict(format!(
            "break-glass request {} is {other}; nothing to revoke",
            cur.id
        ))),
    }
}

/// An unapproved request past its deadline, or an approved one past its
/// window, expires.
pub(super) fn expiry(cur: &bg::Model, now: DateTime<Utc>) -> Result<Change> {
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
}

/// What a revocation tells every process: until when its tokens may live.
pub(super) fn revoked(m: &bg::Model) -> Revoked {
    Revoked {
        id: m.id,
        until: m
            .expires_at
            .unwrap_or_else(|| m.revoked_at.unwrap_or_else(Utc::now)),
    }
}
