//! The global GraphQL API: the one API of the admin UI, tools and SREs.

#[macro_use]
mod mirror;

mod args;
mod audit;
mod audited;
mod auth;
mod breakglass;
mod config;
mod flags;
mod impact;
mod incidents;
mod lifecycle;
mod loader;
mod maintenance;
mod members;
mod mutation;
mod placement;
mod plans;
mod projects;
mod query;
mod quota;
mod recovery;
mod rollouts;
mod status;
mod subscription;
mod sync;
mod types;

use async_graphql::Schema;
use async_graphql::dataloader::DataLoader;

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

use crate::State;

pub type GlobalSchema = Schema<AllQuery, AllMutation, AllSubscription>;

#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Query")]
pub struct AllQuery(
    Query,
    config::ConfigQuery,
    flags::FlagQuery,
    rollouts::RolloutQuery,
    sync::SyncQuery,
    quota::QuotaQuery,
    placement::PlacementQuery,
    incidents::IncidentQuery,
    maintenance::MaintenanceQuery,
    impact::ImpactQuery,
    audit::AuditQuery,
    breakglass::BreakGlassQuery,
);

#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct AllMutation(
    Mutation,
    config::ConfigMutation,
    flags::FlagMutation,
    rollouts::RolloutMutation,
    sync::SyncMutation,
    quota::QuotaMutation,
    projects::ProjectsMutation,
    status::StatusMutation,
    placement::PlacementMutation,
    plans::PlansMutation,
    members::MembersMutation,
    incidents::IncidentMutation,
    maintenance::MaintenanceMutation,
    recovery::RecoveryMutation,
    breakglass::BreakGlassMutation,
);

#[derive(async_graphql::MergedSubscription)]
#[graphql(name = "Subscription")]
pub struct AllSubscription(Subscription, rollouts::RolloutSubscription);

pub fn schema(
    state: Option<State>,
    limits: &shared::server::Limits,
    introspection: bool,
) -> GlobalSchema {
    let mut b = shared::server::limit_schema(
        Schema::build(
            AllQuery::default(),
            AllMutation::default(),
            AllSubscription(Subscription, rollouts::RolloutSubscription),
        ),
        limits,
        introspection,
    );
    if let Some(s) = state {
        b = b
            // A batch runs in the trace (and under the request id) of the
            // request whose field started it.
            .data(DataLoader::new(loader::CellRecords(s.clone()), |fut| {
                tokio::spawn(shared::telemetry::in_current_context(fut))
            }))
            .data(DataLoader::new(loader::CellProjects(s.clone()), |fut| {
                tokio::spawn(shared::telemetry::in_current_context(fut))
            }))
            .data(DataLoader::new(loader::CellPlans(s.clone()), |fut| {
                tokio::spawn(shared::telemetry::in_current_context(fut))
            }))
            .data(s);
    }
    b.finish()
}
