//! One mutation's audit trail: the resolver opens a [`Trail`] (actor,
//! action, input) and runs the work inside [`Trail::scope`]; the service
//! function that makes the change calls [`change`] inside its write
//! transaction with the entity's state before and after, which appends the
//! entry (outcome OK, with the diff) in that transaction, so the change and
//! its entry commit together. [`Trail::finish`] then records what the
//! service did not: a refusal (REFUSED, with the error), or a success that
//! changed nothing in a transaction of its own (an idempotent replay, a
//! no-op, a write that happened in another tier), as OK without a diff.

use std::future::Future;
use std::sync::{Arc, Mutex};

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{Outcome, Record, chain, entry, record};
use crate::auth::Principal;
use crate::error::{Error, Result};

/// The state of something that does not exist (before a create, after a delete).
pub const NONE: Value = Value::Null;

struct Inner {
    actor: Principal,
    action: String,
    detail: Value,
    /// The target every entry of this mutation names, whatever the service says.
    target: Option<String>,
    /// Entries the work appended in its own transactions.
    written: Mutex<u32>,
    /// A refusal is recorded with the error's code only, not its message.
    codes_only: bool,
}

tokio::task_local! {
    static CURRENT: Arc<Inner>;
}

/// A mutation being audited.
#[derive(Clone)]
pub struct Trail(Arc<Inner>);

impl Trail {
    /// Opens the trail of `actor` running `action` with the input `detail`.
    pub fn new(actor: &Principal, action: &str, detail: Value) -> Self {
        Self(Arc::new(Inner {
            actor: actor.clone(),
            action: action.to_owned(),
            detail,
            target: None,
            written: Mutex::new(0),
            codes_only: false,
        }))
    }

    /// A write this tier routes to a tenant's home cell: `detail` must hold
    /// no values of the tenant's (names, versions, keys), and a refusal is
    /// recorded with the error's code only, since the cell's message may
    /// quote the values (`got \`…\``). The cell's own entry holds them all,
    /// and they stay in the cell (residency).
    pub fn routed(actor: &Principal, action: &str, detail: Value) -> Self {
        Self(Arc::new(Inner {
            actor: actor.clone(),
            action: action.to_owned(),
            detail,
            target: None,
            written: Mutex::new(0),
            codes_only: true,
        }))
    }

    /// Names `target` in every entry (a cell names the end user a write
    /// was made for), in place of what the service names.
    pub fn with_target(actor: &Principal, action: &str, detail: Value, target: String) -> Self {
        Self(Arc::new(Inner {
            actor: actor.clone(),
            action: action.to_owned(),
            detail,
            target: Some(target),
            written: Mutex::new(0),
            codes_only: false,
        }))
    }

    /// Runs `fut` with this trail current, so [`change`] finds it.
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        CURRENT.scope(self.0.clone(), fut).await
    }

    fn written(&self) -> u32 {
        *self.0.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records how the mutation ended unless its change already did: a
    /// refusal always (with the error's code and message in `detail`), a
    /// success only when no entry was written with the change.
    pub async fn finish<T>(
        &self,
        db: &DatabaseConnection,
        tenant_id: Option<Uuid>,
        target: Option<String>,
        result: &Result<T>,
    ) -> Result<()> {
        let mut detail = self.0.detail.clone();
        let outcome = match result {
            Ok(_) if self.written() > 0 => return Ok(()),
            Ok(_) => Outcome::Ok,
            Err(e) if self.0.codes_only => {
                detail["error"] = serde_json::json!({ "code": e.code().as_str() });
                Outcome::Refused
            }
            Err(e) => {
                detail["error"] =
                    serde_json::json!({ "code": e.code().as_str(), "message": e.to_string() });
                Outcome::Refused
            }
        };
        record(
            db,
            Record {
                actor: &self.0.actor,
                action: &self.0.action,
                tenant_id,
                target,
                outcome,
                detail,
                diff: None,
            },
        )
        .await
        .map(|_| ())
    }
}

/// Audits the change the current mutation makes, in `txn` (the change's
/// own write transaction, begun with `shared::db::begin_write`; call it
/// last: the chain's head stays locked until the transaction ends).
/// `before` is the entity's state before ([`NONE`] for a create), `after`
/// its state after ([`NONE`] for a delete). Outside a [`Trail`] (background
/// work) nothing is recorded.
pub async fn change<C: ConnectionTrait>(
    txn: &C,
    tenant_id: Option<Uuid>,
    target: Option<String>,
    before: impl Serialize,
    after: impl Serialize,
) -> Result<()> {
    let Ok(t) = CURRENT.try_with(|t| t.clone()) else {
        return Ok(());
    };
    let before = serde_json::to_value(before).map_err(Error::internal)?;
    let after = serde_json::to_value(after).map_err(Error::internal)?;
    let diff = super::diff(before, after);
    chain::append(
        txn,
        entry(Record {
            actor: &t.actor,
            action: &t.action,
            tenant_id,
            target: t.target.clone().or(target),
            outcome: Outcome::Ok,
            detail: t.detail.clone(),
            diff: Some(diff),
        }),
    )
    .await?;
    *t.written.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    Ok(())
}
