//! Database logic of the global tier: resolvers call these with the state.

pub mod cells;
pub mod configkeys;
pub mod directory;
pub mod idempotency;
pub mod members;
pub mod placement;
pub mod provisioning;
pub mod saga;
pub mod tenant_status;
