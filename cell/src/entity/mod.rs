pub mod config;
pub mod config_history;
pub mod entitlement_override;
pub mod environment;
pub mod project;
pub mod secret_ref;
pub mod tenant;
