//! Idempotency keys: the first request with a key fixes the resource it
//! makes; a retry with the same input reuses it, other input is a CONFLICT.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::ids::IdempotencyKey;
use shared::{Error, Result};

use crate::entity::idempotency;

pub const PENDING: &str = "PENDING";
pub const DONE: &str = "DONE";

/// The hash that tells two requests with one key apart.
pub fn fingerprint<T: Serialize>(input: &T) -> String {
    let bytes = serde_json::to_vec(input).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

fn row_key(operation: &str, key: &IdempotencyKey) -> String {
    format!("{operation}:{key}")
}

/// The claim a request holds on its key.
pub struct Claim {
    pub resource_id: String,
    pub done: bool,
    /// The first answer, when the request that finished recorded one.
    pub answer: Option<String>,
}

/// Claims `key` for `operation`, proposing `resource_id`. Returns the
/// resource id the key is bound to (the proposed one if this call is first).
pub async fn claim(
    db: &DatabaseConnection,
    operation: &str,
    key: &IdempotencyKey,
    actor: &str,
    request_hash: &str,
    resource_id: &str,
) -> Result<Claim> {
    // A concurrent request may release the key between our insert and
    // read: try again, it then becomes ours.
    for _ in 0..3 {
        if let Some(claim) = try_claim(db, operation, key, actor, request_hash, resource_id).await?
        {
            return Ok(claim);
        }
    }
    Err(Error::Unavailable(format!(
        "idempotency key `{key}` is contended; retry"
    )))
}

async fn try_claim(
    db: &DatabaseConnection,
    operation: &str,
    key: &IdempotencyKey,
    actor: &str,
    request_hash: &str,
    resource_id: &str,
) -> Result<Option<Claim>> {
    let k = row_key(operation, key);
    let row = idempotency::ActiveModel {
        key: sea_orm::Set(k.clone()),
        operation: sea_orm::Set(operation.to_owned()),
        actor: sea_orm::Set(actor.to_owned()),
        request_hash: sea_orm::Set(request_hash.to_owned()),
        resource_id: sea_orm::Set(resource_id.to_owned()),
        status: sea_orm::Set(PENDING.to_owned()),
        created_at: sea_orm::Set(Utc::now()),
        answer: sea_orm::Set(None),
    };
    idempotency::Entity::insert(row)
        .on_conflict(
            OnConflict::column(idempotency::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .try_insert()
        .exec(db)
        .await?;
    let Some(saved) = idempotency::Entity::find_by_id(k).one(db).await? else {
        return Ok(None);
    };
    if saved.request_hash != request_hash {
        return Err(Error::Conflict(format!(
            "idempotency key `{key}` was already used for {operation} with different input"
        )));
    }
    Ok(Some(Claim {
        resource_id: saved.resource_id,
        done: saved.status == DONE,
        answer: saved.answer,
    }))
}

pub async fn complete<C: sea_orm::ConnectionTrait>(
    db: &C,
    operation: &str,
    key: &IdempotencyKey,
) -> Result<()> {
    idempotency::Entity::update_many()
        .col_expr(
            idempotency::Column::Status,
            sea_orm::sea_query::Expr::value(DONE),
        )
        .filter(idempotency::Column::Key.eq(row_key(operation, key)))
        .exec(db)
        .await?;
    Ok(())
}

/// Completes the key with the request's answer, which a retry gets back;
/// meant to run in the transaction of the change itself.
pub async fn complete_with<C: sea_orm::ConnectionTrait, T: Serialize>(
    db: &C,
    operation: &str,
    key: &IdempotencyKey,
    answer: &T,
) -> Result<()> {
    idempotency::Entity::update_many()
        .col_expr(
            idempotency::Column::Status,
            sea_orm::sea_query::Expr::value(DONE),
        )
        .col_expr(
            idempotency::Column::Answer,
            sea_orm::sea_query::Expr::value(
                serde_json::to_string(answer).map_err(Error::internal)?,
            ),
        )
        .filter(idempotency::Column::Key.eq(row_key(operation, key)))
        .exec(db)
        .await?;
    Ok(())
}

/// Releases a key whose request failed definitively and changed nothing,
/// so the same key may be used again.
pub async fn release(db: &DatabaseConnection, operation: &str, key: &IdempotencyKey) -> Result<()> {
    idempotency::Entity::delete_by_id(row_key(operation, key))
        .exec(db)
        .await?;
    Ok(())
}

/// The resource a key is bound to, if it was claimed.
pub async fn resource(
    db: &DatabaseConnection,
    operation: &str,
    key: &IdempotencyKey,
) -> Result<Option<String>> {
    Ok(idempotency::Entity::find_by_id(row_key(operation, key))
        .one(db)
        .await?
        .map(|r| r.resource_id))
}

/// The answer a finished request with `key` recorded, if any.
pub async fn answer(
    db: &DatabaseConnection,
    operation: &str,
    key: &IdempotencyKey,
) -> Result<Option<String>> {
    Ok(idempotency::Entity::find_by_id(row_key(operation, key))
        .one(db)
        .await?
        .filter(|r| r.status == DONE)
        .and_then(|r| r.answer))
}

/// Whether the request holding `key` finished.
pub async fn is_done(
    db: &DatabaseConnection,
    operation: &str,
    key: &IdempotencyKey,
) -> Result<bool> {
    Ok(idempotency::Entity::find_by_id(row_key(operation, key))
        .one(db)
        .await?
        .is_some_and(|r| r.status == DONE))
}

/// Runs a keyed write once. `write` gets the resource id the key is bound
/// to and must call [`complete`] inside its own transaction, so the change
/// and the key's completion commit together; a retry (or a concurrent
/// twin) then gets `replay` of that resource. A write that fails changed
/// nothing and frees the key, unless a twin finished meanwhile.
#[allow(clippy::too_many_arguments)]
pub async fn run<T, W, WF, R, RF>(
    db: &DatabaseConnection,
    operation: &str,
    key: &IdempotencyKey,
    actor: &str,
    input: &impl Serialize,
    proposed: &str,
    write: W,
    replay: R,
) -> Result<T>
where
    W: FnOnce(String) -> WF,
    WF: Future<Output = Result<T>>,
    R: Fn(String) -> RF,
    RF: Future<Output = Result<T>>,
{
    let hash = fingerprint(&(operation, input));
    let claim = claim(db, operation, key, actor, &hash, proposed).await?;
    if claim.done {
        return replay(claim.resource_id).await;
    }
    match write(claim.resource_id.clone()).await {
        Ok(v) => Ok(v),
        Err(e) => {
            if is_done(db, operation, key).await? {
                return replay(claim.resource_id).await;
            }
            release(db, operation, key).await?;
            Err(e)
        }
    }
}
