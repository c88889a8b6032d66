//! Database logic of the global tier: resolvers call these with the state.

pub mod antientropy;
pub mod audit;
pub mod breakglass;
pub mod cells;
pub mod configkeys;
pub mod directory;
pub mod directory_cache;
pub mod flags;
pub mod idempotency;
pub mod impact;
pub mod incidents;
pub mod maintenance;
pub mod members;
pub mod metrics_catalog;
pub mod placement;
pub mod provisioning;
pub mod rebuild;
pub mod rollout_progress;
pub mod rollouts;
pub mod saga;
pub mod scope;
pub mod sync_status;
pub mod tenant_cell;
pub mod tenant_status;
pub mod usage;
