use async_graphql::Context;
use shared::auth::{Principal, Role};
use shared::{Error, Result};

use crate::State;

/// The verified caller and the state, for resolvers.
pub fn caller<'a>(ctx: &'a Context<'_>) -> Result<(&'a State, &'a Principal)> {
    let st = ctx.data_unchecked::<State>();
    let p = ctx
        .data_opt::<Principal>()
        .ok_or_else(|| Error::Unauthenticated("a bearer token is required".into()))?;
    if p.has(Role::DataPlane) && !p.reads_everything() {
        return Err(Error::Forbidden(
            "data-plane tokens call a cell's hooks, not the global API".into(),
        ));
    }
    Ok((st, p))
}

/// The caller of an ops record (incidents, maintenance, impact): platform-admin or sre.
pub fn ops_caller<'a>(ctx: &'a Context<'_>, action: &str) -> Result<(&'a State, &'a Principal)> {
    let (st, p) = caller(ctx)?;
    p.require_any(&[Role::PlatformAdmin, Role::Sre], action)?;
    Ok((st, p))
}
