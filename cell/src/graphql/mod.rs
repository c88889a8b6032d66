//! The cell's GraphQL API: used by the global tier (service identity) and
//! by per-cell administration.

mod mutation;
mod query;
mod subscription;
mod types;

use async_graphql::Schema;

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

use crate::State;

pub type CellSchema = Schema<Query, Mutation, Subscription>;

pub fn schema(
    state: Option<State>,
    limits: &shared::server::Limits,
    introspection: bool,
) -> CellSchema {
    let mut b = shared::server::limit_schema(
        Schema::build(Query, Mutation, Subscription),
        limits,
        introspection,
    );
    if let Some(s) = state {
        b = b.data(s);
    }
    b.finish()
}
