pub mod config;
pub mod quotas;
pub mod secrets;
pub mod tenants;
