pub mod config;
pub mod tenants;
