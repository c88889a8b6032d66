//! The one authorization of the data plane: a bearer token, verified once
//! and remembered until it expires (`tokens.rs`), not revoked, bound to
//! this cell if bound at all, with a role the route accepts; a token that
//! names tenants acts for those only.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use shared::auth::{Principal, REFUSED, Role, bearer};
use shared::error::Error;
use uuid::Uuid;

use super::Plane;

/// Who a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads (quota check, flag evaluation, the snapshot): a data-plane
    /// token of this cell, a platform-admin, or a tenant-admin for its own
    /// tenants.
    Read,
    /// Writes (consume, release, usage, signals): a data-plane token of
    /// this cell only. A tenant-admin cannot count, release or report for
    /// its tenants: that would let it reset its own limits.
    Write,
}

impl Access {
    fn roles(self) -> &'static [Role] {
        match self {
            Access::Read => &[Role::DataPlane, Role::TenantAdmin, Role::PlatformAdmin],
            Access::Write => &[Role::DataPlane],
        }
    }
}

/// The caller, if it may use a route of `access`: 401 without a valid,
/// unrevoked token, 403 for a token of another cell, an unbound data-plane
/// token, or a token without a role the route accepts.
pub fn authorize(p: &Plane, headers: &HeaderMap, access: Access) -> Result<Arc<Principal>, Error> {
    let token = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(|_| refused("no bearer token"))?;
    let principal = p
        .tokens
        .verify(&p.keys, token, chrono::Utc::now().timestamp())
        .map_err(|_| refused("the token is invalid, expired or not yet valid"))?;
    p.st.revocations
        .check(&principal)
        .map_err(|_| refused("the token's break-glass access was revoked"))?;
    let here = &p.st.cell_id;
    if let Some(c) = &principal.cell
        && c != here
    {
        return Err(Error::Forbidden(format!(
            "this token is bound to cell {c}, not {here}"
        )));
    }
    if principal.has(Role::DataPlane) && principal.cell.is_none() {
        return Err(Error::Forbidden(format!(
            "a data-plane token must be bound to this cell ({here})"
        )));
    }
    if !principal.has_any(access.roles()) {
        return Err(Error::Forbidden(match access {
            Access::Read => format!(
                "this route needs a data-plane token bound to cell {here}, \
                 a tenant-admin or a platform-admin token"
            ),
            Access::Write => {
                format!("this route writes: it needs a data-plane token bound to cell {here}")
            }
        }));
    }
    Ok(principal)
}

/// Every token failure tells the caller the same thing (`auth::REFUSED`);
/// why it failed goes to the log only.
fn refused(why: &str) -> Error {
    tracing::debug!(reason = why, "data-plane token refused");
    Error::Unauthenticated(REFUSED.into())
}

/// A caller that may act for every tenant of this cell (a token naming no
/// tenants); the snapshot lists them all.
pub fn may_act_for_all(p: &Principal) -> Result<(), Error> {
    if p.tenants.is_empty() && p.has_any(&[Role::DataPlane, Role::PlatformAdmin]) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "this token names tenants: it may not read every tenant of this cell".into(),
        ))
    }
}

/// A token that names tenants acts for those only; tenant roles always name them.
pub fn may_act_for(p: &Principal, tenant: Uuid) -> Result<(), Error> {
    let ok = if p.tenants.is_empty() {
        p.has_any(&[Role::DataPlane, Role::PlatformAdmin])
    } else {
        p.tenants.iter().any(|t| t.0 == tenant)
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "this token may not act for tenant {tenant}"
        )))
    }
}
