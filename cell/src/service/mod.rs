pub mod config;
pub mod secrets;
pub mod tenants;
