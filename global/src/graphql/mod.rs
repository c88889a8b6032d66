//! The global GraphQL API: the one API of the admin UI, tools and SREs.

mod auth;
mod loader;
mod mutation;
mod query;
mod subscription;
mod types;

use async_graphql::Schema;
use async_graphql::dataloader::DataLoader;

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::{Subscription, TenantEvent, TenantEventKind};

use crate::State;

pub type GlobalSchema = Schema<Query, Mutation, Subscription>;

pub fn schema(
    state: Option<State>,
    limits: &shared::server::Limits,
    introspection: bool,
) -> GlobalSchema {
    let mut b = Schema::build(Query, Mutation, Subscription)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if !introspection {
        b = b.disable_introspection();
    }
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
