pub mod config;
pub mod config_history;
pub mod quota_change;
pub mod quota_override;
pub mod secret_ref;
pub mod tenant;
