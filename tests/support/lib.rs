//! Test support: starts the real global tier and real cells on port 0, each
//! test on its own PostgreSQL databases (or SQLite files) and its own Redis
//! key prefix, and drives them over HTTP.

pub mod backing;
pub mod chaos;
pub mod flags;
pub mod load;
pub mod process;
pub mod quota;
pub mod rows;
pub mod stack;
pub mod tcp_proxy;
pub mod workload;
pub mod ws;

pub use stack::{Backend, CellSpec, Options, Stack};
