use async_graphql::{Context, ID, Object, Result};
use serde_json::json;
use shared::IntoGql;
use shared::audit;
use shared::auth::{Principal, Role};
use shared::error::Field;
use shared::ids::{CellId, IdempotencyKey, Plan, Region, Slug};
use shared::names::{Subject, TenantName};

use super::auth::caller;
use super::types::{Cell, CreateTenantInput, DefineConfigKeyInput, RegisterCellInput, Tenant};
use crate::service::cells::{self, Registration};
use crate::service::configkeys;
use crate::service::provisioning::{self, NewTenant};
use shared::configkeys::KeyDef;

#[derive(Default)]
pub struct Mutation;

#[Object(name = "DirectoryMutation")]
impl Mutation {
    /// Creates a tenant through its provisioning saga (reserve, place,
    /// create in the cell, allocate the default project, activate) and
    /// answers once the saga ends: the ACTIVE tenant, or the FAILED one with
    /// `provisioning.reason`. A saga still retrying a cell after the
    /// configured wait answers UNAVAILABLE and carries on in the background;
    /// retry with the same key, or watch `tenantLifecycle`.
    async fn create_tenant(&self, ctx: &Context<'_>, input: CreateTenantInput) -> Result<Tenant> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({ "slug": input.slug, "region": input.region, "plan": input.plan, "idempotencyKey": input.idempotency_key });
        let trail = audit::Trail::new(p, "createTenant", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin], "createTenant")?;
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                let mut t = parse_new_tenant(input)?;
                if t.owner.is_empty() {
                    t.owner = p.subject.clone();
                }
                provisioning::create(st, &p.subject, &key, t).await
            })
            .await;
        let tenant_id = result.as_ref().ok().map(|r| r.id);
        trail.finish(&st.db, tenant_id, None, &result).await.gql()?;
        // The saga announces the tenant on `tenantEvents` when it is ACTIVE.
        let row = result.gql()?;
        shared::server::record_tenant_at(ctx, &row.id, super::query::placement(&row));
        Ok(Tenant(row))
    }

    /// Defines a config key, or changes one (with `expectedVersion`). The
    /// same definition again is a no-op; every change reaches every cell.
    async fn define_config_key(
        &self,
        ctx: &Context<'_>,
        input: DefineConfigKeyInput,
    ) -> Result<shared::configkeys::View> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({ "key": input.key, "type": format!("{:?}", input.value_type), "expectedVersion": input.expected_version });
        let target = Some(input.key.clone());
        let trail = audit::Trail::new(p, "defineConfigKey", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin], "defineConfigKey")?;
                let def = KeyDef {
                    key: input.key,
                    value_type: input.value_type,
                    default: input.default.0,
                    scopes: input.scopes,
                    description: input.description,
                    min: input.min,
                    max: input.max,
                    allowed: input.allowed,
                    pattern: input.pattern,
                    json_schema: input.json_schema.map(|j| j.0),
                    deprecated: false,
                };
                configkeys::define(st, def, input.expected_version).await
            })
            .await;
        trail.finish(&st.db, None, target, &result).await.gql()?;
        Ok(result.gql()?.into())
    }

    /// Marks a key deprecated.
    async fn deprecate_config_key(
        &self,
        ctx: &Context<'_>,
        key: String,
        expected_version: i64,
    ) -> Result<shared::configkeys::View> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({ "key": key, "expectedVersion": expected_version });
        let trail = audit::Trail::new(p, "deprecateConfigKey", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin], "deprecateConfigKey")?;
                configkeys::deprecate(st, &key, expected_version).await
            })
            .await;
        trail
            .finish(&st.db, None, Some(key.clone()), &result)
            .await
            .gql()?;
        Ok(result.gql()?.into())
    }

    /// A cell announces itself (at start and whenever the global tier forgot it).
    async fn register_cell(&self, ctx: &Context<'_>, input: RegisterCellInput) -> Result<Cell> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({ "id": input.id.as_str(), "region": input.region, "endpoint": input.endpoint, "capacity": input.capacity });
        let target = Some(input.id.to_string());
        let known = st.cells.get(&input.id).is_some();
        let trail = audit::Trail::new(p, "registerCell", detail.clone());
        let result = trail
            .scope(async {
                let id = CellId::parse(&input.id).field("input.id")?;
                require_cell_identity(p, &id)?;
                let region = Region::parse(&input.region).field("input.region")?;
                cells::register(
                    &st.db,
                    &st.cells,
                    Registration {
                        id,
                        region,
                        endpoint: input.endpoint,
                        capacity: input.capacity,
                        weight: input.weight,
                        labels: input
                            .labels
                            .map(|l| l.into_iter().map(|l| (l.key, l.value)).collect()),
                    },
                )
                .await
            })
            .await;
        trail.finish(&st.db, None, target, &result).await.gql()?;
        let model = result.gql()?;
        st.refresh_cell_gauge();
        if !known {
            // A cell this tier did not know may hold tenants a lost
            // directory forgot: restore their rows from its records.
            let (st, c) = (st.clone(), model.clone());
            tokio::spawn(async move {
                crate::service::rebuild::cell(&st, &c).await;
            });
        }
        Ok(Cell {
            model,
            tenant_count: None,
        })
    }

    /// A cell says it is alive. NOT_FOUND asks it to register again.
    async fn cell_heartbeat(&self, ctx: &Context<'_>, id: ID) -> Result<Cell> {
        let (st, p) = caller(ctx).gql()?;
        let id = CellId::parse(&id).field("id").gql()?;
        require_cell_identity(p, &id).gql()?;
        let model = cells::heartbeat(&st.db, &st.cells, &id).await.gql()?;
        st.refresh_cell_gauge();
        Ok(Cell {
            model,
            tenant_count: None,
        })
    }
}

/// Only the cell itself (its service token names it) or a platform admin.
fn require_cell_identity(p: &Principal, id: &CellId) -> shared::Result<()> {
    if p.has(Role::PlatformAdmin) || (p.has(Role::Service) && p.cell.as_ref() == Some(id)) {
        Ok(())
    } else {
        Err(shared::Error::Forbidden(format!(
            "only cell {id}'s own service identity or a platform-admin may do this"
        )))
    }
}

fn parse_new_tenant(input: CreateTenantInput) -> shared::Result<NewTenant> {
    Ok(NewTenant {
        slug: Slug::parse(&input.slug).field("input.slug")?,
        name: TenantName::parse(&input.name)
            .field("input.name")?
            .into_string(),
        region: Region::parse(&input.region).field("input.region")?,
        plan: Plan::parse(&input.plan).field("input.plan")?,
        owner: match input.owner {
            Some(o) => Subject::parse(&o).field("input.owner")?.into_string(),
            None => String::new(),
        },
    })
}
