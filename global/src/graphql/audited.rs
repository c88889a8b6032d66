//! The one way a resolver runs an audited write: open the audit trail, check
//! the caller's role, run the write (which parses its idempotency key and
//! calls the service), and record how it ended.

use async_graphql::{Context, Result};
use shared::IntoGql;
use shared::audit::Trail;
use shared::auth::{Principal, Role};

use super::auth::caller;
use crate::State;

/// What the audit entry names as the write's target.
pub(super) enum Target<T> {
    /// Known from the input: named whether the write succeeds or is refused.
    Input(Option<String>),
    /// Known once the write succeeded (a new id); none on a refusal.
    Result(fn(&T) -> String),
}

/// Runs `write` as `action` for a caller holding one of `roles`, inside an
/// audit trail carrying `detail`. A refusal (the role check included) is
/// recorded with its error; a success is recorded unless the change already
/// audited itself in its own transaction.
pub(super) async fn audited<T>(
    ctx: &Context<'_>,
    action: &str,
    roles: &[Role],
    detail: serde_json::Value,
    target: Target<T>,
    write: impl AsyncFnOnce(&State, &Principal) -> shared::Result<T>,
) -> Result<T> {
    let (st, p) = caller(ctx).gql()?;
    let trail = Trail::new(p, action, detail);
    let result = trail
        .scope(async {
            p.require_any(roles, action)?;
            write(st, p).await
        })
        .await;
    let target = match target {
        Target::Input(t) => t,
        Target::Result(name) => result.as_ref().ok().map(name),
    };
    trail.finish(&st.db, None, target, &result).await.gql()?;
    result.gql()
}
