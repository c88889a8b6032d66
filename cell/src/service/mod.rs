pub mod config;
pub mod plans;
pub mod projects;
pub mod purge;
pub mod quotas;
pub mod secrets;
pub mod tenants;
