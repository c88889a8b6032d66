use async_graphql::{Context, Enum, ID, Result, SimpleObject, Subscription as GqlSubscription};
use futures_util::Stream;
use shared::IntoGql;
use shared::error::Field;
use shared::ids::TenantId;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::auth::caller;
use super::types::Tenant;
use crate::events;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TenantEventKind {
    Created,
    Updated,
}

impl From<events::TenantEventKind> for TenantEventKind {
    fn from(k: events::TenantEventKind) -> Self {
        match k {
            events::TenantEventKind::Created => Self::Created,
            events::TenantEventKind::Updated => Self::Updated,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "TenantEvent")]
pub struct TenantEventView {
    pub kind: TenantEventKind,
    pub tenant: Tenant,
}

pub struct Subscription;

#[GqlSubscription(name = "TenantSubscription")]
impl Subscription {
    /// Tenants as they are created or change; only those the caller may
    /// see, and only `tenantId` when it is given.
    async fn tenant_events(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
    ) -> Result<impl Stream<Item = TenantEventView>> {
        let (st, p) = caller(ctx).gql()?;
        let only: Option<TenantId> = tenant_id
            .map(|i| i.parse())
            .transpose()
            .field("tenantId")
            .gql()?;
        let p = p.clone();
        Ok(
            BroadcastStream::new(st.events.subscribe()).filter_map(move |ev| {
                let ev = ev.ok()?;
                let id = TenantId(ev.tenant.id);
                (p.can_read_tenant(id) && only.is_none_or(|o| o == id)).then_some(TenantEventView {
                    kind: ev.kind.into(),
                    tenant: Tenant(ev.tenant),
                })
            }),
        )
    }

    /// A tenant's provisioning saga: each recorded step as it stands now,
    /// then each change of a step as it happens.
    async fn tenant_lifecycle(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
    ) -> Result<impl Stream<Item = super::lifecycle::LifecycleStep>> {
        super::lifecycle::steps(ctx, tenant_id).await
    }
}
