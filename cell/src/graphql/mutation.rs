use async_graphql::{Context, Object, Result};
use shared::IntoGql;
use shared::audit;
use shared::auth::Role;
use shared::error::Field;
use shared::ids::{Plan, Region, Slug, TenantId};
use shared::names::TenantName;

use super::query::reader;
use super::types::{CreateTenantInput, Tenant};
use crate::service::tenants::{self, NewTenant};

#[derive(Default)]
pub struct Mutation;

#[Object(name = "CellMutation")]
impl Mutation {
    /// Creates a tenant in this cell. Idempotent by tenant id: the global
    /// tier retries with the same id and gets the same tenant.
    async fn create_tenant(&self, ctx: &Context<'_>, input: CreateTenantInput) -> Result<Tenant> {
        let (st, p) = reader(ctx).gql()?;
        let detail = serde_json::json!({ "id": input.id.as_str(), "slug": input.slug, "region": input.region, "plan": input.plan });
        let target = Some(input.id.to_string());
        let trail = audit::Trail::new(p, "createTenant", detail.clone());
        let result = trail
            .scope(async {
                if !(p.is_control_plane() || p.has(Role::PlatformAdmin)) {
                    return Err(shared::Error::Forbidden(
                        "createTenant on a cell is for the global tier or a platform-admin".into(),
                    ));
                }
                tenants::create(&st.db, &st.region, parse(input)?).await
            })
            .await;
        // A refused create (e.g. of a purged tenant) is recorded without the
        // tenant id: it must leave no tenant-scoped row behind.
        let tenant_id = result.as_ref().ok().map(|t| t.id.0);
        trail
            .finish(&st.db, tenant_id, target, &result)
            .await
            .gql()?;
        let created = result.gql()?;
        shared::server::record_tenant(ctx, &created.id);
        let _ = st.events.send(created.clone());
        Ok(created.into())
    }
}

fn parse(input: CreateTenantInput) -> shared::Result<NewTenant> {
    Ok(NewTenant {
        id: input.id.parse::<TenantId>().field("input.id")?,
        slug: Slug::parse(&input.slug).field("input.slug")?,
        name: TenantName::parse(&input.name)
            .field("input.name")?
            .into_string(),
        region: Region::parse(&input.region).field("input.region")?,
        plan: Plan::parse(&input.plan).field("input.plan")?,
    })
}
