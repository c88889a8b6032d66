pub mod cell;
pub mod idempotency;
pub mod rollout;
pub mod sync_repair;
pub mod tenant;
pub mod usage_rollup;
