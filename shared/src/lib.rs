//! What both tiers of the tenant control plane share: validated ids, auth,
//! the error model, telemetry, config loading, the HTTP surface and the
//! GraphQL client one tier uses to call another.

pub mod audit;
pub mod auth;
pub mod breakglass;
pub mod changelog;
pub mod client;
pub mod config;
pub mod configkeys;
pub mod db;
pub mod error;
pub mod events;
pub mod flags;
pub mod ids;
pub mod impact;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod plans;
pub mod projects;
pub mod quota;
pub mod request;
pub mod secretref;
pub mod server;
pub mod sync;
pub mod telemetry;

pub use error::{Code, Error, IntoGql, Result};
