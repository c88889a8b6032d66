//! The cell's GraphQL API: used by the global tier (service identity) and
//! by per-cell administration.

mod audit;
mod config;
mod impact;
mod mutation;
mod plans;
mod projects;
mod query;
mod quota;
mod records;
mod subscription;
mod sync;
mod types;

use async_graphql::Schema;

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

use crate::State;

pub type CellSchema = Schema<AllQuery, AllMutation, Subscription>;

#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Query")]
pub struct AllQuery(
    Query,
    config::ConfigQuery,
    sync::SyncQuery,
    quota::QuotaQuery,
    projects::ProjectsQuery,
    plans::PlansQuery,
    impact::ImpactQuery,
    records::RecordsQuery,
    audit::AuditQuery,
);

#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct AllMutation(
    Mutation,
    config::ConfigMutation,
    quota::QuotaMutation,
    projects::ProjectsMutation,
    plans::PlansMutation,
);

pub fn schema(
    state: Option<State>,
    limits: &shared::server::Limits,
    introspection: bool,
) -> CellSchema {
    let mut b = shared::server::limit_schema(
        Schema::build(AllQuery::default(), AllMutation::default(), Subscription),
        limits,
        introspection,
    );
    if let Some(s) = state {
        b = b.data(s);
    }
    b.finish()
}
