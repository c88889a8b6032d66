//! The end-to-end tests, one module per subject, in one test binary: each
//! test starts what it needs (an in-process stack, or the real `global`,
//! `cell` and `tenantctl` binaries as processes) on its own PostgreSQL
//! databases and Redis prefix, so tests run in parallel. One binary links
//! once instead of once per file, which keeps the suite's build short.
//!
//! One subject: `cargo test -p e2e --test e2e -- backup::`

// async-graphql's merged schema is deep.
#![recursion_limit = "256"]

mod api_reference;
mod audit;
mod auth;
mod authority;
mod backup;
mod bad_input;
mod break_glass;
mod break_glass_groups;
mod changelog;
mod chaos_database;
mod chaos_global;
mod chaos_redis;
mod chaos_region;
mod chaos_seeded;
mod config_registry;
mod dataplane;
mod deploy_files;
mod dev_stack;
mod directory_rebuild;
mod flag_snapshot;
mod flags;
mod impact;
mod impact_processes;
mod lifecycle_streams;
mod maintenance_freeze;
mod members;
mod names;
mod ops_bad_input;
mod otlp_trace;
mod placement;
mod plans;
mod production;
mod projects;
mod provisioning;
mod provisioning_processes;
mod quota_hooks;
mod quota_redis;
mod quota_resilience;
mod quota_restart;
mod quota_semantics;
mod quotas;
mod replicas;
mod residency;
mod rollout_cohorts;
mod rollout_failures;
mod rollout_pending;
mod rollouts;
mod secret_refs;
mod slice;
mod slo_rules;
mod subscriptions;
mod surface;
mod sync_convergence;
mod sync_crash;
mod sync_repair;
mod sync_transport;
mod telemetry_metrics;
mod tenant_config;
mod tenant_status;
mod unresponsive_cell;
mod usage_accuracy;
