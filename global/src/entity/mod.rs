pub mod cell;
pub mod idempotency;
pub mod rollout;
pub mod tenant;
