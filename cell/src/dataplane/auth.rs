//! The one authorization of the data plane: a bearer token, verified once
//! and remembered until it expires (`tokens.rs`), not revoked, bound to
//! this cell if bound at all, with a role the route accepts; a token that
//! names tenants acts for those only.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use shared::auth::{Principal, Role, bearer};
use shared::error::Error;
use uuid::Uuid;

use super::Plane;

/// Who a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The quota and usage hooks: a data-plane token of this cell, a
    /// tenant-admin (for its own tenants) or a platform-admin.
    Quota,
    /// Flag evaluation, the snapshot and signals: a data-plane token of
    /// this cell or a platform-admin.
    Flags,
}

impl Access {
    fn roles(self) -> &'static [Role] {
        match self {
            Access::Quota => &[Role::DataPlane, Role::TenantAdmin, Role::PlatformAdmin],
            Access::Flags => &[Role::DataPlane, Role::PlatformAdmin],
        }
    }
}

/// The caller, if it may use a route of `access`: 401 without a valid,
/// unrevoked token, 403 for a token of another cell or without the role.
pub fn authorize(p: &Plane, headers: &HeaderMap, access: Access) -> Result<Arc<Principal>, Error> {
    let token = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(|_| Error::Unauthenticated("a bearer token is required".into()))?;
    let principal = p
        .tokens
        .verify(&p.keys, token, chrono::Utc::now().timestamp())
        .map_err(|_| Error::Unauthenticated("the token is invalid or expired".into()))?;
    p.st.revocations
        .check(&principal)
        .map_err(|_| Error::Unauthenticated("this break-glass access was revoked".into()))?;
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
            Access::Quota => {
                "the quota hooks need a data-plane, tenant-admin or platform-admin token".into()
            }
            Access::Flags => {
                format!("the flag hooks need a data-plane token bound to cell {here}")
            }
        }));
    }
    Ok(principal)
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
