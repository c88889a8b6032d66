pub mod cell;
pub mod idempotency;
pub mod member;
pub mod saga;
pub mod saga_step;
pub mod tenant;
