use async_graphql::{Context, Result, Subscription as GqlSubscription};
use futures_util::Stream;
use shared::IntoGql;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::query::reader;
use super::types::Tenant;

pub struct Subscription;

#[GqlSubscription]
impl Subscription {
    /// Every tenant created or changed in this cell, as it happens.
    async fn tenant_changes(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Tenant>> {
        let (st, p) = reader(ctx).gql()?;
        let p = p.clone();
        let rx = st.events.subscribe();
        Ok(BroadcastStream::new(rx).filter_map(move |r| match r {
            Ok(t) if p.can_read_tenant(t.id) => Some(Tenant::from(t)),
            _ => None,
        }))
    }
}
