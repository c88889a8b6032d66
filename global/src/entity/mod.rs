pub mod cell;
pub mod idempotency;
pub mod rollout;
pub mod saga;
pub mod saga_step;
pub mod sync_repair;
pub mod tenant;
pub mod usage_rollup;
