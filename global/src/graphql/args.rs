//! Arguments resolvers parse the same way everywhere.

use shared::error::Field;
use shared::ids::IdempotencyKey;
use uuid::Uuid;

/// `input.idempotencyKey`, checked.
pub(super) fn idempotency_key(key: &str) -> shared::Result<IdempotencyKey> {
    IdempotencyKey::parse(key).field("input.idempotencyKey")
}

/// An id argument; BAD_USER_INPUT on `field` when it is not one.
pub(super) fn uuid(field: &str, id: &str) -> shared::Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| shared::Error::bad_input(field, format!("`{id}` is not an id")))
}
