//! The global GraphQL API: the one API of the admin UI, tools and SREs.

mod auth;
mod config;
mod lifecycle;
mod loader;
mod members;
mod mutation;
mod placement;
mod plans;
mod projects;
mod query;
mod status;
mod subscription;
mod types;

use async_graphql::Schema;
use async_graphql::dataloader::DataLoader;

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::{Subscription, TenantEvent, TenantEventKind};

use crate::State;

pub type GlobalSchema = Schema<AllQuery, AllMutation, Subscription>;

#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Query")]
pub struct AllQuery(Query, config::ConfigQuery, placement::PlacementQuery);

#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct AllMutation(
    Mutation,
    config::ConfigMutation,
    projects::ProjectsMutation,
    status::StatusMutation,
    placement::PlacementMutation,
    plans::PlansMutation,
    members::MembersMutation,
);

pub fn schema(
    state: Option<State>,
    limits: &shared::server::Limits,
    introspection: bool,
) -> GlobalSchema {
    let mut b = shared::server::limit_schema(
        Schema::build(AllQuery::default(), AllMutation::default(), Subscription),
        limits,
        introspection,
    );
    if let Some(s) = state {
        b = b
            .data(DataLoader::new(
                loader::CellRecords(s.clone()),
                tokio::spawn,
            ))
            .data(s);
    }
    b.finish()
}
