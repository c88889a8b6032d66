pub mod cell;
pub mod idempotency;
pub mod tenant;
