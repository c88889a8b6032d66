pub mod config;
pub mod config_history;
pub mod secret_ref;
pub mod tenant;
