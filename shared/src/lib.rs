//! What both tiers of the tenant control plane share: validated ids, auth,
//! the error model, telemetry, config loading, the HTTP surface and the
//! GraphQL client one tier uses to call another.

#![warn(missing_docs)]

/// Every binary of the control plane (and every test and bench, which host
/// the tiers in process) allocates through mimalloc: the request paths
/// allocate per request, and glibc's malloc took about 15 % of a quota
/// hook's CPU under load (BENCHMARKS.md, issue 5). Built without
/// transparent huge pages (`no_thp`): with them, memory mimalloc hands back
/// and takes again costs a 2 MiB page zeroed by the kernel each time, which
/// cut the in-process quota hook to a third.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
pub mod names;
pub mod plans;
pub mod projects;
pub mod quota;
pub mod request;
pub mod secretref;
pub mod server;
pub mod sync;
pub mod synced;
pub mod telemetry;

pub use error::{Code, Error, IntoGql, Result};
